-- make bench (run.sh): before every pgbench run in eb_bench: empty the
-- event log, the plain table and the PgQ queue (then run.sh checkpoints).
TRUNCATE eventbus.event_log_0, eventbus.event_log_1, eventbus.event_log_2, eventbus.delivery;
TRUNCATE ev_plain RESTART IDENTITY;
SELECT pgq.drop_queue('bench_q', true);
SELECT pgq.create_queue('bench_q');
