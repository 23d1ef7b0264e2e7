-- P3 (and P7): drain subscription :'S' with poll(:B) + ack, one transaction
-- per batch (poll, then ack of every event it returned, then COMMIT), until
-- :N events were acked. Stops early after :IDLE seconds without an event.
-- Prints the same NOTICE as the PgQ drain.
SET bench.sub = :'S';
SET bench.n = :'N';
SET bench.batch = :'B';
SET bench.idle = :'IDLE';
DO $$
DECLARE
  sub  text := current_setting('bench.sub');
  want bigint := current_setting('bench.n')::bigint;
  b    int := current_setting('bench.batch')::int;
  idle float8 := current_setting('bench.idle')::float8;
  ids  bigint[]; c int; n bigint := 0; nb int := 0;
  t0 timestamptz := clock_timestamp(); last timestamptz := clock_timestamp(); s float8;
BEGIN
  WHILE n < want LOOP
    SELECT array_agg(event_id) INTO ids FROM eventbus.poll(sub, b);
    c := coalesce(cardinality(ids), 0);
    IF c > 0 THEN
      PERFORM eventbus.ack(sub, ids);
    END IF;
    COMMIT;
    IF c > 0 THEN
      n := n + c; nb := nb + 1; last := clock_timestamp();
    ELSE
      EXIT WHEN extract(epoch FROM clock_timestamp() - last) > idle;
      PERFORM pg_sleep(0.01);
    END IF;
  END LOOP;
  s := extract(epoch FROM clock_timestamp() - t0);
  RAISE NOTICE 'ANCHOR_DRAIN n=% batches=% secs=% ev_per_s=%', n, nb, round(s::numeric, 3), round((n / s)::numeric);
END $$;
