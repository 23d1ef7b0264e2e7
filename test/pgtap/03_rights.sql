-- pgTAP: the privilege matrix (docs/security.md). Every public function and
-- view of schema eventbus, called or read by six roles:
--
--   owner      owns the subscription m_sub (and the schema of m.#)
--   consumer   granted consume on m_sub
--   manager    granted manage on m_sub
--   ungranted  no right on m_sub
--   nobody     no grant at all (what PUBLIC gets)
--   monitor    a member of pg_monitor, no other grant
--
-- The first four have EXECUTE on every public function and SELECT on every
-- view: what tells them apart is the right on the subscription. Each cell
-- is asserted: allowed (any outcome but 42501; the call's effects are
-- rolled back) or denied (42501). The rules below say what each function
-- and view needs; a function or view without a rule fails the test, so a
-- new one cannot be added without deciding who may call it.
-- Run as a superuser. The set-up commits (a poll never hands out events of
-- its own transaction), the checks roll back, the clean-up drops it all.
\set QUIET 1
-- What an interrupted run may have left.
DO $$
DECLARE
    r text;
BEGIN
    IF EXISTS (SELECT 1 FROM eventbus.subscription WHERE name = 'm_sub') THEN
        PERFORM eventbus.unsubscribe('m_sub');
    END IF;
    DELETE FROM eventbus.schema WHERE pattern = 'm.#';
    FOR r IN SELECT rolname FROM pg_roles WHERE rolname LIKE 'eb\_m\_%' LOOP
        EXECUTE format('DROP OWNED BY %I', r);
        EXECUTE format('DROP ROLE %I', r);
    END LOOP;
END
$$;
CREATE ROLE eb_m_owner;
CREATE ROLE eb_m_consumer;
CREATE ROLE eb_m_manager;
CREATE ROLE eb_m_ungranted;
CREATE ROLE eb_m_nobody;
CREATE ROLE eb_m_monitor IN ROLE pg_monitor;

-- The four roles with EXECUTE and SELECT on everything public.
DO $$
DECLARE
    o text;
BEGIN
    FOR o IN SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'eventbus'::regnamespace AND p.proname !~ '^_' LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO eb_m_owner, eb_m_consumer, eb_m_manager, eb_m_ungranted', o);
    END LOOP;
    FOR o IN SELECT c.oid::regclass::text FROM pg_catalog.pg_class c
              WHERE c.relnamespace = 'eventbus'::regnamespace AND c.relkind = 'v' LOOP
        EXECUTE format('GRANT SELECT ON %s TO eb_m_owner, eb_m_consumer, eb_m_manager, eb_m_ungranted', o);
    END LOOP;
END
$$;

-- The subscription, its rights, an event leased and a dead letter.
DO $$
BEGIN
    PERFORM set_config('role', 'eb_m_owner', true);
    PERFORM eventbus.subscribe('m_sub', array['m.#'], max_attempts => 1);
    PERFORM eventbus.grant_subscription('m_sub', 'eb_m_consumer', 'consume');
    PERFORM eventbus.grant_subscription('m_sub', 'eb_m_manager', 'manage');
    PERFORM eventbus.register_schema('m.#', '{"type": "object"}');
END
$$;
DO $$
BEGIN
    PERFORM eventbus.publish('m.dead', '{}');
    PERFORM eventbus.publish('m.leased', '{}');
END
$$;
DO $$
BEGIN
    PERFORM set_config('role', 'eb_m_owner', true);
    PERFORM eventbus.nack('m_sub', (SELECT event_id FROM eventbus.poll('m_sub', 1)));
    PERFORM count(*) FROM eventbus.poll('m_sub', 1);
END
$$;

BEGIN;
SELECT * FROM no_plan();

-- What each function and view needs.
--   public    anyone
--   execute   EXECUTE on it (granted to the first four roles)
--   monitor   EXECUTE on it, or pg_monitor
--   pg_monitor  pg_monitor only: SELECT on the view is not enough (the
--             functions it calls are pg_monitor's)
--   consume   EXECUTE, and consume on the subscription (or owning it)
--   manage    EXECUTE, and manage on the subscription (or owning it)
--   own       EXECUTE, and owning the subscription (or schema)
--   rows      SELECT on the view; rows only for a role with a right on m_sub
CREATE TEMP TABLE rule (object text PRIMARY KEY, needs text NOT NULL, call text NOT NULL);
INSERT INTO rule VALUES
  ('eventbus.publish(text,jsonb,text,jsonb,timestamp with time zone,interval)', 'execute',
   $$SELECT eventbus.publish('m.x', '{}')$$),
  ('eventbus.publish_batch(text[],jsonb[],text[],jsonb[],timestamp with time zone,interval)', 'execute',
   $$SELECT eventbus.publish_batch(array['m.x'], array['{}'::jsonb])$$),
  ('eventbus.publish_cloudevent(jsonb)', 'execute',
   $$SELECT eventbus.publish_cloudevent('{"specversion": "1.0", "id": "1", "source": "s", "type": "m.x"}')$$),
  ('eventbus.set_context(bigint)', 'execute', $$SELECT eventbus.set_context(1)$$),
  ('eventbus.to_cloudevent(bigint,text)', 'execute', $$SELECT eventbus.to_cloudevent(1)$$),
  ('eventbus.instance_id()', 'public', $$SELECT eventbus.instance_id()$$),
  ('eventbus.topic_matches(text,text)', 'public', $$SELECT eventbus.topic_matches('a.b', 'a.*')$$),
  ('eventbus.is_valid_topic(text)', 'public', $$SELECT eventbus.is_valid_topic('a.b')$$),
  ('eventbus.is_valid_pattern(text)', 'public', $$SELECT eventbus.is_valid_pattern('a.#')$$),
  ('eventbus.validate(jsonb,jsonb)', 'public', $$SELECT eventbus.validate('{}', '1')$$),
  ('eventbus.validation_errors(jsonb,jsonb)', 'public', $$SELECT eventbus.validation_errors('{}', '1')$$),
  ('eventbus.subscribe(text,text[],integer,interval,interval,interval,boolean,text,jsonpath,bigint,text,regprocedure,integer)', 'execute',
   $$SELECT eventbus.subscribe('m_new', array['m.#'])$$),
  ('eventbus.poll(text,integer,interval,interval,bigint)', 'consume', $$SELECT eventbus.poll('m_sub', 10)$$),
  ('eventbus.ack(text,bigint[],bigint)', 'consume', $$SELECT eventbus.ack('m_sub', array[1::bigint])$$),
  ('eventbus.nack(text,bigint,text,interval,bigint,boolean)', 'consume', $$SELECT eventbus.nack('m_sub', 1)$$),
  ('eventbus.extend_lease(text,bigint[],interval,bigint)', 'consume',
   $$SELECT eventbus.extend_lease('m_sub', array[1::bigint], '1 minute')$$),
  ('eventbus.alter_subscription(text,text[],integer,interval,interval,interval,boolean,jsonpath,bigint,text,text[],regprocedure,integer)', 'manage',
   $$SELECT eventbus.alter_subscription('m_sub', max_attempts => 7)$$),
  ('eventbus.pause(text)', 'manage', $$SELECT eventbus.pause('m_sub')$$),
  ('eventbus.resume(text)', 'manage', $$SELECT eventbus.resume('m_sub')$$),
  ('eventbus.seek(text,timestamp with time zone)', 'manage', $$SELECT eventbus.seek('m_sub', now())$$),
  ('eventbus.seek(text,bigint)', 'manage', $$SELECT eventbus.seek('m_sub', 1::bigint)$$),
  ('eventbus.redrive(text,bigint[])', 'manage', $$SELECT eventbus.redrive('m_sub')$$),
  ('eventbus.purge_dead_letters(text,interval)', 'manage', $$SELECT eventbus.purge_dead_letters('m_sub')$$),
  ('eventbus.unsubscribe(text)', 'manage', $$SELECT eventbus.unsubscribe('m_sub')$$),
  ('eventbus.grant_subscription(text,regrole,text)', 'own',
   $$SELECT eventbus.grant_subscription('m_sub', 'eb_m_ungranted')$$),
  ('eventbus.revoke_subscription(text,regrole,text)', 'own',
   $$SELECT eventbus.revoke_subscription('m_sub', 'eb_m_consumer')$$),
  ('eventbus.alter_subscription_owner(text,regrole)', 'own',
   $$SELECT eventbus.alter_subscription_owner('m_sub', 'eb_m_owner')$$),
  ('eventbus.create_relay(text,text[],text,name,text,jsonb,jsonpath,text,integer,interval,interval)', 'execute',
   $$SELECT eventbus.create_relay('m_relay', array['m.#'], server => 'm_no_server')$$),
  ('eventbus.alter_relay(text,name,text,jsonb)', 'own', $$SELECT eventbus.alter_relay('m_sub', topic => 'x')$$),
  ('eventbus.drop_relay(text)', 'manage', $$SELECT eventbus.drop_relay('m_sub')$$),
  ('eventbus.relays', 'execute', $$SELECT * FROM eventbus.relays$$),
  ('eventbus.register_schema(text,jsonb,text,text)', 'own',
   $$SELECT eventbus.register_schema('m.#', '{"type": "object"}')$$),
  ('eventbus.drop_schema(text)', 'own', $$SELECT eventbus.drop_schema('m.#')$$),
  ('eventbus.grant_publish(regrole,text)', 'execute', $$SELECT eventbus.grant_publish('eb_m_owner', 'm.#')$$),
  ('eventbus.revoke_publish(regrole,text)', 'execute', $$SELECT eventbus.revoke_publish('eb_m_owner', 'm.#')$$),
  ('eventbus.grant_subscribe(regrole,text)', 'execute', $$SELECT eventbus.grant_subscribe('eb_m_owner', 'm.#')$$),
  ('eventbus.revoke_subscribe(regrole,text)', 'execute', $$SELECT eventbus.revoke_subscribe('eb_m_owner', 'm.#')$$),
  ('eventbus.topic_acls', 'execute', $$SELECT * FROM eventbus.topic_acls$$),
  ('eventbus.run_maintenance()', 'execute', $$SELECT eventbus.run_maintenance()$$),
  ('eventbus.schedule(text,text,text,jsonb)', 'execute', $$SELECT eventbus.schedule('m_job', '* * * * *', 'm.x')$$),
  ('eventbus.unschedule(text)', 'execute', $$SELECT eventbus.unschedule('m_job')$$),
  ('eventbus.prometheus()', 'monitor', $$SELECT eventbus.prometheus()$$),
  ('eventbus.health()', 'monitor', $$SELECT * FROM eventbus.health()$$),
  ('eventbus.reset_stats()', 'execute', $$SELECT eventbus.reset_stats()$$),
  ('eventbus.events', 'execute', $$SELECT * FROM eventbus.events$$),
  ('eventbus.chunks', 'pg_monitor', $$SELECT * FROM eventbus.chunks$$),
  ('eventbus.schemas', 'execute', $$SELECT * FROM eventbus.schemas$$),
  ('eventbus.subscriptions', 'rows', $$SELECT * FROM eventbus.subscriptions WHERE name = 'm_sub'$$),
  ('eventbus.dead_letters', 'rows', $$SELECT * FROM eventbus.dead_letters WHERE subscription = 'm_sub'$$),
  ('eventbus.deliveries', 'rows', $$SELECT * FROM eventbus.deliveries WHERE subscription = 'm_sub'$$),
  ('eventbus.topic_stats', 'pg_monitor', $$SELECT * FROM eventbus.topic_stats$$),
  ('eventbus.subscription_stats', 'pg_monitor', $$SELECT * FROM eventbus.subscription_stats$$),
  ('eventbus.latency_stats', 'pg_monitor', $$SELECT * FROM eventbus.latency_stats$$),
  ('eventbus.worker_stats', 'pg_monitor', $$SELECT * FROM eventbus.worker_stats$$);

-- Every public function and view has a rule (generated from the catalog).
CREATE TEMP VIEW object AS
SELECT pg_catalog.regexp_replace(p.oid::regprocedure::text, ', ', ',', 'g') AS object
  FROM pg_catalog.pg_proc p
 WHERE p.pronamespace = 'eventbus'::regnamespace AND p.proname !~ '^_'
UNION ALL
SELECT c.oid::regclass::text
  FROM pg_catalog.pg_class c
 WHERE c.relnamespace = 'eventbus'::regnamespace AND c.relkind = 'v';
SELECT is_empty($$SELECT object FROM object EXCEPT SELECT object FROM rule$$,
                'every public function and view of eventbus has a rule in the matrix');
SELECT is_empty($$SELECT object FROM rule EXCEPT SELECT object FROM object$$,
                'every rule names a function or view that exists');

-- What a call does as a role: '42501', 'rows' / 'no rows' for a
-- filtered view, else 'allowed' (the call's effects are undone).
CREATE FUNCTION pg_temp.outcome(role text, call text, needs text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    BEGIN
        PERFORM pg_catalog.set_config('role', role, true);
        IF needs = 'rows' THEN
            EXECUTE format('SELECT count(*) FROM (%s) q', call) INTO n;
            RAISE EXCEPTION USING ERRCODE = 'EBT01', MESSAGE = CASE WHEN n > 0 THEN 'rows' ELSE 'no rows' END;
        END IF;
        EXECUTE call;
        RAISE EXCEPTION USING ERRCODE = 'EBT01', MESSAGE = 'allowed';
    EXCEPTION
        WHEN SQLSTATE 'EBT01' THEN RETURN SQLERRM;
        WHEN insufficient_privilege THEN RETURN '42501';
        WHEN OTHERS THEN RETURN 'allowed';      -- past the checks, failed for another reason
    END;
END
$$;

-- What each role may do, by rule.
CREATE TEMP TABLE may (role text, needs text, expect text);
INSERT INTO may
SELECT r.role, n.needs,
       CASE
         WHEN n.needs = 'public' THEN 'allowed'
         WHEN n.needs = 'pg_monitor' THEN CASE WHEN r.role = 'eb_m_monitor' THEN 'allowed' ELSE '42501' END
         WHEN r.role IN ('eb_m_nobody') THEN '42501'
         WHEN r.role = 'eb_m_monitor' THEN CASE WHEN n.needs = 'monitor' THEN 'allowed' ELSE '42501' END
         WHEN n.needs IN ('execute', 'monitor') THEN 'allowed'
         WHEN n.needs = 'rows' THEN CASE WHEN r.role = 'eb_m_ungranted' THEN 'no rows' ELSE 'rows' END
         WHEN r.role = 'eb_m_owner' THEN 'allowed'
         WHEN n.needs = 'consume' AND r.role = 'eb_m_consumer' THEN 'allowed'
         WHEN n.needs = 'manage' AND r.role = 'eb_m_manager' THEN 'allowed'
         ELSE '42501'
       END
  FROM (VALUES ('eb_m_owner'), ('eb_m_consumer'), ('eb_m_manager'), ('eb_m_ungranted'),
               ('eb_m_nobody'), ('eb_m_monitor')) AS r (role)
 CROSS JOIN (SELECT DISTINCT needs FROM rule) AS n;

SELECT is(pg_temp.outcome(m.role, r.call, r.needs), m.expect,
          format('%s as %s: %s', r.object, m.role, m.expect))
  FROM rule r JOIN may m ON m.needs = r.needs
 ORDER BY r.object, m.role;

-- The matrix is not vacuous: each outcome occurs.
SELECT ok((SELECT count(DISTINCT expect) FROM may) = 4, 'the matrix has allowed, denied, rows and no-rows cells');

SELECT * FROM finish();
ROLLBACK;

DO $$
BEGIN
    PERFORM eventbus.unsubscribe('m_sub');
    PERFORM eventbus.drop_schema('m.#');
END
$$;
DROP OWNED BY eb_m_owner, eb_m_consumer, eb_m_manager, eb_m_ungranted, eb_m_nobody, eb_m_monitor;
DROP ROLE eb_m_owner, eb_m_consumer, eb_m_manager, eb_m_ungranted, eb_m_nobody, eb_m_monitor;
