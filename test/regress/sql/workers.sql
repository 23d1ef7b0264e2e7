-- Workers and maintenance from SQL: handler subscriptions (options and
-- errors; the worker running them is tested in test/t/007_handlers.pl),
-- run_maintenance, the chunks view and schedule without pg_cron.
\set VERBOSITY default
\set SHOW_CONTEXT never

create schema app;
create function app.on_event(e eventbus.event) returns void language sql as $$ select $$;
create function app.two_args(e eventbus.event, x int) returns void language sql as $$ select $$;
create function app.wrong_type(e jsonb) returns void language sql as $$ select $$;
create function app.many(e eventbus.event) returns setof int language sql as $$ select 1 $$;
create procedure app.proc(e eventbus.event) language sql as $$ select $$;

-- a handler takes one eventbus.event
select eventbus.subscribe('h_ok', array['nothing.matches.this'], handler => 'app.on_event(eventbus.event)');
select name, handler, channel from eventbus.subscriptions where name = 'h_ok';
select eventbus.subscribe('h_bad', array['x'], handler => 'app.two_args(eventbus.event, int)');
\echo :LAST_ERROR_SQLSTATE
select eventbus.subscribe('h_bad', array['x'], handler => 'app.wrong_type(jsonb)');
select eventbus.subscribe('h_bad', array['x'], handler => 'app.many(eventbus.event)');
select eventbus.subscribe('h_bad', array['x'], handler => 'app.proc(eventbus.event)');
select eventbus.subscribe('h_bad', array['x'], handler => 'app.nonexistent(eventbus.event)');
\echo :LAST_ERROR_SQLSTATE
select count(*) from eventbus.subscriptions where name = 'h_bad';

-- the subscribing role needs EXECUTE on the handler
create role eb_handler_user;
grant usage on schema app to eb_handler_user;
grant execute on function eventbus.subscribe(text, text[], integer, interval, interval, interval,
    boolean, text, jsonpath, bigint, text, regprocedure, integer), eventbus.unsubscribe(text) to eb_handler_user;
revoke execute on function app.on_event(eventbus.event) from public;
set session authorization eb_handler_user;
select eventbus.subscribe('h_priv', array['x'], handler => 'app.on_event(eventbus.event)');
\echo :LAST_ERROR_SQLSTATE
reset session authorization;
-- EXECUTE is not enough: the worker would run the superuser's function
grant execute on function app.on_event(eventbus.event) to eb_handler_user;
set role eb_handler_user;
select eventbus.subscribe('h_priv', array['x'], handler => 'app.on_event(eventbus.event)');
\echo :LAST_ERROR_SQLSTATE
reset role;
-- its own function is fine
grant create on schema app to eb_handler_user;
set role eb_handler_user;
create function app.mine(e eventbus.event) returns void language sql as $$ select $$;
select eventbus.subscribe('h_priv', array['x'], handler => 'app.mine(eventbus.event)');
select eventbus.unsubscribe('h_priv');
reset role;

-- alter_subscription sets, changes and resets the handler
select eventbus.alter_subscription('h_ok', handler => 'app.wrong_type(jsonb)');
\echo :LAST_ERROR_SQLSTATE
select eventbus.alter_subscription('h_ok', reset => array['handler']);
select handler from eventbus.subscriptions where name = 'h_ok';
select eventbus.alter_subscription('h_ok', handler => 'app.on_event(eventbus.event)');
select handler from eventbus.subscriptions where name = 'h_ok';
select eventbus.unsubscribe('h_ok');

-- run_maintenance: a young chunk is neither rotated nor reclaimed; every
-- subscription that is not paused is notified once (test/t/005_listen.pl
-- checks what LISTENers receive)
select eventbus.subscribe('m1', array['m.#']);
select eventbus.subscribe('m2', array['m.#']);
select eventbus.pause('m2');
select reclaimed, rotated, notified >= 1 as notified from eventbus.run_maintenance();
select chunk_no, relname, is_current, pinned_by from eventbus.chunks order by chunk_no;
select eventbus.publish('m.x', '{}') > 0 as published;
select chunk_no, pinned_by from eventbus.chunks where is_current;

-- maintenance needs READ COMMITTED (each check sees what committed before its lock)
begin isolation level repeatable read;
select * from eventbus.run_maintenance();
\echo :LAST_ERROR_SQLSTATE
rollback;

-- schedule needs pg_cron in this database
select eventbus.schedule('nightly', '0 3 * * *', 'reports.nightly', '{}');
\echo :LAST_ERROR_SQLSTATE
select eventbus.unschedule('nightly');
\echo :LAST_ERROR_SQLSTATE

-- maintenance settings are visible and not settable per session
show eventbus.retention;
show eventbus.chunk_interval;
show eventbus.chunk_size;
show eventbus.tick_interval;
set eventbus.retention = '1h';
\echo :LAST_ERROR_SQLSTATE

select eventbus.unsubscribe('m1');
select eventbus.unsubscribe('m2');
revoke execute on function eventbus.subscribe(text, text[], integer, interval, interval, interval,
    boolean, text, jsonpath, bigint, text, regprocedure, integer), eventbus.unsubscribe(text) from eb_handler_user;
drop schema app cascade;
drop role eb_handler_user;
