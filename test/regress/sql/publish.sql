-- publish and publish_batch: transactional outcome, arguments, limits.
-- The extension is created by pg_regress (--load-extension=eventbus).
\set VERBOSITY default
\set SHOW_CONTEXT never

-- Committed publishes are stored with their topic, payload and options.
select eventbus.publish('orders.eu.created', '{"order_id": 1}') > 0 as got_id;
select eventbus.publish('orders.eu.created', '{"order_id": 2}', key => 'o-2',
                        headers => '{"traceparent": "00-abc-def-01"}') > 0 as got_id;
select topic, key, payload, headers, deliver_at, expires_at
  from eventbus.events order by id;

-- Ids grow within a transaction and the batch keeps its order.
select array_agg(id order by ord) = array(select unnest(array_agg(id order by ord)) order by 1)
       as ids_in_order
  from eventbus.publish_batch(array['orders.eu.created'],
                              array['{"n":1}','{"n":2}','{"n":3}']::jsonb[])
       with ordinality as b(id, ord);

-- Rolled back: the event is never stored.
begin;
select eventbus.publish('orders.rolled.back', '{"gone": true}') > 0 as got_id;
rollback;
select count(*) as rolled_back_events from eventbus.events where topic = 'orders.rolled.back';

-- Rolled back to a savepoint: only the events before it and after it stay.
begin;
select eventbus.publish('sp.kept', '{"step": 1}') > 0 as got_id;
savepoint s1;
select eventbus.publish('sp.lost', '{"step": 2}') > 0 as got_id;
rollback to savepoint s1;
-- The topic created in the rolled-back savepoint must be created again.
select eventbus.publish('sp.lost', '{"step": 3}') > 0 as got_id;
select eventbus.publish('sp.kept', '{"step": 4}') > 0 as got_id;
commit;
select topic, payload from eventbus.events where topic like 'sp.%' order by id;

-- Every event refers to a topic row that exists (no dangling dictionary ids).
select count(*) as dangling from eventbus.event_log e
 where not exists (select 1 from eventbus.topic t where t.id = e.topic_id);

-- The stored xid is the top-level transaction's, also inside a savepoint,
-- and published_at is the transaction's now().
begin;
savepoint s2;
select eventbus.publish('xid.check', '{}') > 0 as got_id;
release savepoint s2;
select e.txid = pg_current_xact_id() as top_level_xid,
       e.published_at = now() as published_at_is_now
  from eventbus.events e where topic = 'xid.check';
commit;

-- deliver_at and ttl: expires_at is published_at + ttl.
select eventbus.publish('delay.ttl', '{}', deliver_at => now() + interval '1 minute',
                        ttl => interval '1 hour') > 0 as got_id;
select deliver_at - published_at as delay, expires_at - published_at as ttl
  from eventbus.events where topic = 'delay.ttl';

-- Any JSON value is a payload, including JSON null and scalars.
select eventbus.publish('json.kinds', 'null') > 0 as null_ok,
       eventbus.publish('json.kinds', '42') > 0 as number_ok,
       eventbus.publish('json.kinds', '[1,2]') > 0 as array_ok;

-- A large payload is stored (toasted) and read back intact.
select eventbus.publish('big.payload', jsonb_build_object('blob', repeat('x', 200000))) > 0 as got_id;
select length(payload->>'blob') from eventbus.events where topic = 'big.payload';

-- publish_batch: one topic per payload, keys per payload, one headers for all.
select count(*) from eventbus.publish_batch(
    array['batch.a', 'batch.b', 'batch.a'],
    array['{"i":1}', '{"i":2}', '{"i":3}']::jsonb[],
    keys => array['k1', null, 'k3'],
    headers => array['{"source": "test"}']::jsonb[]);
select topic, key, payload, headers from eventbus.events
 where topic like 'batch.%' order by id;

-- An empty batch publishes nothing and returns no rows.
select count(*) from eventbus.publish_batch(array['batch.a'], array[]::jsonb[]);

-- A batch is all or nothing: one bad element stores none of them.
select count(*) as before from eventbus.events where topic = 'batch.atomic';
select eventbus.publish_batch(array['batch.atomic', 'batch.atomic', 'bad..topic'],
                              array['{}', '{}', '{}']::jsonb[]);
select count(*) as after from eventbus.events where topic = 'batch.atomic';

-- Batch argument errors.
select eventbus.publish_batch(array['a', 'b'], array['{}', '{}', '{}']::jsonb[]);
\echo :LAST_ERROR_SQLSTATE
select eventbus.publish_batch(array['a'], array['{}', '{}']::jsonb[], keys => array['k']);
select eventbus.publish_batch(array[]::text[], array['{}']::jsonb[]);
select eventbus.publish_batch(array['a'], array['{}', null]::jsonb[]);
\echo :LAST_ERROR_SQLSTATE
select eventbus.publish_batch(array['a', null], array['{}', '{}']::jsonb[]);
select eventbus.publish_batch(array['a'], array[['{}'], ['{}']]::jsonb[]);
select eventbus.publish_batch(null, array['{}']::jsonb[]);
select eventbus.publish_batch(array['a'], null);
select eventbus.publish_batch(array['a'], array['{}', '{}']::jsonb[],
                              headers => array['{"a": "b"}', '{"c": 1}']::jsonb[]);

