--
-- consume_leases: lease expiry (handed out again, a late ack, a dead letter
-- at the last attempt) and extend_lease (only on leased deliveries).
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
-- 1. Lease expiry.
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
-- 2. extend_lease.
--
select eventbus.subscribe('ext', array['ext.#']);
select count(*) from eventbus.publish_batch(array['ext.x'],
    array['{"ext": 1}', '{"ext": 2}']::jsonb[]);
-- Two polls of one event each: two leases.
select count(*) as polled from eventbus.poll('ext', 1, lease => '1 minute');
select count(*) as polled from eventbus.poll('ext', 1, lease => '1 minute');
-- Returns how many leased events it extended; unknown ids do not count.
-- The extended lease ends an hour from the call, the other one is unchanged.
begin;
select eventbus.extend_lease('ext', array[pg_temp.eid('{"ext": 1}'), 999999999], '1 hour') as extended;
select e.payload,
       d.available_at >= now() + interval '1 hour'
         and d.available_at <= clock_timestamp() + interval '1 hour' as ends_in_1h,
       d.available_at <= now() + interval '1 minute' as ends_in_1min
  from eventbus.deliveries d join eventbus.events e on e.id = d.event_id
 where d.subscription = 'ext' order by e.payload->>'ext';
commit;
-- Events polled together share their lease: extending one extends them all.
select count(*) from eventbus.publish_batch(array['ext.x'],
    array['{"ext": 3}', '{"ext": 4}']::jsonb[]);
select count(*) as polled from eventbus.poll('ext', 10, lease => '1 minute');
select eventbus.extend_lease('ext', array[pg_temp.eid('{"ext": 3}')], '1 hour') as extended;
select e.payload, d.available_at > now() + interval '59 minutes' as ends_in_1h
  from eventbus.deliveries d join eventbus.events e on e.id = d.event_id
 where d.subscription = 'ext' and e.payload->>'ext' in ('3', '4') order by e.payload->>'ext';
-- The lease argument is checked (22023).
select eventbus.extend_lease('ext', array[pg_temp.eid('{"ext": 1}')], '0');
\echo :LAST_ERROR_SQLSTATE
-- An acked event has no lease to extend.
select eventbus.ack('ext', array[pg_temp.eid('{"ext": 2}')]) as acked;
select eventbus.extend_lease('ext', array[pg_temp.eid('{"ext": 2}')], '1 hour') as extended;
select eventbus.unsubscribe('ext');

--
-- 3. extend_lease changes only leased deliveries: a waiting one (a retry
-- not due yet) and a dead one keep their state and time, a leased one of
-- its own and a leased one in a batch get the new lease end.
--
select eventbus.subscribe('extwd', array['extwd.#'], max_attempts => 2);
select count(*) from eventbus.publish_batch(array['extwd.x'],
    array['{"extwd": "waiting"}', '{"extwd": "dead"}', '{"extwd": "own"}',
          '{"extwd": "batch"}']::jsonb[]);
select count(*) as polled from eventbus.poll('extwd', 10, lease => '1 minute');
select eventbus.nack('extwd', pg_temp.eid('{"extwd": "waiting"}'), 'later', retry_in => '10 minutes');
select eventbus.nack('extwd', pg_temp.eid('{"extwd": "dead"}'), 'again', retry_in => '0');
select eventbus.nack('extwd', pg_temp.eid('{"extwd": "own"}'), 'again', retry_in => '0');
-- The two due retries, leased again (attempt 2, rows of their own); the
-- second nack at max_attempts makes "dead" a dead letter.
select e.payload->>'extwd' as polled, p.attempt
  from eventbus.poll('extwd', 10, lease => '1 minute') p join eventbus.events e on e.id = p.event_id
 order by 1;
select eventbus.nack('extwd', pg_temp.eid('{"extwd": "dead"}'), 'again');
create temp table extwd_before as
  select e.payload->>'extwd' as name, d.state, d.attempt, d.available_at, d.batch_id is not null as in_batch
    from eventbus.deliveries d join eventbus.events e on e.id = d.event_id
   where d.subscription = 'extwd';
select name, state, attempt, in_batch from extwd_before order by name;
-- Only the two leased ones count.
select eventbus.extend_lease('extwd', array[pg_temp.eid('{"extwd": "waiting"}'),
    pg_temp.eid('{"extwd": "dead"}'), pg_temp.eid('{"extwd": "own"}'),
    pg_temp.eid('{"extwd": "batch"}')], '1 hour') as extended;
select b.name, d.state, d.attempt,
       d.state is not distinct from b.state as same_state,
       d.available_at is not distinct from b.available_at as same_time,
       d.available_at > now() + interval '59 minutes' as ends_in_1h
  from extwd_before b
  join eventbus.events e on e.payload->>'extwd' = b.name
  join eventbus.deliveries d on d.event_id = e.id and d.subscription = 'extwd'
 order by b.name;
-- Alone, a waiting or a dead event has no lease to extend.
select eventbus.extend_lease('extwd', array[pg_temp.eid('{"extwd": "waiting"}'),
    pg_temp.eid('{"extwd": "dead"}')], '2 hours') as extended;
select b.name, d.available_at is not distinct from b.available_at as same_time
  from extwd_before b
  join eventbus.events e on e.payload->>'extwd' = b.name
  join eventbus.deliveries d on d.event_id = e.id and d.subscription = 'extwd'
 where b.name in ('waiting', 'dead') order by b.name;
drop table extwd_before;
select eventbus.unsubscribe('extwd');
