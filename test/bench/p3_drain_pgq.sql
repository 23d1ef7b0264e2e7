-- P3 baseline: PgQ consumer, next_batch / get_batch_events / finish_batch,
-- one transaction per batch, as a PgQ consumer drains its queue.
DO $$
DECLARE
  bid bigint; c bigint; n bigint := 0; nb int := 0;
  t0 timestamptz := clock_timestamp(); s float8;
BEGIN
  LOOP
    bid := pgq.next_batch('bench_drain', 'c1');
    EXIT WHEN bid IS NULL;
    SELECT count(*) INTO c FROM pgq.get_batch_events(bid);
    PERFORM pgq.finish_batch(bid);
    COMMIT;
    n := n + c; nb := nb + 1;
  END LOOP;
  COMMIT;
  s := extract(epoch FROM clock_timestamp() - t0);
  RAISE NOTICE 'ANCHOR_DRAIN n=% batches=% secs=% ev_per_s=%', n, nb, round(s::numeric, 3), round((n / s)::numeric);
END $$;
