-- P11 (pgbench -R): 10 events per transaction with eventbus.publish_batch,
-- the topics and payloads of p2_batch.sql plus "ts": clock_timestamp() in
-- epoch seconds, taken in the publishing statement (test/bench/consumers.py
-- latency measures from it).
\set id random(1, 1000000000)
SELECT count(*) FROM (
    SELECT array_agg('orders.r' || (g % 20) || '.created') AS topics,
           array_agg(('{"order_id": ' || (:id + g) || ', "customer_id": "c-000042", "region": "eu", "items": [{"sku": "SKU-10001", "qty": 2, "price": 19.99}, {"sku": "SKU-20002", "qty": 1, "price": 5.49}], "total": 45.47, "currency": "EUR", "ts": ' || extract(epoch FROM clock_timestamp()) || '}')::jsonb) AS payloads
      FROM generate_series(1, 10) AS g) a,
  eventbus.publish_batch(a.topics, a.payloads);
