-- pgTAP: eventbus privileges. PUBLIC may use the schema and the pure
-- functions; nothing that changes state and no table or sequence.
-- Run as a superuser: the roles below are created inside the transaction and
-- disappear with the final ROLLBACK.
BEGIN;
SELECT plan(37);

CREATE ROLE eb_tap_nobody;   -- no grants: sees exactly what PUBLIC sees

-- ---------------------------------------------------------------------------
-- Catalog: functions.
SELECT function_privs_are('eventbus', 'publish',
    ARRAY['text', 'jsonb', 'text', 'jsonb', 'timestamptz', 'interval'],
    'public', '{}'::name[], 'PUBLIC has no EXECUTE on eventbus.publish');
SELECT function_privs_are('eventbus', 'publish',
    ARRAY['text', 'jsonb', 'text', 'jsonb', 'timestamptz', 'interval'],
    'eb_tap_nobody', '{}'::name[], 'eb_tap_nobody has no EXECUTE on eventbus.publish');
SELECT function_privs_are('eventbus', 'publish_batch',
    ARRAY['text[]', 'jsonb[]', 'text[]', 'jsonb[]', 'timestamptz', 'interval'],
    'public', '{}'::name[], 'PUBLIC has no EXECUTE on eventbus.publish_batch');
SELECT function_privs_are('eventbus', 'publish_batch',
    ARRAY['text[]', 'jsonb[]', 'text[]', 'jsonb[]', 'timestamptz', 'interval'],
    'eb_tap_nobody', '{}'::name[], 'eb_tap_nobody has no EXECUTE on eventbus.publish_batch');

-- Generic: no VOLATILE function (anything that may change state) is
-- executable by a role without grants, whatever is added later.
SELECT isnt_empty($$
    SELECT 1 FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = 'eventbus'::regnamespace AND p.provolatile = 'v'
$$, 'the schema has VOLATILE functions to check');
SELECT is_empty($$
    SELECT p.oid::regprocedure::text
      FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = 'eventbus'::regnamespace
       AND p.provolatile = 'v'
       AND has_function_privilege('eb_tap_nobody', p.oid, 'EXECUTE')
$$, 'no VOLATILE function in eventbus is executable without a grant');
-- Every SECURITY DEFINER function pins search_path to pg_catalog, pg_temp.
SELECT is_empty($$
    SELECT p.oid::regprocedure::text
      FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = 'eventbus'::regnamespace
       AND p.prosecdef
       AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)
$$, 'every SECURITY DEFINER function sets search_path = pg_catalog, pg_temp');

SELECT function_privs_are('eventbus', 'topic_matches', ARRAY['text', 'text'],
    'public', ARRAY['EXECUTE']::name[], 'PUBLIC may EXECUTE eventbus.topic_matches');
SELECT function_privs_are('eventbus', 'topic_matches', ARRAY['text', 'text'],
    'eb_tap_nobody', ARRAY['EXECUTE']::name[], 'eb_tap_nobody may EXECUTE eventbus.topic_matches');
SELECT function_privs_are('eventbus', 'is_valid_topic', ARRAY['text'],
    'public', ARRAY['EXECUTE']::name[], 'PUBLIC may EXECUTE eventbus.is_valid_topic');
SELECT function_privs_are('eventbus', 'is_valid_topic', ARRAY['text'],
    'eb_tap_nobody', ARRAY['EXECUTE']::name[], 'eb_tap_nobody may EXECUTE eventbus.is_valid_topic');
SELECT function_privs_are('eventbus', 'is_valid_pattern', ARRAY['text'],
    'public', ARRAY['EXECUTE']::name[], 'PUBLIC may EXECUTE eventbus.is_valid_pattern');
SELECT function_privs_are('eventbus', 'is_valid_pattern', ARRAY['text'],
    'eb_tap_nobody', ARRAY['EXECUTE']::name[], 'eb_tap_nobody may EXECUTE eventbus.is_valid_pattern');
