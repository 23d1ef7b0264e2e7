--
-- consume: subscriptions and consuming (subscribe, unsubscribe, pause,
-- resume, poll, ack, nack, extend_lease, dead letters, redrive, purge).
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
-- 1. Unknown subscription: every function raises 42704, also while no
--    subscription and no delivery exists yet.
--
select eventbus.poll('nope');
\echo :LAST_ERROR_SQLSTATE
select eventbus.ack('nope', array[1]);
\echo :LAST_ERROR_SQLSTATE
select eventbus.nack('nope', 1);
\echo :LAST_ERROR_SQLSTATE
select eventbus.unsubscribe('nope');
\echo :LAST_ERROR_SQLSTATE
select eventbus.pause('nope');
\echo :LAST_ERROR_SQLSTATE
select eventbus.resume('nope');
\echo :LAST_ERROR_SQLSTATE
select eventbus.redrive('nope');
\echo :LAST_ERROR_SQLSTATE
select eventbus.purge_dead_letters('nope');
\echo :LAST_ERROR_SQLSTATE
select eventbus.extend_lease('nope', array[1], '1 minute');
\echo :LAST_ERROR_SQLSTATE

--
-- 2. subscribe: argument validation.
--
-- Bad names: upper case, leading digit, "-", 55 characters, NULL (22023).
select eventbus.subscribe('Orders', array['a.#']);
\echo :LAST_ERROR_SQLSTATE
select eventbus.subscribe('1orders', array['a.#']);
\echo :LAST_ERROR_SQLSTATE
select eventbus.subscribe('order-mailer', array['a.#']);
\echo :LAST_ERROR_SQLSTATE
select eventbus.subscribe(repeat('n', 55), array['a.#']);
\echo :LAST_ERROR_SQLSTATE
select eventbus.subscribe(null, array['a.#']);
\echo :LAST_ERROR_SQLSTATE
-- 54 characters, a leading "_" and digits after the first character are fine.
select eventbus.subscribe(repeat('n', 54), array['a.#']);
select eventbus.subscribe('_order_2', array['a.#']);
select name from eventbus.subscriptions order by name collate "C";
select eventbus.unsubscribe(repeat('n', 54));
select eventbus.unsubscribe('_order_2');

-- Patterns: empty or NULL array (22023), NULL element (22004), invalid (22023).
select eventbus.subscribe('bad', array[]::text[]);
\echo :LAST_ERROR_SQLSTATE
select eventbus.subscribe('bad', null);
\echo :LAST_ERROR_SQLSTATE
select eventbus.subscribe('bad', array['a.#', null]);
\echo :LAST_ERROR_SQLSTATE
select eventbus.subscribe('bad', array['ord*']);
\echo :LAST_ERROR_SQLSTATE

-- max_attempts is 1 to 1000 (22023).
select eventbus.subscribe('bad', array['a.#'], max_attempts => 0);
\echo :LAST_ERROR_SQLSTATE
select eventbus.subscribe('bad', array['a.#'], max_attempts => 1001);
\echo :LAST_ERROR_SQLSTATE

-- Intervals must be positive and not too long (22023).
select eventbus.subscribe('bad', array['a.#'], lease => '0');
\echo :LAST_ERROR_SQLSTATE
select eventbus.subscribe('bad', array['a.#'], lease => '-1 second');
\echo :LAST_ERROR_SQLSTATE
select eventbus.subscribe('bad', array['a.#'], lease => '2 days');
\echo :LAST_ERROR_SQLSTATE
select eventbus.subscribe('bad', array['a.#'], backoff_initial => '0');
\echo :LAST_ERROR_SQLSTATE
select eventbus.subscribe('bad', array['a.#'], backoff_initial => '-1 second');
\echo :LAST_ERROR_SQLSTATE
select eventbus.subscribe('bad', array['a.#'], backoff_initial => '2 days');
\echo :LAST_ERROR_SQLSTATE
select eventbus.subscribe('bad', array['a.#'], backoff_max => '0');
\echo :LAST_ERROR_SQLSTATE
select eventbus.subscribe('bad', array['a.#'], backoff_max => '-1 hour');
\echo :LAST_ERROR_SQLSTATE
select eventbus.subscribe('bad', array['a.#'], backoff_max => '31 days');
\echo :LAST_ERROR_SQLSTATE
-- backoff_max shorter than backoff_initial (22023).
select eventbus.subscribe('bad', array['a.#'], backoff_initial => '10 seconds',
                          backoff_max => '5 seconds');
