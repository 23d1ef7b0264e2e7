-- P2 (and the P7 publisher): 100 events per transaction with
-- eventbus.publish_batch, the topics and payloads of p2_insert.sql.
\set id random(1, 1000000000)
SELECT count(*) FROM (
    SELECT array_agg('orders.r' || (g % 20) || '.created') AS topics,
           array_agg(('{"order_id": ' || (:id + g) || ', "customer_id": "c-000042", "region": "eu", "items": [{"sku": "SKU-10001", "qty": 2, "price": 19.99}, {"sku": "SKU-20002", "qty": 1, "price": 5.49}], "total": 45.47, "currency": "EUR"}')::jsonb) AS payloads
      FROM generate_series(1, 100) AS g) a,
  eventbus.publish_batch(a.topics, a.payloads);
