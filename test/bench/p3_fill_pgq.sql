-- P3 baseline: fill a PgQ queue with :N events, one tick after every :B
-- events, so that batches hold B events.
-- ticker_max_count is B-1 because the first tick after create_queue sees
-- only B-1 new sequence values. psql variables N, B and VACUUM (on or off).
SET bench.n = :'N';
SET bench.batch = :'B';
SELECT pgq.drop_queue('bench_drain', true) FROM pgq.queue WHERE queue_name = 'bench_drain';
SELECT pgq.create_queue('bench_drain');
SELECT pgq.set_queue_config('bench_drain', 'ticker_max_count', (:B - 1)::text);
SELECT pgq.register_consumer('bench_drain', 'c1');
DO $$
DECLARE
  n int := current_setting('bench.n')::int;
  b int := current_setting('bench.batch')::int;
  i int := 0;
BEGIN
  WHILE i < n LOOP
    PERFORM pgq.insert_event('bench_drain', 'orders.r' || (g % 20) || '.created',
      '{"order_id": ' || (i + g) || ', "customer_id": "c-000042", "region": "eu", "items": [{"sku": "SKU-10001", "qty": 2, "price": 19.99}, {"sku": "SKU-20002", "qty": 1, "price": 5.49}], "total": 45.47, "currency": "EUR"}')
    FROM generate_series(1, b) AS g;
    COMMIT;
    PERFORM pgq.ticker('bench_drain');
    COMMIT;
    i := i + b;
  END LOOP;
END $$;
-- P3 fresh (psql variable VACUUM off): the drain follows the burst at once,
-- without VACUUM or ANALYZE.
\if :VACUUM
VACUUM ANALYZE;
\endif
