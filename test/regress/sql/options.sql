-- Subscription options: ordered, max_backlog/on_overflow, alter_subscription,
-- seek, expiry counting and poll's wait.
\set VERBOSITY default
\set SHOW_CONTEXT never

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

-- ordered => true: one event per key at a time, in commit order
select eventbus.subscribe('ord', array['ord.#'], ordered => true, max_attempts => 2,
                          backoff_initial => '1 millisecond', backoff_max => '1 millisecond');
select count(eventbus.publish('ord.x', jsonb_build_object('n', n), key => k))
  from (values (1, 'a'), (2, 'a'), (3, 'b'), (4, null), (5, 'a'), (6, 'b')) v (n, k);
create temp table got (n int, key text, attempt int);
create function poll_ord(sub text default 'ord') returns setof got language sql as $$
    insert into got select (payload->>'n')::int, key, attempt from eventbus.poll(sub, 10)
    returning *;
$$;
create function ack_n(sub text, variadic ns int[]) returns int language sql as $$
    select eventbus.ack(sub, array(select id from eventbus.events
                                    where (payload->>'n')::int = any (ns) and topic like sub || '.%'));
$$;
create function id_of(sub text, n int) returns bigint language sql as $$
    select id from eventbus.events where (payload->>'n')::int = n and topic like sub || '.%';
$$;
select * from poll_ord() order by n;          -- heads of a and b, and the keyless 4
select * from poll_ord() order by n;          -- nothing: 2, 5 wait behind 1; 6 behind 3
select ack_n('ord', 1);
select * from poll_ord() order by n;          -- 2, the next of a
select eventbus.nack('ord', id_of('ord', 3), 'try again');
select pg_sleep(0.02);
select * from poll_ord() order by n;          -- 3 again (attempt 2); 6 still waits
select eventbus.nack('ord', id_of('ord', 3), 'gave up');   -- dead: releases 6
select * from poll_ord() order by n;
select ack_n('ord', 2, 4, 6);
select * from poll_ord() order by n;          -- 5, last of a
-- a redriven dead letter rejoins its key's queue at the end
select eventbus.publish('ord.x', jsonb_build_object('n', 7), key => 'b') > 0 as published;
select * from poll_ord() order by n;          -- 7: the dead 3 does not hold b up
select eventbus.redrive('ord');
select * from poll_ord() order by n;          -- nothing: 3 waits behind 7
select ack_n('ord', 7);
select * from poll_ord() order by n;          -- then 3, attempt 1 again
select ack_n('ord', 3, 5);
select leased, waiting, dead from eventbus.subscriptions where name = 'ord';
select eventbus.unsubscribe('ord');

-- max_backlog with on_overflow 'reject' (counted on every publish here)
set eventbus.backlog_check_interval = 0;
select eventbus.subscribe('bl', array['bl.#'], max_backlog => 3);
-- several events in one statement: the count cannot see the statement's own
-- rows, they are added to it
select eventbus.publish('bl.y', '{}') > 0 as published from generate_series(1, 4);
\echo :LAST_ERROR_SQLSTATE
select eventbus.publish('bl.x', jsonb_build_object('n', n)) > 0 as published from generate_series(1, 3) n;
select eventbus.publish('bl.x', '{"n": 4}');
\echo :LAST_ERROR_SQLSTATE
select eventbus.publish('other.x', '{"n": 4}') > 0 as unrelated_topic_ok;
select count(*) from eventbus.poll('bl', 2);      -- two leased: the backlog is 1
-- a rolled-back publish does not count, also when the count is reused
-- (eventbus.backlog_check_interval): the rollback makes the next publish recount
reset eventbus.backlog_check_interval;
begin;
select eventbus.publish('bl.x', '{"n": 4}') > 0 as p4, eventbus.publish('bl.x', '{"n": 5}') > 0 as p5;
rollback;
select eventbus.publish('bl.x', '{"n": 4}') > 0 as published;
select eventbus.publish('bl.x', '{"n": 5}') > 0 as published;
select eventbus.publish('bl.x', '{"n": 6}');
\echo :LAST_ERROR_SQLSTATE
-- a rollback to a savepoint does not count either
select pg_temp.drain('bl', 10);     -- backlog 0
begin;
select eventbus.publish('bl.x', '{"n": 11}') > 0 as published;
savepoint s;
select eventbus.publish('bl.x', '{"n": 12}') > 0 as p12, eventbus.publish('bl.x', '{"n": 13}') > 0 as p13;
rollback to savepoint s;
select eventbus.publish('bl.x', '{"n": 12}') > 0 as published;
commit;
select pg_temp.drain('bl', 10);
-- with a check interval, events this session publishes meanwhile are added
select pg_temp.drain('bl', 10);     -- backlog 0
select eventbus.publish_batch(array['bl.x'], array['{"n": 7}', '{"n": 8}', '{"n": 9}', '{"n": 10}']::jsonb[]);
\echo :LAST_ERROR_SQLSTATE
select count(*) from eventbus.publish_batch(array['bl.x'], array['{"n": 7}', '{"n": 8}', '{"n": 9}']::jsonb[]);
select eventbus.publish('bl.x', '{"n": 10}');
\echo :LAST_ERROR_SQLSTATE
-- raising the limit takes effect at once
select eventbus.alter_subscription('bl', max_backlog => 4);
select eventbus.publish('bl.x', '{"n": 10}') > 0 as published;
select eventbus.alter_subscription('bl', reset => array['max_backlog']);
select count(eventbus.publish('bl.x', '{}')) from generate_series(1, 10);
select eventbus.unsubscribe('bl');