\echo :LAST_ERROR_SQLSTATE
-- start_at that is neither 'now', 'earliest' nor a time (22023).
select eventbus.subscribe('bad', array['a.#'], start_at => 'yesterdayish');
\echo :LAST_ERROR_SQLSTATE
-- None of the failed calls left a subscription behind.
select count(*) as subscriptions from eventbus.subscriptions;

-- Duplicate name (42710); the first subscription is unchanged.
select eventbus.subscribe('dup', array['dup.#']);
select eventbus.subscribe('dup', array['other.#']);
\echo :LAST_ERROR_SQLSTATE
select name, patterns from eventbus.subscriptions where name = 'dup';
select eventbus.unsubscribe('dup');

--
-- 3. Fan-out and topic matching.
--
-- Two subscriptions with overlapping patterns each get their own copy; a
-- subscription only gets the topics its patterns match, and an event that
-- matches two patterns of one subscription comes once.
select eventbus.subscribe('fan_star', array['orders.*.created']);
select eventbus.subscribe('fan_hash', array['orders.#']);
select eventbus.subscribe('fan_both', array['orders.*.created', 'orders.eu.#']);
select eventbus.subscribe('fan_all', array['#']);
select eventbus.publish('orders.eu.created', '{"fan": 1}') > 0 as published;
select eventbus.publish('orders.created', '{"fan": 2}') > 0 as published;
select eventbus.publish('orders.eu.x.created', '{"fan": 3}') > 0 as published;
select eventbus.publish('refunds.eu.created', '{"fan": 4}') > 0 as published;
select topic, payload, attempt from eventbus.poll('fan_star');
select topic, payload, attempt from eventbus.poll('fan_hash');
select topic, payload, attempt from eventbus.poll('fan_both');
select topic, payload, attempt from eventbus.poll('fan_all');
-- Each subscription leased its own copy of orders.eu.created.
select name, leased from eventbus.subscriptions where name like 'fan\_%' order by name;
select eventbus.unsubscribe('fan_star');
select eventbus.unsubscribe('fan_hash');
select eventbus.unsubscribe('fan_both');
select eventbus.unsubscribe('fan_all');

--
-- 4. start_at.
--
select eventbus.publish('start.x', '{"start": "before"}') > 0 as published;
select eventbus.subscribe('st_now', array['start.#']);
select eventbus.subscribe('st_earliest', array['start.#'], start_at => 'earliest');
select eventbus.subscribe('st_2000', array['start.#'], start_at => '2000-01-01');
select eventbus.subscribe('st_future', array['start.#'], start_at => '2999-01-01 00:00+00');
select eventbus.publish('start.x', '{"start": "after"}') > 0 as published;
-- 'now' (the default): only what was published after subscribe.
select payload from eventbus.poll('st_now');
-- 'earliest': what was published before subscribe too.
select payload from eventbus.poll('st_earliest');
-- A time in the past: everything published since then.
select payload from eventbus.poll('st_2000');
-- A time in the future: none of the existing events.
select count(*) as polled from eventbus.poll('st_future');
select eventbus.unsubscribe('st_now');
select eventbus.unsubscribe('st_earliest');
select eventbus.unsubscribe('st_2000');
select eventbus.unsubscribe('st_future');

--
-- 5. poll: max_events, attempt, lease_until, no second delivery while leased.
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
-- 6. ack.
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
select count(*) as deliveries from eventbus.delivery d
  join eventbus.subscription s on s.id = d.sub_id where s.name = 'pl';
select eventbus.unsubscribe('pl');

