-- P1 baseline: 1 event per transaction, plain INSERT of the same topic and
-- payload into a table with a primary key.
\set id random(1, 1000000000)
\set t random(1, 20)
INSERT INTO ev_plain (topic, payload) VALUES ('orders.r' || :t || '.created', ('{"order_id": ' || :id || ', "customer_id": "c-000042", "region": "eu", "items": [{"sku": "SKU-10001", "qty": 2, "price": 19.99}, {"sku": "SKU-20002", "qty": 1, "price": 5.49}], "total": 45.47, "currency": "EUR"}')::jsonb);
