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
-- P1 acl: a role that publishes under topic ACLs, with 20 publish patterns
-- (19 that match nothing the benchmark publishes, and orders.*.created).
CREATE ROLE eb_bench_acl LOGIN;
GRANT EXECUTE ON FUNCTION eventbus.publish(text, jsonb, text, jsonb, timestamptz, interval) TO eb_bench_acl;
SELECT eventbus.grant_publish('eb_bench_acl', 'audit.r' || g || '.#') FROM generate_series(1, 19) g;
SELECT eventbus.grant_publish('eb_bench_acl', 'orders.*.created');
