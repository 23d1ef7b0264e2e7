-- Every row of docs/errors.md, in its order: the SQLSTATE is pinned with
-- \echo :LAST_ERROR_SQLSTATE after each error.
\set VERBOSITY default
\set SHOW_CONTEXT never

-- 22023 invalid topic
select eventbus.publish('orders..created', '{}');
\echo :LAST_ERROR_SQLSTATE
-- 22023 invalid pattern
select eventbus.topic_matches('orders.eu', 'orders.eu*');
\echo :LAST_ERROR_SQLSTATE
-- 22023 headers not a JSON object of strings
select eventbus.publish('a.b', '{}', headers => '{"retries": 3}');
\echo :LAST_ERROR_SQLSTATE
-- 22023 ttl not positive
select eventbus.publish('a.b', '{}', ttl => interval '-5 minutes');
\echo :LAST_ERROR_SQLSTATE
-- 22023 deliver_at not finite
select eventbus.publish('a.b', '{}', deliver_at => '-infinity');
\echo :LAST_ERROR_SQLSTATE
-- 22023 event would expire before delivery
select eventbus.publish('a.b', '{}', deliver_at => now() + interval '1 day', ttl => interval '1 hour');
\echo :LAST_ERROR_SQLSTATE
-- 22004 NULL topic or payload
select eventbus.publish('a.b', null);
\echo :LAST_ERROR_SQLSTATE
-- 2202E publish_batch arrays of different lengths or dimensions
select eventbus.publish_batch(array['a.b', 'a.c'], array['{}', '{}', '{}']::jsonb[]);
\echo :LAST_ERROR_SQLSTATE
-- 54000 event too large
set eventbus.max_payload_size = '1kB';
select eventbus.publish('a.b', jsonb_build_object('s', repeat('x', 5000)));
\echo :LAST_ERROR_SQLSTATE
reset eventbus.max_payload_size;
-- 54000 key too long
select eventbus.publish('a.b', '{}', key => repeat('k', 2000));
\echo :LAST_ERROR_SQLSTATE
-- 42501 no EXECUTE on publish
create role eb_errors_nobody;
set role eb_errors_nobody;
select eventbus.publish('a.b', '{}');
\echo :LAST_ERROR_SQLSTATE
-- 42501 setting eventbus.max_payload_size without superuser
set eventbus.max_payload_size = '2MB';
\echo :LAST_ERROR_SQLSTATE
reset role;
drop role eb_errors_nobody;
-- 22023 subscribe: invalid name
select eventbus.subscribe('Billing', array['orders.#']);
\echo :LAST_ERROR_SQLSTATE
-- 22023 poll: max_events out of range
select eventbus.subscribe('errors_sub', array['orders.#']);
select * from eventbus.poll('errors_sub', 0);
\echo :LAST_ERROR_SQLSTATE
-- 22004 subscribe: NULL pattern
select eventbus.subscribe('errors_null', array['orders.#', null]);
\echo :LAST_ERROR_SQLSTATE
-- 42704 unknown subscription
select * from eventbus.poll('no_such_subscription');
\echo :LAST_ERROR_SQLSTATE
-- 42710 duplicate subscription
select eventbus.subscribe('errors_sub', array['#']);
\echo :LAST_ERROR_SQLSTATE
-- 55000 nack of an event that is not leased
select eventbus.nack('errors_sub', 123456, 'boom');
\echo :LAST_ERROR_SQLSTATE
select eventbus.unsubscribe('errors_sub');
-- 55000 extension objects damaged: a missing table, no current chunk.
-- (This session has not published yet, so nothing is cached.)
begin;
update eventbus.chunk set is_current = false;
select eventbus.publish('damaged.chunk', '{}');
\echo :LAST_ERROR_SQLSTATE
rollback;
begin;
update eventbus.chunk set relname = 'topic' where is_current;
select eventbus.publish('damaged.chunk', '{}');
\echo :LAST_ERROR_SQLSTATE
rollback;
begin;
alter table eventbus.topic rename to topic_renamed;
select eventbus.publish('damaged.topic', '{}');
\echo :LAST_ERROR_SQLSTATE
rollback;
-- and after the rollbacks everything works again
select eventbus.publish('damaged.chunk', '{}') > 0 as works_again;
-- 55000 a chunk whose columns were changed by hand is refused, not written
begin;
alter table eventbus.event_log_0 add column extra integer;
select eventbus.publish('damaged.columns', '{}');
\echo :LAST_ERROR_SQLSTATE
rollback;
select eventbus.publish('damaged.columns', '{}') > 0 as works_again;
-- 55000 the subscription table edited by hand: publish (which reads it for
-- backlog limits) refuses, and works again after the rollback
begin;
alter table eventbus.subscription rename column max_backlog to renamed;
select eventbus.publish('damaged.subscription', '{}');
\echo :LAST_ERROR_SQLSTATE
rollback;
select eventbus.publish('damaged.subscription', '{}') > 0 as works_again;
-- 53400 publish: a subscription with on_overflow 'reject' is at its max_backlog
select eventbus.subscribe('errors_full', array['full.#'], max_backlog => 1);
select eventbus.publish('full.a', '{}') > 0 as published;
select eventbus.publish('full.a', '{}');
\echo :LAST_ERROR_SQLSTATE
select eventbus.unsubscribe('errors_full');
-- 57014 a waiting poll cancelled by statement_timeout
select eventbus.subscribe('errors_wait', array['wait.#']);
set statement_timeout = '20ms';
select * from eventbus.poll('errors_wait', 10, wait => '1 minute');
\echo :LAST_ERROR_SQLSTATE
reset statement_timeout;
select eventbus.unsubscribe('errors_wait');
-- 22023 publish_cloudevent: an invalid CloudEvent attribute
select eventbus.publish_cloudevent('{"specversion": "0.3", "id": "1", "source": "s", "type": "a.b"}');
\echo :LAST_ERROR_SQLSTATE
select eventbus.to_cloudevent(1, '');
\echo :LAST_ERROR_SQLSTATE
-- 22004 publish_cloudevent, to_cloudevent: NULL event or event_id
select eventbus.publish_cloudevent(null);
\echo :LAST_ERROR_SQLSTATE
-- 42704 to_cloudevent, set_context: no stored event of that id
select eventbus.to_cloudevent(-1);
\echo :LAST_ERROR_SQLSTATE
-- 55000 to_cloudevent, set_context: the event has expired
select eventbus.publish('errors.short', '{}', ttl => '1 millisecond') as short_id \gset
select pg_sleep(0.01);
\set VERBOSITY sqlstate
select eventbus.set_context(:short_id) is null;
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
-- 42501 to_cloudevent, set_context: the role may not read the event
create role eb_err_reader;
grant execute on function eventbus.set_context(bigint) to eb_err_reader;
set role eb_err_reader;
select eventbus.set_context(-1);
\echo :LAST_ERROR_SQLSTATE
reset role;
drop owned by eb_err_reader;
drop role eb_err_reader;
-- 55000 instance_id, to_cloudevent: the row of eventbus.instance was deleted
-- (this session has not read it yet: it is read once per backend)
begin;
delete from eventbus.instance;
select eventbus.instance_id();
\echo :LAST_ERROR_SQLSTATE
rollback;
select eventbus.instance_id() is not null as instance_again;
