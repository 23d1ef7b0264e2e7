--
-- consume_basic: poll and ack (which ids ack finishes), and both inside
-- transactions: a rolled-back poll and ack, a poller's own uncommitted
-- events.
--
-- Expected values below are written from docs/consuming.md, not from the
-- implementation.  The extension is loaded by pg_regress.  Nothing printed
-- depends on event ids, times or the random jitter: payloads, counts,
-- booleans and time differences checked against bounds only.  Every block
-- uses its own topics so that subscriptions do not see each other's events.
--
\set VERBOSITY default
-- PL/pgSQL CONTEXT lines carry line numbers of the implementation, which are
-- not part of the behaviour: leave them out.
\set SHOW_CONTEXT never

-- The id of the event with this (unique) payload, to pass to ack/nack.
create function pg_temp.eid(p jsonb) returns bigint
    language sql stable as $$ select id from eventbus.events where payload = p $$;

--
-- 1. poll: max_events, attempt, lease_until, no second delivery while leased.
--
select eventbus.subscribe('pl', array['poll.#']);
select count(*) from eventbus.publish_batch(array['poll.x'],
    array['{"poll": 1}', '{"poll": 2}', '{"poll": 3}']::jsonb[]);
-- At most max_events, first delivery is attempt 1, lease_until is now() plus
-- the subscription's lease (30 seconds by default).
select payload, attempt,
       lease_until >= now() + interval '30 seconds'
         and lease_until <= clock_timestamp() + interval '30 seconds' as lease_30s
  from eventbus.poll('pl', 2);
-- The lease argument overrides the subscription's.
select payload, attempt,
       lease_until >= now() + interval '5 minutes'
         and lease_until <= clock_timestamp() + interval '5 minutes' as lease_5min
  from eventbus.poll('pl', 10, lease => '5 minutes');
-- Leased events are not handed out again.
select count(*) as polled from eventbus.poll('pl');
-- max_events must be 1 to 10000 (22023); the lease argument is checked too.
select eventbus.poll('pl', 0);
\echo :LAST_ERROR_SQLSTATE
select eventbus.poll('pl', 10001);
\echo :LAST_ERROR_SQLSTATE
select eventbus.poll('pl', 10, lease => '0');
\echo :LAST_ERROR_SQLSTATE

--
-- 2. ack.
--
-- ack returns how many leased events it finished; acking twice gives 0.
select eventbus.ack('pl', array[pg_temp.eid('{"poll": 1}'), pg_temp.eid('{"poll": 2}')]) as acked;
select eventbus.ack('pl', array[pg_temp.eid('{"poll": 1}'), pg_temp.eid('{"poll": 2}')]) as acked;
select eventbus.ack('pl', array[pg_temp.eid('{"poll": 3}'), pg_temp.eid('{"poll": 1}')]) as acked;
-- Acked events are never handed out again, not even after their lease would
-- have ended.
select eventbus.publish('poll.x', '{"poll": 4}') > 0 as published;
select payload, attempt from eventbus.poll('pl', lease => '1 millisecond');
select eventbus.ack('pl', array[pg_temp.eid('{"poll": 4}')]) as acked;
select pg_sleep(0.02);
select count(*) as polled from eventbus.poll('pl');
select count(*) as deliveries from eventbus.deliveries where subscription = 'pl';
select eventbus.unsubscribe('pl');

--
-- 3. Exactly-once inside the database: a rolled-back poll and ack leave
--     the event available again, as a first attempt.
--
select eventbus.subscribe('tx', array['tx.#']);
select eventbus.publish('tx.x', '{"tx": 1}') > 0 as published;
begin;
select payload, attempt from eventbus.poll('tx');
select eventbus.ack('tx', array[pg_temp.eid('{"tx": 1}')]) as acked;
rollback;
select payload, attempt from eventbus.poll('tx');
select eventbus.ack('tx', array[pg_temp.eid('{"tx": 1}')]) as acked;

--
-- 4. A poller's own uncommitted events are delivered after its commit.
--
begin;
select eventbus.publish('tx.x', '{"tx": "own"}') > 0 as published;
select count(*) as polled from eventbus.poll('tx');
commit;
select payload, attempt from eventbus.poll('tx');
-- publish A; poll; publish B; commit: both A and B come, nothing is lost.
begin;
select eventbus.publish('tx.x', '{"tx": "A"}') > 0 as published;
select count(*) as polled from eventbus.poll('tx');
select eventbus.publish('tx.x', '{"tx": "B"}') > 0 as published;
commit;
select payload, attempt from eventbus.poll('tx');
select count(*) as polled from eventbus.poll('tx');

-- Only the transaction test's subscription is left; clean it up.
select name from eventbus.subscriptions order by name collate "C";
select eventbus.unsubscribe('tx');
select count(*) as deliveries from eventbus.deliveries;
select count(*) as batches from eventbus.batch;

-- ack picks exactly the ids given, whether they lie close together (one
-- range scan of the primary key) or far apart (one descent per id); NULL
-- elements and duplicates are ignored; ids of other subscriptions untouched.
SELECT eventbus.subscribe('ack_pick', ARRAY['ackpick.#']);
SELECT eventbus.subscribe('ack_other', ARRAY['ackpick.#']);
SELECT count(eventbus.publish('ackpick.x', jsonb_build_object('n', g))) FROM generate_series(1, 40) g;
CREATE TEMP TABLE ack_ids AS SELECT event_id, row_number() OVER (ORDER BY event_id) AS n
  FROM eventbus.poll('ack_pick', 40);
SELECT count(*) FROM eventbus.poll('ack_other', 40);
SELECT eventbus.ack('ack_pick', (SELECT array_agg(event_id) FROM ack_ids WHERE n IN (1, 3))) AS close_together;
SELECT eventbus.ack('ack_pick', (SELECT array_agg(event_id) FROM ack_ids WHERE n IN (5, 40))) AS far_apart;
SELECT eventbus.ack('ack_pick', (SELECT array_agg(event_id) || ARRAY[NULL, min(event_id)]::bigint[] FROM ack_ids WHERE n = 7)) AS with_null_and_duplicate;
SELECT eventbus.ack('ack_pick', (SELECT array_agg(event_id) FROM ack_ids WHERE n IN (1, 3))) AS again;
SELECT eventbus.ack('ack_pick', '{}') AS empty, eventbus.ack('ack_pick', NULL) AS null_array;
SELECT string_agg(a.n::text, ',' ORDER BY a.n) AS still_leased_among_first_8
  FROM ack_ids a JOIN eventbus.deliveries d ON d.event_id = a.event_id AND d.subscription = 'ack_pick'
 WHERE a.n <= 8 AND d.state = 'leased';
SELECT count(*) AS other_untouched FROM eventbus.deliveries d
 WHERE d.subscription = 'ack_other' AND d.state = 'leased';
SELECT eventbus.unsubscribe('ack_pick');
SELECT eventbus.unsubscribe('ack_other');