-- on_overflow 'drop_oldest': poll dead-letters the oldest beyond the limit
select eventbus.subscribe('drop', array['drop.#'], max_backlog => 3, on_overflow => 'drop_oldest');
select count(eventbus.publish('drop.x', jsonb_build_object('n', n))) from generate_series(1, 5) n;
select payload->>'n' as n, attempt from eventbus.poll('drop', 10);
select payload->>'n' as n, attempts, last_error, reason from eventbus.dead_letters
 where subscription = 'drop' order by event_id;
select eventbus.unsubscribe('drop');
-- overflowed events of an ordered subscription keep their key when redriven
select eventbus.subscribe('dropo', array['dropo.#'], ordered => true, max_backlog => 2,
                          on_overflow => 'drop_oldest');
select count(eventbus.publish('dropo.x', jsonb_build_object('n', n), key => 'k')) from generate_series(1, 4) n;
select payload->>'n' as n from eventbus.poll('dropo', 10);     -- 3; 4 waits; 1, 2 dead
select eventbus.redrive('dropo');
select payload->>'n' as n from eventbus.poll('dropo', 10);     -- nothing: k is leased
select ack_n('dropo', 3);
select payload->>'n' as n from eventbus.poll('dropo', 10);     -- 4, then the redriven 1, 2
select ack_n('dropo', 4);
select payload->>'n' as n from eventbus.poll('dropo', 10);
select ack_n('dropo', 1);
select payload->>'n' as n from eventbus.poll('dropo', 10);
select eventbus.unsubscribe('dropo');

-- alter_subscription. poll reads the log itself here (cut_by_poll): with
-- the worker, events matching none of the old patterns may still be unread
-- at the alter, and then the new patterns take them (docs/consuming.md).
set eventbus.cut_by_poll = on;
select eventbus.subscribe('alt', array['alt.a'], filter => '$.ok == true');
select eventbus.publish('alt.a', '{"ok": false, "n": 1}') > 0 as published;
select eventbus.publish('alt.b', '{"ok": true, "n": 2}') > 0 as published;
select count(*) from eventbus.poll('alt', 10);     -- 1 filtered out, 2 not matched
select eventbus.alter_subscription('alt', patterns => array['alt.*'], reset => array['filter'],
                                   max_attempts => 9, lease => '1 minute', ordered => true);
select patterns, filter, max_attempts, lease, ordered, backoff_initial
  from eventbus.subscriptions where name = 'alt';
select eventbus.publish('alt.b', '{"ok": false, "n": 3}') > 0 as published;
select payload->>'n' as n from eventbus.poll('alt', 10);   -- 3 only: changes apply to events not read yet
select eventbus.alter_subscription('alt', reset => array['max_attempts', 'lease', 'ordered']);
select max_attempts, lease, ordered from eventbus.subscriptions where name = 'alt';
select eventbus.alter_subscription('nope');
\echo :LAST_ERROR_SQLSTATE
select eventbus.alter_subscription('alt', reset => array['name']);
\echo :LAST_ERROR_SQLSTATE
select eventbus.alter_subscription('alt', max_attempts => 0);
\echo :LAST_ERROR_SQLSTATE
select eventbus.alter_subscription('alt', patterns => array['alt.#.#x']);
\echo :LAST_ERROR_SQLSTATE
select eventbus.alter_subscription('alt', on_overflow => 'block');
\echo :LAST_ERROR_SQLSTATE
select eventbus.alter_subscription('alt', max_backlog => 0);
\echo :LAST_ERROR_SQLSTATE
select eventbus.alter_subscription('alt', backoff_initial => '2 hours');
\echo :LAST_ERROR_SQLSTATE
select eventbus.subscribe('alt2', array['alt.#'], ordered => null);
\echo :LAST_ERROR_SQLSTATE
select max_attempts from eventbus.subscriptions where name = 'alt';   -- failed alters changed nothing
select eventbus.unsubscribe('alt');
reset eventbus.cut_by_poll;