--
-- 7. nack, retries and dead letters.
--
select eventbus.subscribe('nk', array['nack.#'], max_attempts => 2);
select eventbus.publish('nack.x', '{"nack": 1}') > 0 as published;
select payload, attempt from eventbus.poll('nk');
-- A nack without retry_in waits for the backoff (1 second at first, so at
-- least half a second): the event is not handed out at once.
select eventbus.nack('nk', pg_temp.eid('{"nack": 1}'), 'boom');
select count(*) as polled from eventbus.poll('nk');
select name, leased, waiting, dead from eventbus.subscriptions where name = 'nk';
-- A waiting event is not leased: nack refuses it (55000), ack ignores it.
-- (The message names the event id: only the SQLSTATE is shown.)
\set VERBOSITY sqlstate
select eventbus.nack('nk', pg_temp.eid('{"nack": 1}'), 'again');
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
select eventbus.ack('nk', array[pg_temp.eid('{"nack": 1}')]) as acked;
-- retry_in must not be negative (22023).
select eventbus.nack('nk', pg_temp.eid('{"nack": 1}'), 'x', retry_in => '-1 second');
\echo :LAST_ERROR_SQLSTATE
-- An event that was never polled is not leased (55000).
select eventbus.nack('nk', 999999999, 'x');
\echo :LAST_ERROR_SQLSTATE

-- retry_in => '0': the retry is due at once, as attempt 2.
select eventbus.publish('nack.y', '{"nack": 2}', key => 'k2') > 0 as published;
select topic, payload, attempt from eventbus.poll('nk');
select eventbus.nack('nk', pg_temp.eid('{"nack": 2}'), 'boom', retry_in => '0');
select topic, payload, attempt from eventbus.poll('nk');
-- At max_attempts (2) the next nack makes it a dead letter.
select eventbus.nack('nk', pg_temp.eid('{"nack": 2}'), 'boom again');
select count(*) as polled from eventbus.poll('nk');
select subscription, topic, key, payload, attempts, last_error, reason,
       dead_at <= clock_timestamp() as dead_at_set
  from eventbus.dead_letters where subscription = 'nk';
-- A dead letter is not leased either (55000).
\set VERBOSITY sqlstate
select eventbus.nack('nk', pg_temp.eid('{"nack": 2}'), 'x');
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
select name, leased, waiting, dead from eventbus.subscriptions where name = 'nk';

-- Once its backoff (at most 1 second) has passed, the first event comes
-- back as attempt 2.
select pg_sleep(1.05);
select payload, attempt from eventbus.poll('nk');
select eventbus.ack('nk', array[pg_temp.eid('{"nack": 1}')]) as acked;
select eventbus.unsubscribe('nk');

--
-- 8. Backoff: backoff_initial * 2^(attempt-1), capped at backoff_max, then
--    50 to 100 % of it.  Checked on eventbus.delivery.available_at: at least
--    the lower bound after the transaction's start, at most the upper bound
--    after the nack.
--
select eventbus.subscribe('bo', array['backoff.#'], backoff_initial => '10 seconds');
select count(*) from eventbus.publish_batch(array['backoff.x'],
    array['{"backoff": 1}', '{"backoff": 3}']::jsonb[]);
select payload, attempt from eventbus.poll('bo');
-- Attempt 1: 5 to 10 seconds.
begin;
select eventbus.nack('bo', pg_temp.eid('{"backoff": 1}'), 'e1');
select d.state, d.attempt,
       d.available_at >= now() + interval '5 seconds' as at_least_5s,
       d.available_at <= clock_timestamp() + interval '10 seconds' as at_most_10s
  from eventbus.delivery d join eventbus.subscription s on s.id = d.sub_id
 where s.name = 'bo' and d.event_id = pg_temp.eid('{"backoff": 1}');
commit;
-- Two immediate retries bring the other event to attempt 3.
select eventbus.nack('bo', pg_temp.eid('{"backoff": 3}'), 'e1', retry_in => '0');
select payload, attempt from eventbus.poll('bo');
select eventbus.nack('bo', pg_temp.eid('{"backoff": 3}'), 'e2', retry_in => '0');
select payload, attempt from eventbus.poll('bo');
-- Attempt 3: 10 s * 2^2 = 40 s, so 20 to 40 seconds.
begin;
select eventbus.nack('bo', pg_temp.eid('{"backoff": 3}'), 'e3');
select d.state, d.attempt,
       d.available_at >= now() + interval '20 seconds' as at_least_20s,
       d.available_at <= clock_timestamp() + interval '40 seconds' as at_most_40s
  from eventbus.delivery d join eventbus.subscription s on s.id = d.sub_id
 where s.name = 'bo' and d.event_id = pg_temp.eid('{"backoff": 3}');