-- NULL topic and payload are errors, never a silent NULL id.
select eventbus.publish(null, '{}');
\echo :LAST_ERROR_SQLSTATE
select eventbus.publish('a.b', null);
\echo :LAST_ERROR_SQLSTATE

-- Headers must be a JSON object of strings.
select eventbus.publish('a.b', '{}', headers => '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
select eventbus.publish('a.b', '{}', headers => '{"nested": {"x": "y"}}');
select eventbus.publish('a.b', '{}', headers => '["x"]');
select eventbus.publish('a.b', '{}', headers => '"x"');
select eventbus.publish('a.b', '{}', headers => '{}') > 0 as empty_headers_ok;

-- Payload size limit (payload + headers + key), SQLSTATE 54000.
set eventbus.max_payload_size = '1kB';
show eventbus.max_payload_size;
select eventbus.publish('size.limit', jsonb_build_object('s', repeat('x', 2000)));
\echo :LAST_ERROR_SQLSTATE
select eventbus.publish('size.limit', '{}', headers => jsonb_build_object('h', repeat('x', 1100)));
select eventbus.publish('size.limit', jsonb_build_object('s', repeat('x', 900))) > 0 as under_limit_ok;
select eventbus.publish_batch(array['size.limit'],
                              array['{}', jsonb_build_object('s', repeat('x', 2000))]);
reset eventbus.max_payload_size;
set eventbus.max_payload_size = 100;
reset eventbus.max_payload_size;
-- Only superusers may change the limit.
create role eb_regress_plain;
set role eb_regress_plain;
set eventbus.max_payload_size = '10MB';
\echo :LAST_ERROR_SQLSTATE
reset role;
drop role eb_regress_plain;

-- Key length limit.
select eventbus.publish('a.b', '{}', key => repeat('k', 1025));
\echo :LAST_ERROR_SQLSTATE
select eventbus.publish('a.b', '{}', key => repeat('k', 1024)) > 0 as key_at_limit_ok;

-- ttl and deliver_at checks.
select eventbus.publish('a.b', '{}', ttl => interval '-1 second');
\echo :LAST_ERROR_SQLSTATE
select eventbus.publish('a.b', '{}', ttl => interval '0');
-- A mixed-sign interval that is positive as a whole is a valid ttl.
select eventbus.publish('a.b', '{}', ttl => interval '1 day -1 hour') > 0 as mixed_ttl_ok;
select eventbus.publish('a.b', '{}', ttl => interval '1 hour -1 day');
-- An absurd ttl.
select eventbus.publish('a.b', '{}', ttl => interval '300000 years');
\echo :LAST_ERROR_SQLSTATE
select eventbus.publish('a.b', '{}', deliver_at => 'infinity');
select eventbus.publish('a.b', '{}', deliver_at => now() + interval '2 hours', ttl => interval '1 hour');

-- Invalid topics are refused by publish with 22023.
select eventbus.publish('orders.*.created', '{}');
\echo :LAST_ERROR_SQLSTATE
select eventbus.publish('', '{}');

-- A prepared transaction that is rolled back takes its new topic with it;
-- the next publish of that topic must not reuse a vanished dictionary id.
begin;
select eventbus.publish('prep.topic', '{"prepared": true}') > 0 as got_id;
prepare transaction 'eb_regress_prep';
rollback prepared 'eb_regress_prep';
select eventbus.publish('prep.topic', '{"after": true}') > 0 as got_id;
select topic, payload from eventbus.events where topic = 'prep.topic';
select count(*) as dangling from eventbus.event_log e
 where not exists (select 1 from eventbus.topic t where t.id = e.topic_id);

-- Nothing above left a partial event behind.
select count(*) as stored_events from eventbus.event_log;
select count(*) as distinct_topics from (select distinct topic from eventbus.topic) t;

-- eventbus.max_topics: a new topic past the limit fails with 54000; topics
-- already in the dictionary still publish.
do $$
begin
    perform set_config('eventbus.max_topics',
                       greatest(100, (select last_value from eventbus.topic_id_seq) + 5)::text, false);
    for i in 1..200 loop
        perform eventbus.publish('maxtopics.t' || i, '{}');
    end loop;
    raise exception 'no limit';
exception when program_limit_exceeded then
    raise notice 'max_topics: %', sqlerrm like 'too many distinct topics: eventbus.max_topics (%) reached';
end
$$;
do $$
begin
    perform set_config('eventbus.max_topics', (select last_value from eventbus.topic_id_seq)::text, false);
end
$$;
select eventbus.publish('orders.eu.created', '{"known": true}') > 0 as known_topic_published;
reset eventbus.max_topics;
