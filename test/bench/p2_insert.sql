-- P2 baseline: 100 events per transaction, INSERT ... SELECT into the plain
-- table (p_schema.sql).
\set id random(1, 1000000000)
INSERT INTO ev_plain (topic, payload)
SELECT 'orders.r' || (g % 20) || '.created', ('{"order_id": ' || (:id + g) || ', "customer_id": "c-000042", "region": "eu", "items": [{"sku": "SKU-10001", "qty": 2, "price": 19.99}, {"sku": "SKU-20002", "qty": 1, "price": 5.49}], "total": 45.47, "currency": "EUR"}')::jsonb
FROM generate_series(1, 100) AS g;