commit;
select eventbus.unsubscribe('bo');

-- Capped by backoff_max: attempt 2 would be 20 s, the cap is 12 s, so the
-- wait is 6 to 12 seconds.
select eventbus.subscribe('bocap', array['bocap.#'], backoff_initial => '10 seconds',
                          backoff_max => '12 seconds');
select eventbus.publish('bocap.x', '{"bocap": 1}') > 0 as published;
select attempt from eventbus.poll('bocap');
select eventbus.nack('bocap', pg_temp.eid('{"bocap": 1}'), 'e1', retry_in => '0');
select attempt from eventbus.poll('bocap');
begin;
select eventbus.nack('bocap', pg_temp.eid('{"bocap": 1}'), 'e2');
select d.state, d.attempt,
       d.available_at >= now() + interval '6 seconds' as at_least_6s,
       d.available_at <= clock_timestamp() + interval '12 seconds' as at_most_12s
  from eventbus.delivery d join eventbus.subscription s on s.id = d.sub_id
 where s.name = 'bocap';
commit;
select eventbus.unsubscribe('bocap');

--
-- 9. Lease expiry.
--
-- The subscription's lease: an expired lease is handed out again, attempt 2.
select eventbus.subscribe('le', array['lease.#'], lease => '1 millisecond');
select eventbus.publish('lease.x', '{"lease": 1}') > 0 as published;
select payload, attempt from eventbus.poll('le');
select pg_sleep(0.02);
select payload, attempt from eventbus.poll('le', lease => '1 minute');
select eventbus.ack('le', array[pg_temp.eid('{"lease": 1}')]) as acked;
select eventbus.unsubscribe('le');
-- The poll's lease argument, likewise.
select eventbus.subscribe('le2', array['lease2.#']);
select eventbus.publish('lease2.x', '{"lease2": 1}') > 0 as published;
select payload, attempt from eventbus.poll('le2', lease => '1 millisecond');
select pg_sleep(0.02);
select payload, attempt from eventbus.poll('le2');
-- A late ack of an expired-then-re-leased event still finishes it.
select eventbus.ack('le2', array[pg_temp.eid('{"lease2": 1}')]) as acked;
select eventbus.unsubscribe('le2');
-- At the last attempt an expired lease becomes a dead letter, reason
-- 'lease_expired', on the next poll.
select eventbus.subscribe('le1', array['lease1.#'], max_attempts => 1, lease => '1 millisecond');
select eventbus.publish('lease1.x', '{"lease1": 1}') > 0 as published;
select payload, attempt from eventbus.poll('le1');
select pg_sleep(0.02);
select count(*) as polled from eventbus.poll('le1');
select subscription, topic, payload, attempts, reason from eventbus.dead_letters
 where subscription = 'le1';
select eventbus.unsubscribe('le1');

--
-- 10. extend_lease.
--
select eventbus.subscribe('ext', array['ext.#']);
select count(*) from eventbus.publish_batch(array['ext.x'],
    array['{"ext": 1}', '{"ext": 2}']::jsonb[]);
select count(*) as polled from eventbus.poll('ext', lease => '1 minute');
-- Returns how many leases it extended; unknown ids do not count.  The
-- extended lease ends an hour from the call, the other one is unchanged.
begin;
select eventbus.extend_lease('ext', array[pg_temp.eid('{"ext": 1}'), 999999999], '1 hour') as extended;
select e.payload,
       d.available_at >= now() + interval '1 hour'
         and d.available_at <= clock_timestamp() + interval '1 hour' as ends_in_1h,
       d.available_at <= now() + interval '1 minute' as ends_in_1min
  from eventbus.delivery d join eventbus.subscription s on s.id = d.sub_id
  join eventbus.events e on e.id = d.event_id
 where s.name = 'ext' order by e.payload->>'ext';
