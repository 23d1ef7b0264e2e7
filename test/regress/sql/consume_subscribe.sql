--
-- consume_subscribe: subscriptions: unknown names (42704), subscribe's
-- argument checks, pause and resume, the subscriptions view and
-- unsubscribe.
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

-- Polls until nothing is left (a poll that finds events ready returns
-- them without waiting for events committed since the last cut); returns
-- how many events it leased.
create function pg_temp.drain(sub text, n integer default 100) returns bigint
    language plpgsql as $$
declare got bigint; total bigint := 0;
begin
    loop
        select count(*) into got from eventbus.poll(sub, n);
        exit when got = 0;
        total := total + got;
    end loop;
    return total;
end $$;

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
-- a two-dimensional array, and too many patterns
select eventbus.subscribe('bad', array[['a.#', 'b.#'], ['c.#', 'd.#']]);
\echo :LAST_ERROR_SQLSTATE
select eventbus.subscribe('bad', array(select 'p' || i || '.#' from generate_series(1, 101) i));
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
-- 3. pause and resume.
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
-- 4. The subscriptions view and unsubscribe.
--
select eventbus.subscribe('vw', array['view.a.#', 'view.b'], max_attempts => 3,
                          lease => '1 minute');
select count(*) from eventbus.publish_batch(array['view.a'],
    array['{"vw": 1}', '{"vw": 2}', '{"vw": 3}', '{"vw": 4}']::jsonb[]);
select count(*) as polled from eventbus.poll('vw', 3);
select eventbus.nack('vw', pg_temp.eid('{"vw": 1}'), 'later', retry_in => '1 hour');
select eventbus.nack('vw', pg_temp.eid('{"vw": 2}'), 'later', retry_in => '1 hour');
select eventbus.publish('view.a', '{"vw": 5}', deliver_at => now() + interval '1 hour') > 0 as published;
select pg_temp.drain('vw') as polled;
-- vw 3 leased, vw 4 leased, vw 1 and 2 waiting, vw 5 waiting (delayed).
select name, patterns, max_attempts, backoff_initial, backoff_max, lease, filter, paused,
       channel, created_at <= now() as created_at_set, leased, waiting, dead
  from eventbus.subscriptions where name = 'vw';
select id as vw_id from eventbus.subscription where name = 'vw' \gset
select count(*) as deliveries from eventbus.deliveries where subscription = 'vw';
-- unsubscribe drops the subscription with its position and deliveries.
select eventbus.unsubscribe('vw');
select count(*) as subscriptions from eventbus.subscriptions where name = 'vw';
select count(*) as deliveries from eventbus.delivery where sub_id = :vw_id;
select count(*) as batches from eventbus.batch where sub_id = :vw_id;
select count(*) as cursors from eventbus.cursor where sub_id = :vw_id;
select eventbus.poll('vw');
\echo :LAST_ERROR_SQLSTATE
-- The name can be used again, and the new subscription starts afresh.
select eventbus.subscribe('vw', array['view.#']);
select count(*) as polled from eventbus.poll('vw');
select eventbus.unsubscribe('vw');