-- seek: replay from an event id or a time
select eventbus.subscribe('sk', array['sk.#'], max_attempts => 1);
select count(eventbus.publish('sk.x', jsonb_build_object('n', n))) from generate_series(1, 4) n;
select eventbus.ack('sk', array(select event_id from eventbus.poll('sk', 10) where payload->>'n' <> '3'));
select eventbus.nack('sk', id_of('sk', 3), 'broken');          -- dead
select eventbus.seek('sk', id_of('sk', 2));
select payload->>'n' as n, attempt from eventbus.poll('sk', 10) order by 1;   -- 2, 3 (leaves the DLQ), 4
select count(*) as dead from eventbus.dead_letters where subscription = 'sk';
select eventbus.ack('sk', array[id_of('sk', 2), id_of('sk', 3), id_of('sk', 4)]);
select eventbus.seek('sk', now() - interval '1 hour');
select count(*) from eventbus.poll('sk', 10);                  -- all 4 again
select eventbus.seek('sk', now() + interval '1 hour');         -- skip what is there
select eventbus.publish('sk.x', '{"n": 5}') > 0 as published;
select count(*) from eventbus.poll('sk', 10);                  -- 5 was published before that time
select eventbus.seek('sk', id_of('sk', 5) + 1);                -- skip to after 5
select count(*) from eventbus.poll('sk', 10);
select eventbus.publish('sk.x', '{"n": 6}') > 0 as published;
select payload->>'n' as n from eventbus.poll('sk', 10);
-- a replay never hands out an event that is still leased
select eventbus.seek('sk', id_of('sk', 6));
select count(*) from eventbus.poll('sk', 10);                  -- 6 is leased: not again
select ack_n('sk', 6);
select eventbus.seek('sk', id_of('sk', 6));
select payload->>'n' as n from eventbus.poll('sk', 10);        -- acked: replayed
select eventbus.seek('sk', 0::bigint);
\echo :LAST_ERROR_SQLSTATE
select eventbus.seek('sk', 'infinity'::timestamptz);
\echo :LAST_ERROR_SQLSTATE
select eventbus.seek('nope', 1::bigint);
\echo :LAST_ERROR_SQLSTATE
select eventbus.unsubscribe('sk');

-- expired events (ttl) are counted, not delivered
select eventbus.subscribe('exp', array['exp.#'], lease => '1 millisecond');
select eventbus.publish('exp.x', '{"n": 1}', ttl => '1 millisecond') > 0 as published;
select eventbus.publish('exp.x', '{"n": 2}', ttl => '200 milliseconds') > 0 as published;
select eventbus.publish('exp.x', '{"n": 3}') > 0 as published;
select pg_sleep(0.01);
select payload->>'n' as n from eventbus.poll('exp', 10) order by 1;   -- 1 expired on the way
select pg_sleep(0.25);
select payload->>'n' as n, attempt from eventbus.poll('exp', 10) order by 1;  -- 2 expired while leased
select expired, leased from eventbus.subscriptions where name = 'exp';
select eventbus.unsubscribe('exp');

-- poll's wait
select eventbus.subscribe('wt', array['wt.#']);
select clock_timestamp() as t0 \gset
select count(*) from eventbus.poll('wt', 10, wait => '50 milliseconds');
select clock_timestamp() - :'t0' >= interval '50 milliseconds' as waited;
select eventbus.publish('wt.x', '{}') > 0 as published;
select clock_timestamp() as t0 \gset
select count(*) from eventbus.poll('wt', 10, wait => '1 hour');      -- returns at once
select clock_timestamp() - :'t0' < interval '10 minutes' as did_not_wait;
begin isolation level repeatable read;
select count(*) from eventbus.poll('wt', 10, wait => '1 hour');      -- no waiting here
commit;
select eventbus.pause('wt');
select count(*) from eventbus.poll('wt', 10, wait => '10 milliseconds');
set statement_timeout = '50ms';
select count(*) from eventbus.poll('wt', 10, wait => '1 minute');
\echo :LAST_ERROR_SQLSTATE
reset statement_timeout;
select eventbus.poll('wt', 10, wait => '-1 second');
\echo :LAST_ERROR_SQLSTATE
select eventbus.poll('wt', 10, wait => '2 hours');
\echo :LAST_ERROR_SQLSTATE
select eventbus.poll('wt', 10, wait => null);
\echo :LAST_ERROR_SQLSTATE
select eventbus.unsubscribe('wt');
