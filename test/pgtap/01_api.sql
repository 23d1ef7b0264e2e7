-- pgTAP: the eventbus API contract (signatures, labels, comments, objects,
-- dump registration). Run with pg_prove against a database that has
-- CREATE EXTENSION pgtap; CREATE EXTENSION eventbus;
--
-- Argument types are spelled as regtype prints them ("timestamp with time
-- zone", not "timestamptz"): pgTAP's function_returns, volatility_is,
-- is_strict and function_lang_is compare the argument list as text, only
-- has_function normalises it.
BEGIN;
SELECT plan(91);

-- ---------------------------------------------------------------------------
-- Functions exist with exactly these argument types.
SELECT has_function('eventbus', 'topic_matches', ARRAY['text', 'text'],
    'eventbus.topic_matches(text, text) exists');
SELECT has_function('eventbus', 'is_valid_topic', ARRAY['text'],
    'eventbus.is_valid_topic(text) exists');
SELECT has_function('eventbus', 'is_valid_pattern', ARRAY['text'],
    'eventbus.is_valid_pattern(text) exists');
SELECT has_function('eventbus', 'publish',
    ARRAY['text', 'jsonb', 'text', 'jsonb', 'timestamptz', 'interval'],
    'eventbus.publish(text, jsonb, text, jsonb, timestamptz, interval) exists');
SELECT has_function('eventbus', 'publish_batch',
    ARRAY['text[]', 'jsonb[]', 'text[]', 'jsonb[]', 'timestamptz', 'interval'],
    'eventbus.publish_batch(text[], jsonb[], text[], jsonb[], timestamptz, interval) exists');
SELECT has_function('eventbus', 'subscribe',
    ARRAY['text', 'text[]', 'integer', 'interval', 'interval', 'interval', 'boolean', 'text',
          'jsonpath', 'bigint', 'text', 'regprocedure', 'integer'],
    'eventbus.subscribe(name, patterns, max_attempts, backoff_initial, backoff_max, lease, ordered, start_at, filter, max_backlog, on_overflow, handler, concurrency) exists');
SELECT has_function('eventbus', 'alter_subscription',
    ARRAY['text', 'text[]', 'integer', 'interval', 'interval', 'interval', 'boolean',
          'jsonpath', 'bigint', 'text', 'text[]', 'regprocedure', 'integer'],
    'eventbus.alter_subscription(name, ..., reset, handler, concurrency) exists');
SELECT has_function('eventbus', 'run_maintenance', ARRAY[]::text[], 'eventbus.run_maintenance() exists');
SELECT has_function('eventbus', 'schedule', ARRAY['text', 'text', 'text', 'jsonb'],
    'eventbus.schedule(job, cron, topic, payload) exists');
SELECT has_function('eventbus', 'unschedule', ARRAY['text'], 'eventbus.unschedule(job) exists');
SELECT has_view('eventbus', 'chunks', 'view eventbus.chunks exists');
SELECT has_function('eventbus', 'register_schema', ARRAY['text', 'jsonb', 'text', 'text'],
    'eventbus.register_schema(pattern, schema, on_invalid, uri) exists');
SELECT has_function('eventbus', 'drop_schema', ARRAY['text'], 'eventbus.drop_schema(pattern) exists');
SELECT has_view('eventbus', 'schemas', 'view eventbus.schemas exists');
SELECT function_returns('eventbus', 'validate', ARRAY['jsonb', 'jsonb'], 'boolean');
SELECT volatility_is('eventbus', 'validate', ARRAY['jsonb', 'jsonb'], 'stable');
SELECT is_strict('eventbus', 'validate', ARRAY['jsonb', 'jsonb'], 'validate is STRICT');
SELECT function_returns('eventbus', 'validation_errors', ARRAY['jsonb', 'jsonb'], 'setof record');
SELECT is(eventbus.validate('{"type": "integer"}', '1.0'), true, 'validate: 1.0 is an integer');
SELECT has_composite('eventbus', 'event', 'type eventbus.event (what handlers receive) exists');
SELECT columns_are('eventbus', 'event',
    ARRAY['id', 'topic', 'key', 'payload', 'headers', 'published_at', 'attempt', 'subscription'],
    'eventbus.event has the documented fields');
SELECT has_function('eventbus', 'unsubscribe', ARRAY['text'], 'eventbus.unsubscribe(text) exists');
SELECT has_function('eventbus', 'pause', ARRAY['text'], 'eventbus.pause(text) exists');
SELECT has_function('eventbus', 'resume', ARRAY['text'], 'eventbus.resume(text) exists');
SELECT has_function('eventbus', 'seek', ARRAY['text', 'timestamptz'], 'eventbus.seek(text, timestamptz) exists');
SELECT has_function('eventbus', 'seek', ARRAY['text', 'bigint'], 'eventbus.seek(text, bigint) exists');
SELECT has_function('eventbus', 'poll', ARRAY['text', 'integer', 'interval', 'interval', 'bigint'],
    'eventbus.poll(subscription, max_events, lease, wait, ack_lease) exists');
SELECT has_function('eventbus', 'ack', ARRAY['text', 'bigint[]', 'bigint'],
    'eventbus.ack(subscription, event_ids, lease_token) exists');
SELECT has_function('eventbus', 'nack', ARRAY['text', 'bigint', 'text', 'interval', 'bigint', 'boolean'],
    'eventbus.nack(subscription, event_id, error, retry_in, lease_token, dead) exists');
SELECT has_function('eventbus', 'extend_lease', ARRAY['text', 'bigint[]', 'interval', 'bigint'],
    'eventbus.extend_lease(subscription, event_ids, lease, lease_token) exists');
SELECT has_view('eventbus', 'deliveries', 'view eventbus.deliveries exists');
SELECT has_function('eventbus', 'redrive', ARRAY['text', 'bigint[]'], 'eventbus.redrive(text, bigint[]) exists');
SELECT has_function('eventbus', 'purge_dead_letters', ARRAY['text', 'interval'],
    'eventbus.purge_dead_letters(text, interval) exists');
SELECT has_function('eventbus', 'create_relay',
    ARRAY['text', 'text[]', 'text', 'name', 'text', 'jsonb', 'jsonpath', 'text', 'integer', 'interval', 'interval'],
    'eventbus.create_relay(name, patterns, sink, server, topic, options, filter, start_at, max_attempts, backoff_initial, backoff_max) exists');
SELECT has_function('eventbus', 'alter_relay', ARRAY['text', 'name', 'text', 'jsonb'],
    'eventbus.alter_relay(name, server, topic, options) exists');
SELECT has_function('eventbus', 'drop_relay', ARRAY['text'], 'eventbus.drop_relay(name) exists');
SELECT has_view('eventbus', 'relays', 'view eventbus.relays exists');
SELECT is((SELECT fdwvalidator::regproc::text FROM pg_foreign_data_wrapper WHERE fdwname = 'eventbus_kafka'),
    'eventbus._kafka_validator', 'the foreign data wrapper eventbus_kafka checks its options');
SELECT is((SELECT fdwvalidator::regproc::text FROM pg_foreign_data_wrapper WHERE fdwname = 'eventbus_http'),
    'eventbus._http_validator', 'the foreign data wrapper eventbus_http checks its options');

-- Return types.
SELECT function_returns('eventbus', 'topic_matches', ARRAY['text', 'text'], 'boolean');
SELECT function_returns('eventbus', 'is_valid_topic', ARRAY['text'], 'boolean');
SELECT function_returns('eventbus', 'is_valid_pattern', ARRAY['text'], 'boolean');
SELECT function_returns('eventbus', 'publish',
    ARRAY['text', 'jsonb', 'text', 'jsonb', 'timestamp with time zone', 'interval'],
    'bigint');
SELECT function_returns('eventbus', 'publish_batch',
    ARRAY['text[]', 'jsonb[]', 'text[]', 'jsonb[]', 'timestamp with time zone', 'interval'],
    'setof bigint');

-- Volatility.
SELECT volatility_is('eventbus', 'topic_matches', ARRAY['text', 'text'], 'immutable');
SELECT volatility_is('eventbus', 'is_valid_topic', ARRAY['text'], 'immutable');
SELECT volatility_is('eventbus', 'is_valid_pattern', ARRAY['text'], 'immutable');
SELECT volatility_is('eventbus', 'publish',
    ARRAY['text', 'jsonb', 'text', 'jsonb', 'timestamp with time zone', 'interval'],
    'volatile');
SELECT volatility_is('eventbus', 'publish_batch',
    ARRAY['text[]', 'jsonb[]', 'text[]', 'jsonb[]', 'timestamp with time zone', 'interval'],
    'volatile');

-- Strictness: the pure functions are STRICT; publish* are not (NULL optional
-- arguments mean "not given", NULL topic/payload must raise, not return NULL).
SELECT is_strict('eventbus', 'topic_matches', ARRAY['text', 'text'],
    'eventbus.topic_matches is STRICT');
SELECT is_strict('eventbus', 'is_valid_topic', ARRAY['text'],
    'eventbus.is_valid_topic is STRICT');
SELECT is_strict('eventbus', 'is_valid_pattern', ARRAY['text'],
    'eventbus.is_valid_pattern is STRICT');
SELECT isnt_strict('eventbus', 'publish',
    ARRAY['text', 'jsonb', 'text', 'jsonb', 'timestamp with time zone', 'interval'],
    'eventbus.publish is not STRICT');
SELECT isnt_strict('eventbus', 'publish_batch',
    ARRAY['text[]', 'jsonb[]', 'text[]', 'jsonb[]', 'timestamp with time zone', 'interval'],
    'eventbus.publish_batch is not STRICT');

-- Parallel safety (to_regprocedure: a missing function gives NULL, a failure,
-- rather than aborting the file).
SELECT is((SELECT proparallel FROM pg_catalog.pg_proc
            WHERE oid = to_regprocedure('eventbus.topic_matches(text,text)')),
          's'::"char", 'eventbus.topic_matches is PARALLEL SAFE');
SELECT is((SELECT proparallel FROM pg_catalog.pg_proc
            WHERE oid = to_regprocedure('eventbus.is_valid_topic(text)')),
          's'::"char", 'eventbus.is_valid_topic is PARALLEL SAFE');
SELECT is((SELECT proparallel FROM pg_catalog.pg_proc
            WHERE oid = to_regprocedure('eventbus.is_valid_pattern(text)')),
          's'::"char", 'eventbus.is_valid_pattern is PARALLEL SAFE');
SELECT is((SELECT proparallel FROM pg_catalog.pg_proc
            WHERE oid = to_regprocedure('eventbus.publish(text,jsonb,text,jsonb,timestamptz,interval)')),
          'u'::"char", 'eventbus.publish is PARALLEL UNSAFE');
SELECT is((SELECT proparallel FROM pg_catalog.pg_proc
            WHERE oid = to_regprocedure('eventbus.publish_batch(text[],jsonb[],text[],jsonb[],timestamptz,interval)')),
          'u'::"char", 'eventbus.publish_batch is PARALLEL UNSAFE');

-- Language.
SELECT function_lang_is('eventbus', 'topic_matches', ARRAY['text', 'text'], 'c');
SELECT function_lang_is('eventbus', 'is_valid_topic', ARRAY['text'], 'c');
SELECT function_lang_is('eventbus', 'is_valid_pattern', ARRAY['text'], 'c');
SELECT function_lang_is('eventbus', 'publish',
    ARRAY['text', 'jsonb', 'text', 'jsonb', 'timestamp with time zone', 'interval'], 'c');
SELECT function_lang_is('eventbus', 'publish_batch',
    ARRAY['text[]', 'jsonb[]', 'text[]', 'jsonb[]', 'timestamp with time zone', 'interval'], 'c');

-- Parameter names (callers use named notation) and defaults.
SELECT is((SELECT proargnames FROM pg_catalog.pg_proc
            WHERE oid = to_regprocedure('eventbus.publish(text,jsonb,text,jsonb,timestamptz,interval)')),
          ARRAY['topic', 'payload', 'key', 'headers', 'deliver_at', 'ttl']::text[],
          'eventbus.publish parameters are named topic, payload, key, headers, deliver_at, ttl');
SELECT is((SELECT pronargdefaults FROM pg_catalog.pg_proc
            WHERE oid = to_regprocedure('eventbus.publish(text,jsonb,text,jsonb,timestamptz,interval)')),
          4::smallint,
          'eventbus.publish: key, headers, deliver_at, ttl have defaults');
SELECT is((SELECT proargnames FROM pg_catalog.pg_proc
            WHERE oid = to_regprocedure('eventbus.publish_batch(text[],jsonb[],text[],jsonb[],timestamptz,interval)')),
          ARRAY['topics', 'payloads', 'keys', 'headers', 'deliver_at', 'ttl']::text[],
          'eventbus.publish_batch parameters are named topics, payloads, keys, headers, deliver_at, ttl');
SELECT is((SELECT pronargdefaults FROM pg_catalog.pg_proc
            WHERE oid = to_regprocedure('eventbus.publish_batch(text[],jsonb[],text[],jsonb[],timestamptz,interval)')),
          4::smallint,
          'eventbus.publish_batch: keys, headers, deliver_at, ttl have defaults');

-- ---------------------------------------------------------------------------
-- Style card, checked over everything in the schema (so new objects are
-- covered without editing this file).
SELECT is_empty($$
    SELECT p.oid::regprocedure::text
      FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = 'eventbus'::regnamespace
       AND pg_catalog.obj_description(p.oid, 'pg_proc') IS NULL
$$, 'every function in schema eventbus has a COMMENT');

SELECT is_empty($$
    SELECT c.oid::regclass::text
      FROM pg_catalog.pg_class c
     WHERE c.relnamespace = 'eventbus'::regnamespace
       AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
       AND pg_catalog.obj_description(c.oid, 'pg_class') IS NULL
$$, 'every table and view in schema eventbus has a COMMENT');

SELECT is_empty($$
    SELECT p.oid::regprocedure::text
      FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = 'eventbus'::regnamespace
       AND p.prosecdef
       AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) AS cfg
                        WHERE cfg LIKE 'search_path=%')
