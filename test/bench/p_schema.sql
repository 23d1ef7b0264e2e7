-- make bench (run.sh): the baselines beside eventbus, in database eb_bench.
-- The plain outbox table (p1_insert.sql, p2_insert.sql write it):
-- what an application would INSERT into instead of calling publish.
CREATE EXTENSION IF NOT EXISTS eventbus;
CREATE EXTENSION IF NOT EXISTS pgq;
CREATE TABLE ev_plain (
    id         bigserial PRIMARY KEY,
    topic      text NOT NULL,
    payload    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
SELECT pgq.create_queue('bench_q');
