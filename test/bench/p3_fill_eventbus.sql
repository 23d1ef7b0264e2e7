-- P3 (and P8): fill the log with :N events, :B per transaction
-- (publish_batch), for a fresh subscription :'S' (psql variables S, N, B and
-- VACUUM: on or off). The same events as p3_fill_pgq.sql.
SET bench.n = :'N';
SET bench.batch = :'B';
SELECT eventbus.unsubscribe(:'S') FROM eventbus.subscriptions WHERE name = :'S';
TRUNCATE eventbus.event_log_0, eventbus.event_log_1, eventbus.event_log_2, eventbus.delivery, eventbus.batch;
SELECT eventbus.subscribe(:'S', array['orders.#']);
DO $$
DECLARE
  n int := current_setting('bench.n')::int;
  b int := current_setting('bench.batch')::int;
  i int := 0;
BEGIN
  WHILE i < n LOOP
    PERFORM count(*) FROM eventbus.publish_batch(
      array(SELECT 'orders.r' || (g % 20) || '.created' FROM generate_series(1, b) g),
      array(SELECT ('{"order_id": ' || (i + g) || ', "customer_id": "c-000042", "region": "eu", "items": [{"sku": "SKU-10001", "qty": 2, "price": 19.99}, {"sku": "SKU-20002", "qty": 1, "price": 5.49}], "total": 45.47, "currency": "EUR"}')::jsonb
              FROM generate_series(1, b) g));
    COMMIT;
    i := i + b;
  END LOOP;
END $$;
-- P3 fresh (psql variable VACUUM off): the drain follows the burst at once,
-- without VACUUM or ANALYZE.
\if :VACUUM
VACUUM ANALYZE;
\endif
