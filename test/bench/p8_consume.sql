-- P8 (pgbench, -c 4 against -c 1): one consumer of subscription p8 keeping
-- its transaction open while it works: poll 100 events, 10 ms of "I/O",
-- ack them under the poll's lease token, COMMIT.
BEGIN;
SELECT count(*) AS n, coalesce(array_agg(event_id), '{}') AS ids, coalesce(max(lease_token), 0) AS tok
  FROM eventbus.poll('p8', 100) \gset
SELECT pg_sleep(0.01);
\if :n > 0
SELECT eventbus.ack('p8', :ids, :tok);
\endif
COMMIT;
