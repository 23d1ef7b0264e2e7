-- P1b baseline: 1 event per transaction, PgQ insert_event of the same topic
-- and payload (ev_data is text).
\set id random(1, 1000000000)
\set t random(1, 20)
SELECT pgq.insert_event('bench_q', 'orders.r' || :t || '.created', '{"order_id": ' || :id || ', "customer_id": "c-000042", "region": "eu", "items": [{"sku": "SKU-10001", "qty": 2, "price": 19.99}, {"sku": "SKU-20002", "qty": 1, "price": 5.49}], "total": 45.47, "currency": "EUR"}');