commit;
-- The lease argument is checked (22023).
select eventbus.extend_lease('ext', array[pg_temp.eid('{"ext": 1}')], '0');
\echo :LAST_ERROR_SQLSTATE
-- An acked event has no lease to extend.
select eventbus.ack('ext', array[pg_temp.eid('{"ext": 2}')]) as acked;
select eventbus.extend_lease('ext', array[pg_temp.eid('{"ext": 2}')], '1 hour') as extended;
select eventbus.unsubscribe('ext');

--
-- 11. redrive and purge_dead_letters.
--
select eventbus.subscribe('rd', array['redrive.#'], max_attempts => 1);
select count(*) from eventbus.publish_batch(array['redrive.x'],
    array['{"rd": 1}', '{"rd": 2}', '{"rd": 3}']::jsonb[]);
select count(*) as polled from eventbus.poll('rd');
select eventbus.nack('rd', pg_temp.eid('{"rd": 1}'), 'e1');
select eventbus.nack('rd', pg_temp.eid('{"rd": 2}'), 'e2');
select eventbus.nack('rd', pg_temp.eid('{"rd": 3}'), 'e3');
select payload, attempts, last_error, reason from eventbus.dead_letters
 where subscription = 'rd' order by payload->>'rd';
-- Redrive only the listed dead letters: they come back with attempt 1.
select eventbus.redrive('rd', array[pg_temp.eid('{"rd": 1}')]) as redriven;
select payload, attempt from eventbus.poll('rd');
select payload from eventbus.dead_letters where subscription = 'rd' order by payload->>'rd';
-- Redrive all of them.
select eventbus.nack('rd', pg_temp.eid('{"rd": 1}'), 'e1 again');
select eventbus.redrive('rd') as redriven;
select payload, attempt from eventbus.poll('rd') order by payload->>'rd';
select count(*) as dead from eventbus.dead_letters where subscription = 'rd';
select eventbus.redrive('rd') as redriven;
-- Purge: older_than '1 hour' spares fresh dead letters, no argument purges all.
select eventbus.nack('rd', pg_temp.eid('{"rd": 1}'), 'x');
select eventbus.nack('rd', pg_temp.eid('{"rd": 2}'), 'x');
select eventbus.purge_dead_letters('rd', older_than => '1 hour') as purged;
select count(*) as dead from eventbus.dead_letters where subscription = 'rd';
select eventbus.purge_dead_letters('rd') as purged;
select count(*) as dead from eventbus.dead_letters where subscription = 'rd';
select eventbus.purge_dead_letters('rd') as purged;
-- older_than must not be negative (22023).
select eventbus.purge_dead_letters('rd', older_than => '-1 hour');
\echo :LAST_ERROR_SQLSTATE
-- Purged events are gone for good.
select count(*) as polled from eventbus.poll('rd');
select eventbus.ack('rd', array[pg_temp.eid('{"rd": 3}')]) as acked;
select eventbus.unsubscribe('rd');

--
-- 12. pause and resume.
--
select eventbus.subscribe('ps', array['pause.#']);
select eventbus.pause('ps');
select paused from eventbus.subscriptions where name = 'ps';
select eventbus.publish('pause.x', '{"pause": 1}') > 0 as published;
select count(*) as polled from eventbus.poll('ps');
select count(*) as polled from eventbus.poll('ps');
-- Nothing was lost while paused.
select eventbus.resume('ps');
select paused from eventbus.subscriptions where name = 'ps';
select payload, attempt from eventbus.poll('ps');
select eventbus.ack('ps', array[pg_temp.eid('{"pause": 1}')]) as acked;
select eventbus.unsubscribe('ps');

--
-- 13. Delay (deliver_at) and TTL.
--
select eventbus.subscribe('dl', array['delay.#']);
-- An hour ahead: not handed out, it waits in a row of its own.
select eventbus.publish('delay.x', '{"delay": "1h"}',
                        deliver_at => now() + interval '1 hour') > 0 as published;
select count(*) as polled from eventbus.poll('dl');
select d.state, d.attempt,
       d.available_at > now() + interval '59 minutes' as waits_1h
  from eventbus.delivery d join eventbus.subscription s on s.id = d.sub_id
 where s.name = 'dl';
-- 50 milliseconds ahead: handed out once that time has come.
select eventbus.publish('delay.x', '{"delay": "50ms"}',
                        deliver_at => clock_timestamp() + interval '50 milliseconds') > 0 as published;