SELECT function_privs_are('eventbus', 'validate', ARRAY['jsonb', 'jsonb'],
    'public', ARRAY['EXECUTE']::name[], 'PUBLIC may EXECUTE eventbus.validate (pure, for CHECK constraints)');
SELECT function_privs_are('eventbus', 'register_schema', ARRAY['text', 'jsonb', 'text', 'text'],
    'eb_tap_nobody', ARRAY[]::name[], 'eb_tap_nobody may not EXECUTE eventbus.register_schema');

-- Schema: USAGE, and not CREATE.
SELECT schema_privs_are('eventbus', 'public', ARRAY['USAGE']::name[],
    'PUBLIC has USAGE (and not CREATE) on schema eventbus');
SELECT schema_privs_are('eventbus', 'eb_tap_nobody', ARRAY['USAGE']::name[],
    'eb_tap_nobody has USAGE (and not CREATE) on schema eventbus');

-- Tables, views, sequences: nothing at all, table- or column-level.
-- First make sure the scan below is not vacuous.
SELECT cmp_ok((SELECT count(*) FROM pg_catalog.pg_class
                WHERE relnamespace = 'eventbus'::regnamespace
                  AND relkind IN ('r', 'p', 'v', 'm', 'f', 'S')),
              '>=', 9::bigint,
              'the privilege scan sees the tables, the view and the sequences of eventbus');

SELECT is_empty($$
    SELECT r.rolname, c.oid::regclass::text AS relation, pv.priv
      FROM pg_catalog.pg_class c
     CROSS JOIN (VALUES ('public'), ('eb_tap_nobody')) AS r(rolname)
     CROSS JOIN LATERAL unnest(CASE WHEN c.relkind = 'S'
                                    THEN ARRAY['USAGE', 'SELECT', 'UPDATE']
                                    ELSE ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE',
                                               'TRUNCATE', 'REFERENCES', 'TRIGGER']
                               END) AS pv(priv)
     WHERE c.relnamespace = 'eventbus'::regnamespace
       AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
       AND CASE WHEN c.relkind = 'S'
                THEN pg_catalog.has_sequence_privilege(r.rolname, c.oid, pv.priv)
                ELSE pg_catalog.has_table_privilege(r.rolname, c.oid, pv.priv)
                  OR (pv.priv IN ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES')
                      AND pg_catalog.has_any_column_privilege(r.rolname, c.oid, pv.priv))
           END
$$, 'PUBLIC and eb_tap_nobody have no privilege on any table, view or sequence of eventbus');

-- ---------------------------------------------------------------------------
-- Behaviour as a role with no grants.
SET LOCAL ROLE eb_tap_nobody;

SELECT throws_ok($$SELECT eventbus.publish('a.b', '{}')$$,
    '42501', 'permission denied for function publish',
    'eb_tap_nobody cannot call eventbus.publish');
SELECT throws_ok($$SELECT * FROM eventbus.publish_batch(ARRAY['a.b'], ARRAY['{}'::jsonb])$$,
    '42501', 'permission denied for function publish_batch',
    'eb_tap_nobody cannot call eventbus.publish_batch');
SELECT lives_ok($$SELECT eventbus.topic_matches('a.b', 'a.*')$$,
    'eb_tap_nobody can call eventbus.topic_matches');
SELECT is(eventbus.topic_matches('a.b', 'a.*'), true,
    'eb_tap_nobody gets the real answer from eventbus.topic_matches');
SELECT throws_ok($$SELECT * FROM eventbus.event_log$$,
    '42501', 'permission denied for table event_log',
    'eb_tap_nobody cannot read eventbus.event_log');
SELECT throws_ok($$SELECT * FROM eventbus.events$$,
    '42501', 'permission denied for view events',
    'eb_tap_nobody cannot read eventbus.events');