$$, 'no SECURITY DEFINER function in schema eventbus lacks a pinned search_path');

SELECT is_empty($$
    SELECT p.oid::regprocedure::text
      FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = 'eventbus'::regnamespace
       AND p.proisstrict
       AND p.pronargdefaults > 0
$$, 'no STRICT function in schema eventbus has parameters with defaults');

SELECT is_empty($$
    SELECT c.oid::regclass::text
      FROM pg_catalog.pg_class c
     WHERE c.relnamespace = 'eventbus'::regnamespace
       AND c.relkind = 'S'
       AND pg_catalog.obj_description(c.oid, 'pg_class') IS NULL
$$, 'every sequence in schema eventbus has a COMMENT');

-- ---------------------------------------------------------------------------
-- Objects.
SELECT has_table('eventbus', 'event_log', 'table eventbus.event_log exists');
SELECT has_table('eventbus', 'event_log_0', 'table eventbus.event_log_0 exists');
SELECT has_table('eventbus', 'event_log_1', 'table eventbus.event_log_1 exists');
SELECT has_table('eventbus', 'event_log_2', 'table eventbus.event_log_2 exists');
SELECT has_table('eventbus', 'topic', 'table eventbus.topic exists');
SELECT has_table('eventbus', 'chunk', 'table eventbus.chunk exists');
SELECT has_view('eventbus', 'events', 'view eventbus.events exists');
SELECT has_view('eventbus', 'topic_stats', 'view eventbus.topic_stats exists');
SELECT has_view('eventbus', 'subscription_stats', 'view eventbus.subscription_stats exists');
SELECT has_view('eventbus', 'latency_stats', 'view eventbus.latency_stats exists');
SELECT has_view('eventbus', 'worker_stats', 'view eventbus.worker_stats exists');
SELECT function_returns('eventbus', 'prometheus', ARRAY[]::text[], 'text');
SELECT function_returns('eventbus', 'reset_stats', ARRAY[]::text[], 'void');
SELECT columns_are('eventbus', 'subscription_stats', ARRAY['subscription', 'routed', 'read', 'delivered', 'acked',
    'nacked', 'retried', 'dead', 'expired', 'redriven', 'discarded', 'backlog', 'in_flight', 'dead_letters',
    'oldest_pending_age', 'lag', 'last_poll_at', 'paused', 'stats_reset'],
    'subscription_stats has the documented columns');
SELECT has_sequence('eventbus', 'event_id_seq', 'sequence eventbus.event_id_seq exists');
SELECT has_sequence('eventbus', 'topic_id_seq', 'sequence eventbus.topic_id_seq exists');

SELECT is((SELECT count(*) FROM eventbus.chunk WHERE is_current), 1::bigint,
    'exactly one row of eventbus.chunk is current');

-- pg_dump registration: the events, the topics and the id sequences are dumped.
SELECT set_has($$
    SELECT cfg::regclass::text
      FROM pg_catalog.pg_extension e, unnest(e.extconfig) AS cfg
     WHERE e.extname = 'eventbus'
$$, $$
    VALUES ('eventbus.event_log_0'), ('eventbus.event_log_1'), ('eventbus.event_log_2'),
           ('eventbus.topic'), ('eventbus.event_id_seq'), ('eventbus.topic_id_seq')
$$, 'extconfig of eventbus registers event_log_0..2, topic, event_id_seq, topic_id_seq');

SELECT * FROM finish();
ROLLBACK;
