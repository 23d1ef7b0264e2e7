--
-- consume_routing: which events a subscription gets: fan-out and topic
-- matching, start_at, filter.
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

--
-- 1. Fan-out and topic matching.
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
-- 2. start_at.
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
-- 3. filter: a jsonpath predicate on the payload.
--
select eventbus.subscribe('fl', array['filter.#'], filter => '$.amount > 100');
select count(*) from eventbus.publish_batch(array['filter.x'],
    array['{"amount": 50}', '{"amount": 150}', '{"other": 1}', '{"amount": "lots"}',
          '{"amount": 101}']::jsonb[]);
select payload from eventbus.poll('fl');
select filter from eventbus.subscriptions where name = 'fl';
select eventbus.unsubscribe('fl');