select pg_sleep(0.1);
select payload, attempt from eventbus.poll('dl');
select eventbus.ack('dl', array[pg_temp.eid('{"delay": "50ms"}')]) as acked;
-- A ttl that ends before the poll: never handed out.
select eventbus.publish('delay.x', '{"delay": "ttl"}', ttl => '1 millisecond') > 0 as published;
select pg_sleep(0.02);
select count(*) as polled from eventbus.poll('dl');
select count(*) as polled from eventbus.poll('dl');
-- A ttl that has not ended: handed out.
select eventbus.publish('delay.x', '{"delay": "ttl 1h"}', ttl => '1 hour') > 0 as published;
select payload from eventbus.poll('dl');
select eventbus.unsubscribe('dl');

--
-- 14. filter: a jsonpath predicate on the payload.
--
select eventbus.subscribe('fl', array['filter.#'], filter => '$.amount > 100');
select count(*) from eventbus.publish_batch(array['filter.x'],
    array['{"amount": 50}', '{"amount": 150}', '{"other": 1}', '{"amount": "lots"}',
          '{"amount": 101}']::jsonb[]);
select payload from eventbus.poll('fl');
select filter from eventbus.subscriptions where name = 'fl';
select eventbus.unsubscribe('fl');

--
-- 15. Exactly-once inside the database: a rolled-back poll and ack leave
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
-- 16. A poller's own uncommitted events are delivered after its commit.
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

--
-- 17. The subscriptions view and unsubscribe.
--
select eventbus.subscribe('vw', array['view.a.#', 'view.b'], max_attempts => 3,
                          lease => '1 minute');
select count(*) from eventbus.publish_batch(array['view.a'],
    array['{"vw": 1}', '{"vw": 2}', '{"vw": 3}', '{"vw": 4}']::jsonb[]);
select count(*) as polled from eventbus.poll('vw', 3);
select eventbus.nack('vw', pg_temp.eid('{"vw": 1}'), 'later', retry_in => '1 hour');
select eventbus.nack('vw', pg_temp.eid('{"vw": 2}'), 'later', retry_in => '1 hour');
select eventbus.publish('view.a', '{"vw": 5}', deliver_at => now() + interval '1 hour') > 0 as published;
select count(*) as polled from eventbus.poll('vw');
-- vw 3 leased, vw 4 leased, vw 1 and 2 waiting, vw 5 waiting (delayed).
select name, patterns, max_attempts, backoff_initial, backoff_max, lease, filter, paused,
       channel, created_at <= now() as created_at_set, leased, waiting, dead
  from eventbus.subscriptions where name = 'vw';
select id as vw_id from eventbus.subscription where name = 'vw' \gset
select count(*) as deliveries from eventbus.delivery where sub_id = :vw_id;
-- unsubscribe drops the subscription with its position and deliveries.
select eventbus.unsubscribe('vw');
select count(*) as subscriptions from eventbus.subscriptions where name = 'vw';
select count(*) as deliveries from eventbus.delivery where sub_id = :vw_id;
select count(*) as cursors from eventbus.cursor where sub_id = :vw_id;
select eventbus.poll('vw');
\echo :LAST_ERROR_SQLSTATE
-- The name can be used again, and the new subscription starts afresh.
select eventbus.subscribe('vw', array['view.#']);
select count(*) as polled from eventbus.poll('vw');
select eventbus.unsubscribe('vw');

-- Only the transaction test's subscription is left; clean it up.
select name from eventbus.subscriptions order by name collate "C";
select eventbus.unsubscribe('tx');
select count(*) as deliveries from eventbus.delivery;

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
  FROM ack_ids a JOIN eventbus.delivery d ON d.event_id = a.event_id
  JOIN eventbus.subscription s ON s.id = d.sub_id AND s.name = 'ack_pick'
 WHERE a.n <= 8;
SELECT count(*) AS other_untouched FROM eventbus.delivery d JOIN eventbus.subscription s ON s.id = d.sub_id
 WHERE s.name = 'ack_other';
SELECT eventbus.unsubscribe('ack_pick');
SELECT eventbus.unsubscribe('ack_other');
