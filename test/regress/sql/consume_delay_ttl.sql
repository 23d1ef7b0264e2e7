--
-- consume_delay_ttl: delayed delivery (deliver_at) and expiry (ttl).
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
-- 1. Delay (deliver_at) and TTL.
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
-- deliver_at more than eventbus.max_delay (30 days) ahead: refused (22023),
-- it would keep its chunk from being reclaimed; within it: accepted.
select eventbus.publish('delay.x', '{}', deliver_at => 'infinity');
\echo :LAST_ERROR_SQLSTATE
select eventbus.publish('delay.x', '{}', deliver_at => '290000-01-01');
\echo :LAST_ERROR_SQLSTATE
select eventbus.publish('delay.x', '{}', deliver_at => now() + interval '31 days');
\echo :LAST_ERROR_SQLSTATE
select eventbus.publish('delay.x', '{"delay": "29d"}', deliver_at => now() + interval '29 days') > 0 as published;
select eventbus.unsubscribe('dl');
