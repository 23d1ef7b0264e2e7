--
-- consume_retry: nack, retries with backoff, dead letters, redrive and
-- purge_dead_letters.
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
-- 1. nack, retries and dead letters.
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
-- 2. Backoff: backoff_initial * 2^(attempt-1), capped at backoff_max, then
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
-- 3. redrive and purge_dead_letters.
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
-- A huge error text is kept cut to 8 kB, marked.
select eventbus.publish('redrive.x', '{"rd": 4}') > 0 as published;
select count(*) as polled from eventbus.poll('rd');
select eventbus.nack('rd', pg_temp.eid('{"rd": 4}'), repeat('é', 1000000));
select octet_length(last_error) <= 8192 as clipped, last_error like '%é... (truncated)' as marked
  from eventbus.dead_letters where subscription = 'rd' and event_id = pg_temp.eid('{"rd": 4}');
select eventbus.unsubscribe('rd');

-- Backoff at extreme settings: 1 day doubled 60 times is capped at
-- backoff_max before it can overflow; the last attempt dead-letters.
select eventbus.subscribe('bo', array['bo.#'], max_attempts => 1000,
                          backoff_initial => '1 day', backoff_max => '30 days');
select eventbus.publish('bo.x', '{"bo": 1}') > 0 as published;
select count(*) as polled from eventbus.poll('bo');
select eventbus.nack('bo', pg_temp.eid('{"bo": 1}'), 'first');
select available_at between now() + interval '11 hours' and now() + interval '25 hours' as about_a_day
  from eventbus.deliveries where subscription = 'bo';
update eventbus.delivery set attempt = 60, available_at = now() - interval '1 second'
 where sub_id = (select id from eventbus.subscription where name = 'bo');
select attempt from eventbus.poll('bo');
select eventbus.nack('bo', pg_temp.eid('{"bo": 1}'), 'sixty-first');
select available_at between now() + interval '14 days' and now() + interval '31 days' as capped
  from eventbus.deliveries where subscription = 'bo';
update eventbus.delivery set attempt = 999, available_at = now() - interval '1 second'
 where sub_id = (select id from eventbus.subscription where name = 'bo');
select attempt from eventbus.poll('bo');
select eventbus.nack('bo', pg_temp.eid('{"bo": 1}'), 'last');
select attempts, reason from eventbus.dead_letters where subscription = 'bo';
select eventbus.unsubscribe('bo');