SELECT throws_ok($$SELECT nextval('eventbus.event_id_seq')$$,
    '42501', 'permission denied for sequence event_id_seq',
    'eb_tap_nobody cannot draw event ids');

RESET ROLE;

-- ---------------------------------------------------------------------------
-- A publisher: EXECUTE on publish and nothing else.
CREATE ROLE eb_tap_pub;
GRANT EXECUTE ON FUNCTION eventbus.publish(text, jsonb, text, jsonb, timestamptz, interval)
    TO eb_tap_pub;

SELECT function_privs_are('eventbus', 'publish',
    ARRAY['text', 'jsonb', 'text', 'jsonb', 'timestamptz', 'interval'],
    'eb_tap_pub', ARRAY['EXECUTE']::name[], 'eb_tap_pub may EXECUTE eventbus.publish');

SET LOCAL ROLE eb_tap_pub;

SELECT lives_ok($$SELECT eventbus.publish('eb_tap.priv.lives', '{"n": 1}')$$,
    'eb_tap_pub can publish');
-- Publish once more, keep the id for the check below, and check its type.
SELECT is(pg_typeof(p.id)::text, 'bigint', 'eventbus.publish returns a bigint to eb_tap_pub')
  FROM (SELECT eventbus.publish('eb_tap.priv.granted', '{"n": 2}') AS id) AS p,
       LATERAL set_config('eb_tap.pub_id', p.id::text, true) AS s;
SELECT throws_ok($$SELECT * FROM eventbus.event_log$$,
    '42501', 'permission denied for table event_log',
    'eb_tap_pub still cannot read eventbus.event_log');
SELECT throws_ok($$SELECT * FROM eventbus.publish_batch(ARRAY['a.b'], ARRAY['{}'::jsonb])$$,
    '42501', 'permission denied for function publish_batch',
    'EXECUTE on publish does not grant publish_batch');

RESET ROLE;

-- Back as superuser: both events are in the log, under the right topics.
-- (topic is COLLATE "C"; results_eq compares rows, which needs both sides
-- in the same collation.)
SELECT results_eq(
    $$SELECT topic COLLATE "default", payload FROM eventbus.events
       WHERE id = current_setting('eb_tap.pub_id')::bigint$$,
    $$VALUES ('eb_tap.priv.granted'::text, '{"n": 2}'::jsonb)$$,
    'the event eb_tap_pub published is in eventbus.events with its topic and payload');
SELECT results_eq(
    $$SELECT topic COLLATE "default", payload FROM eventbus.events
       WHERE topic = 'eb_tap.priv.lives'$$,
    $$VALUES ('eb_tap.priv.lives'::text, '{"n": 1}'::jsonb)$$,
    'the lives_ok event is in eventbus.events too, exactly once');

-- Statistics: pg_monitor reads them; nobody else, and nobody resets but the owner.
SELECT ok(has_table_privilege('pg_monitor', 'eventbus.subscription_stats', 'SELECT')
      AND has_table_privilege('pg_monitor', 'eventbus.topic_stats', 'SELECT')
      AND has_table_privilege('pg_monitor', 'eventbus.latency_stats', 'SELECT')
      AND has_table_privilege('pg_monitor', 'eventbus.worker_stats', 'SELECT'),
    'pg_monitor may read the four stats views');
SELECT ok(has_function_privilege('pg_monitor', 'eventbus.prometheus()', 'EXECUTE'),
    'pg_monitor may EXECUTE eventbus.prometheus');
SELECT ok(NOT has_function_privilege('pg_monitor', 'eventbus.reset_stats()', 'EXECUTE'),
    'pg_monitor may not reset the stats');
SELECT ok(NOT has_function_privilege('eb_tap_nobody', 'eventbus.prometheus()', 'EXECUTE'),
    'PUBLIC may not EXECUTE eventbus.prometheus');

SELECT * FROM finish();
ROLLBACK;
