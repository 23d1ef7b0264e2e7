-- eventbus 0.1.0 -> 0.2.0 (ALTER EXTENSION eventbus UPDATE).
--
-- Consuming by batches: eventbus.batch and eventbus.expiry, a lease token
-- on deliveries, poll/ack/nack/extend_lease in C with a lease_token, the
-- deliveries view, handler processes (subscription option concurrency),
-- eventbus._unread in C. Owners and rights: subscriptions and schemas get
-- an owner (the extension's owner, for those made before), subscriptions
-- their consumers and managers; the management functions become gates
-- to internal functions that learn who called (access.c). Topics get the
-- columns that let maintenance drop unused ones, chunks their generation.
-- Every function and view is (re)created from the 0.2.0 install script; what users were granted on the functions and
-- views that are dropped and created again (their signature or columns
-- changed) is granted again. Leased, waiting and dead deliveries and the
-- cursors stay as they are: the new code reads them as they are.
-- test/t/013_upgrade.pl checks that the result is the same as a fresh
-- 0.2.0 install, and that nothing in flight is lost.

\echo Use "ALTER EXTENSION eventbus UPDATE TO '0.2.0'" to load this file. \quit

-- What was granted on the objects dropped below, to grant it again.
CREATE TEMP TABLE eventbus_update_acl (kind text, old_name text, new_name text, grantee oid, privilege text);
INSERT INTO eventbus_update_acl
SELECT 'function', m.old_name, m.new_name, a.grantee, a.privilege_type
  FROM (VALUES
        ('eventbus.poll(text,integer,interval,interval)', 'eventbus.poll(text,integer,interval,interval,bigint)'),
        ('eventbus.ack(text,bigint[])', 'eventbus.ack(text,bigint[],bigint)'),
        ('eventbus.nack(text,bigint,text,interval)', 'eventbus.nack(text,bigint,text,interval,bigint,boolean)'),
        ('eventbus.extend_lease(text,bigint[],interval)', 'eventbus.extend_lease(text,bigint[],interval,bigint)'),
        ('eventbus.subscribe(text,text[],integer,interval,interval,interval,boolean,text,jsonpath,bigint,text,regprocedure)',
         'eventbus.subscribe(text,text[],integer,interval,interval,interval,boolean,text,jsonpath,bigint,text,regprocedure,integer)'),
        ('eventbus.alter_subscription(text,text[],integer,interval,interval,interval,boolean,jsonpath,bigint,text,text[],regprocedure)',
         'eventbus.alter_subscription(text,text[],integer,interval,interval,interval,boolean,jsonpath,bigint,text,text[],regprocedure,integer)')
       ) AS m (old_name, new_name)
  JOIN pg_catalog.pg_proc p ON p.oid = pg_catalog.to_regprocedure(m.old_name)
 CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) a
 WHERE a.grantee <> p.proowner AND a.grantee <> 0;
INSERT INTO eventbus_update_acl
SELECT 'view', c.oid::regclass::text, c.oid::regclass::text, a.grantee, a.privilege_type
  FROM pg_catalog.pg_class c
 CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a
 WHERE c.oid IN ('eventbus.subscriptions'::regclass, 'eventbus.subscription_stats'::regclass)
   AND a.grantee <> c.relowner AND a.grantee <> 0;

-- Tables.
ALTER TABLE eventbus.delivery ADD COLUMN token bigint;
ALTER TABLE eventbus.subscription ADD COLUMN concurrency integer NOT NULL DEFAULT 1;
-- Owners (docs/security.md): 0.1.0 did not record who created a
-- subscription or registered a schema, so the extension's owner owns them.
ALTER TABLE eventbus.subscription ADD COLUMN owner regrole;
UPDATE eventbus.subscription
   SET owner = (SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname = 'eventbus');
ALTER TABLE eventbus.subscription ALTER COLUMN owner SET NOT NULL;
ALTER TABLE eventbus.subscription ADD COLUMN consumers regrole[] NOT NULL DEFAULT '{}';
ALTER TABLE eventbus.subscription ADD COLUMN managers regrole[] NOT NULL DEFAULT '{}';
-- Relays (docs/relay.md).
ALTER TABLE eventbus.subscription ADD COLUMN sink text CHECK (sink IN ('kafka', 'http'));
ALTER TABLE eventbus.subscription ADD COLUMN sink_server text;
ALTER TABLE eventbus.subscription ADD COLUMN sink_topic text;
ALTER TABLE eventbus.subscription ADD COLUMN sink_options jsonb;
-- Nobody loses access: a role that could poll every subscription before
-- (EXECUTE on poll) gets consume on each existing one, a role that could
-- manage them (EXECUTE on a management function) gets manage.
UPDATE eventbus.subscription
   SET consumers = ARRAY(SELECT DISTINCT a.grantee::regrole
                           FROM pg_catalog.pg_proc p CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) a
                          WHERE p.oid = pg_catalog.to_regprocedure('eventbus.poll(text,integer,interval,interval)')
                            AND a.privilege_type = 'EXECUTE' AND a.grantee <> 0 AND a.grantee <> p.proowner
                          ORDER BY 1),
       managers = ARRAY(SELECT DISTINCT a.grantee::regrole
                          FROM pg_catalog.pg_proc p CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) a
                         WHERE p.oid IN (SELECT pg_catalog.to_regprocedure(f) FROM pg_catalog.unnest(ARRAY[
                                   'eventbus.alter_subscription(text,text[],integer,interval,interval,interval,boolean,jsonpath,bigint,text,text[],regprocedure)',
                                   'eventbus.unsubscribe(text)', 'eventbus.pause(text)', 'eventbus.resume(text)',
                                   'eventbus.seek(text,timestamptz)', 'eventbus.seek(text,bigint)',
                                   'eventbus.redrive(text,bigint[])', 'eventbus.purge_dead_letters(text,interval)']) f)
                           AND a.privilege_type = 'EXECUTE' AND a.grantee <> 0 AND a.grantee <> p.proowner
                         ORDER BY 1);
ALTER TABLE eventbus.schema ADD COLUMN owner regrole;
UPDATE eventbus.schema
   SET owner = (SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname = 'eventbus');
ALTER TABLE eventbus.schema ALTER COLUMN owner SET NOT NULL;
-- Dead letters of handler calls that overran their timeout or whose process exited.
ALTER TABLE eventbus.delivery DROP CONSTRAINT delivery_reason_check;
ALTER TABLE eventbus.delivery ADD CONSTRAINT delivery_reason_check
    CHECK (reason IN ('failed', 'lease_expired', 'redriven', 'overflow', 'schema', 'timeout', 'crashed'));

CREATE TABLE eventbus.batch (
    sub_id      integer NOT NULL,         -- eventbus.subscription.id
    batch_id    bigint NOT NULL,          -- from eventbus.batch_id_seq: the order batches were cut in
    leased      boolean NOT NULL,         -- false: ready to be claimed
    attempt     integer NOT NULL,         -- handed out this many times
    lease_until timestamptz,              -- leased: the lease ends then
    leased_at   timestamptz,              -- leased: when the lease began
    token       bigint,                   -- leased: the lease token poll returned
    first_txid  xid8 NOT NULL,            -- its events lie between (first_txid, first_id)
    first_id    bigint NOT NULL,          --   and (last_txid, last_id) in the log's
    last_txid   xid8 NOT NULL,            --   (txid, id) order: where to find them
    last_id     bigint NOT NULL,
    ids         bigint[] NOT NULL,        -- its events, ascending
    done        bytea,                    -- bit i: ids[i] is done (acked, nacked or expired); NULL: none
    ndone       integer NOT NULL,         -- how many bits of "done" are set
    cut_at      timestamptz NOT NULL,     -- when it was cut
    PRIMARY KEY (sub_id, batch_id)
) WITH (fillfactor = 50);
CREATE INDEX batch_lease_until ON eventbus.batch (lease_until) WHERE leased;
CREATE SEQUENCE eventbus.batch_id_seq AS bigint;
COMMENT ON TABLE eventbus.batch IS 'eventbus: batches of events cut from the log per subscription, ready or leased';
COMMENT ON SEQUENCE eventbus.batch_id_seq IS 'eventbus: batch ids, in the order batches were cut';
CREATE TABLE eventbus.expiry (
    sub_id integer NOT NULL,
    n      bigint NOT NULL
);
COMMENT ON TABLE eventbus.expiry IS 'eventbus: counts of events that expired before they were handed out, not yet folded into eventbus.cursor';
SELECT pg_catalog.pg_extension_config_dump('eventbus.batch', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.batch_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.expiry', '');
CREATE TABLE eventbus.topic_acl (
    role    regrole NOT NULL,
    action  text NOT NULL CHECK (action IN ('publish', 'subscribe')),
    pattern text NOT NULL,
    PRIMARY KEY (role, action, pattern)
);
COMMENT ON TABLE eventbus.topic_acl IS 'eventbus: which topics a role may publish to, which patterns it may subscribe with';
SELECT pg_catalog.pg_extension_config_dump('eventbus.topic_acl', '');
-- The topic dictionary drops unused topics (src/topicdict.c): chunk
-- generations, and what publishers used. Chunks holding events, and the
-- current one, count as generation 1; the others hold none.
ALTER TABLE eventbus.topic ADD COLUMN used_gen bigint NOT NULL DEFAULT 0;
ALTER TABLE eventbus.topic ADD COLUMN retired_gen bigint;
CREATE INDEX topic_used_gen_idx ON eventbus.topic (used_gen) WHERE retired_gen IS NULL;
CREATE INDEX topic_retired_gen_idx ON eventbus.topic (retired_gen) WHERE retired_gen IS NOT NULL;
CREATE TABLE eventbus.topic_use (
    topic_id   integer NOT NULL,
    generation bigint NOT NULL
);
COMMENT ON TABLE eventbus.topic_use IS 'eventbus: topic uses not yet folded into eventbus.topic.used_gen';
ALTER TABLE eventbus.chunk ADD COLUMN generation bigint;
DO $$
DECLARE
    c record;
    v_any boolean;
BEGIN
    FOR c IN SELECT ch.chunk_no, ch.relname, ch.is_current FROM eventbus.chunk ch LOOP
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM eventbus.%I)', c.relname) INTO v_any;
        IF c.is_current OR v_any THEN
            UPDATE eventbus.chunk ch SET generation = 1 WHERE ch.chunk_no = c.chunk_no;
        END IF;
    END LOOP;
END
$$;

-- Functions and views whose signature, result or columns changed, or that
-- are gone.
DROP VIEW eventbus.subscription_stats;
DROP VIEW eventbus.subscriptions;
DROP FUNCTION eventbus.poll(text, integer, interval, interval);
DROP FUNCTION eventbus.ack(text, bigint[]);
DROP FUNCTION eventbus._ack_ids(integer, bigint[]);
DROP FUNCTION eventbus.nack(text, bigint, text, interval);
DROP FUNCTION eventbus.extend_lease(text, bigint[], interval);
DROP FUNCTION eventbus.subscribe(text, text[], integer, interval, interval, interval, boolean, text, jsonpath, bigint, text, regprocedure);
DROP FUNCTION eventbus.alter_subscription(text, text[], integer, interval, interval, interval, boolean, jsonpath, bigint, text, text[], regprocedure);
DROP FUNCTION eventbus._backoff(interval, interval, integer);
DROP FUNCTION eventbus._topic_names(integer[]);
DROP FUNCTION eventbus._unread(eventbus.subscription, eventbus.cursor, integer[]);
DROP FUNCTION eventbus._backlog(integer, bigint);
DROP FUNCTION eventbus._pending(integer);
DROP FUNCTION eventbus._topic_ids(text[]);
DROP FUNCTION eventbus._tick(pg_snapshot, timestamptz, integer[], boolean);
DROP FUNCTION eventbus._subscription(text);
DROP FUNCTION eventbus._caller();
DROP FUNCTION eventbus._check_subscription(eventbus.subscription);
DROP FUNCTION eventbus._seek(integer, timestamptz, bigint);

-- Every function and view of 0.2.0, created or replaced.

-- Whether current_user may read the events of a topic: when subscribing is
-- restricted by eventbus.topic_acl (sql/35_acl.sql), only those of topics
-- its subscribe patterns match (src/acl.c).
CREATE OR REPLACE FUNCTION eventbus._may_read_topic(topic text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'eventbus_may_read_topic'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
-- eventbus install script, part 10: topic and pattern grammar.

CREATE OR REPLACE FUNCTION eventbus.topic_matches(topic text, pattern text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'eventbus_topic_matches'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE OR REPLACE FUNCTION eventbus.is_valid_topic(topic text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'eventbus_is_valid_topic'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE OR REPLACE FUNCTION eventbus.is_valid_pattern(pattern text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'eventbus_is_valid_pattern'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
-- eventbus install script, part 20: publishing.
-- Neither function is STRICT: a NULL key, headers, deliver_at or ttl means
-- "not given", and a NULL topic or payload is an error, never a silent NULL.

CREATE OR REPLACE FUNCTION eventbus.publish(
    topic      text,
    payload    jsonb,
    key        text DEFAULT NULL,
    headers    jsonb DEFAULT NULL,
    deliver_at timestamptz DEFAULT NULL,
    ttl        interval DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'eventbus_publish'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE OR REPLACE FUNCTION eventbus.publish_batch(
    topics     text[],
    payloads   jsonb[],
    keys       text[] DEFAULT NULL,
    headers    jsonb[] DEFAULT NULL,
    deliver_at timestamptz DEFAULT NULL,
    ttl        interval DEFAULT NULL)
RETURNS SETOF bigint
AS 'MODULE_PATHNAME', 'eventbus_publish_batch'
LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 100;
-- Tells other backends that subscriptions changed (publish caches the ones
-- with a backlog limit).
CREATE OR REPLACE FUNCTION eventbus._subscriptions_changed()
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_subscriptions_changed'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
-- Waiting pollers (poll's wait) sleep until a transaction that made events
-- pollable commits: publishes, nacks, redrives, seeks and resumes call
-- _wake, which wakes them at commit. See docs/consuming.md.
CREATE OR REPLACE FUNCTION eventbus._wake(sub_id integer DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_wake'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE OR REPLACE FUNCTION eventbus._wake_at_end(sub_id integer, due timestamptz)
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_wake_at_end'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE OR REPLACE FUNCTION eventbus._wake_count()
RETURNS bigint
AS 'MODULE_PATHNAME', 'eventbus_wake_count'
LANGUAGE C VOLATILE PARALLEL SAFE;
CREATE OR REPLACE FUNCTION eventbus._wait(until timestamptz, seen bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_wait'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
-- The current snapshot, with this transaction's own xid counted as still in
-- progress: a poller must neither receive nor step over the events its own
-- transaction publishes (they are handed out after it commits).
CREATE OR REPLACE FUNCTION eventbus._snapshot()
RETURNS pg_snapshot
LANGUAGE sql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN x IS NULL OR x >= pg_snapshot_xmax(s) THEN s
        ELSE (least(pg_snapshot_xmin(s), x)::text || ':' || pg_snapshot_xmax(s)::text || ':' ||
              (SELECT string_agg(v::text, ',' ORDER BY v)
                 FROM (SELECT pg_snapshot_xip(s) AS v UNION SELECT x) q))::pg_snapshot
    END
    FROM pg_current_snapshot() AS s, pg_current_xact_id_if_assigned() AS x
$$;
-- Raises 22023 unless the name can be a subscription name.
CREATE OR REPLACE FUNCTION eventbus._check_name(name text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF name IS NULL OR name !~ '^[a-z_][a-z0-9_]*$' OR octet_length(name) > 54 THEN
        RAISE EXCEPTION 'invalid subscription name "%"', name
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A name is 1 to 54 characters: lower-case letters, digits and "_", not starting with a digit.',
                  HINT = 'Use e.g. ''billing'' or ''order_mailer''; consumers LISTEN on "eventbus_<name>".';
    END IF;
END
$$;
-- Returns the subscription row, or raises 42704 naming it, or 42501 unless
-- the caller holds the right "needs" on it (consume, manage or own).
CREATE OR REPLACE FUNCTION eventbus._subscription(name text, caller regrole, needs text)
RETURNS eventbus.subscription
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s eventbus.subscription;
BEGIN
    SELECT * INTO s FROM eventbus.subscription WHERE subscription.name = _subscription.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'subscription "%" does not exist', name
            USING ERRCODE = 'undefined_object',
                  HINT = 'Create it with eventbus.subscribe(name, patterns); list them in eventbus.subscriptions.';
    END IF;
    PERFORM eventbus._check_right(caller, s.name, s.owner, s.consumers, s.managers, needs);
    RETURN s;
END
$$;
-- Raises 42501 unless caller holds the right on a subscription with these
-- columns (access.c).
CREATE OR REPLACE FUNCTION eventbus._check_right(caller regrole, name text, owner regrole,
                                      consumers regrole[], managers regrole[], needs text)
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_check_right'
LANGUAGE C STABLE PARALLEL SAFE;
-- Whether current_user holds a right on a subscription with these columns:
-- the views show only those.
CREATE OR REPLACE FUNCTION eventbus._visible(owner regrole, consumers regrole[], managers regrole[])
RETURNS boolean
AS 'MODULE_PATHNAME', 'eventbus_visible'
LANGUAGE C STABLE PARALLEL SAFE;
-- Raises 22023 unless an interval is positive and at most the given limit.
CREATE OR REPLACE FUNCTION eventbus._check_interval(what text, value interval, lim interval)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF value IS NULL OR value <= interval '0' OR value > lim THEN
        RAISE EXCEPTION '% must be a positive interval of at most %: "%"', what, lim, value
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Pass e.g. %L.', CASE what WHEN 'lease' THEN '30 seconds'
                                                         WHEN 'backoff_max' THEN '1 hour'
                                                         ELSE '1 second' END);
    END IF;
END
$$;
-- Raises a clear error unless every option of the subscription row is valid.
CREATE OR REPLACE FUNCTION eventbus._check_subscription(s eventbus.subscription, caller regrole)
RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p text;
BEGIN
    PERFORM eventbus._check_name(s.name);
    IF s.patterns IS NULL OR cardinality(s.patterns) = 0 THEN
        RAISE EXCEPTION 'subscription "%" needs at least one pattern', s.name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass e.g. array[''orders.*.created'', ''refunds.#''].';
    END IF;
    IF array_ndims(s.patterns) > 1 OR cardinality(s.patterns) > 100 THEN
        RAISE EXCEPTION 'patterns of subscription "%" must be a one-dimensional array of at most 100 patterns', s.name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass e.g. array[''orders.*.created'', ''refunds.#''].';
    END IF;
    FOREACH p IN ARRAY s.patterns LOOP
        IF p IS NULL THEN
            RAISE EXCEPTION 'patterns of subscription "%" must not contain NULL', s.name
                USING ERRCODE = 'null_value_not_allowed',
                      HINT = 'Pass e.g. array[''orders.#''].';
        END IF;
        PERFORM eventbus.topic_matches('x', p);     -- raises 22023 for an invalid pattern
    END LOOP;
    IF s.max_attempts IS NULL OR s.max_attempts < 1 OR s.max_attempts > 1000 THEN
        RAISE EXCEPTION 'max_attempts must be between 1 and 1000: %', s.max_attempts
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass e.g. 5.';
    END IF;
    PERFORM eventbus._check_interval('backoff_initial', s.backoff_initial, interval '1 day');
    PERFORM eventbus._check_interval('backoff_max', s.backoff_max, interval '30 days');
    PERFORM eventbus._check_interval('lease', s.lease, interval '1 day');
    IF s.backoff_max < s.backoff_initial THEN
        RAISE EXCEPTION 'backoff_max (%) is shorter than backoff_initial (%)', s.backoff_max, s.backoff_initial
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Make backoff_max at least backoff_initial.';
    END IF;
    IF s.ordered IS NULL THEN
        RAISE EXCEPTION 'ordered must not be NULL'
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Pass true or false.';
    END IF;
    IF s.max_backlog IS NOT NULL AND (s.max_backlog < 1 OR s.max_backlog > 1000000000) THEN
        RAISE EXCEPTION 'max_backlog must be between 1 and 1000000000: %', s.max_backlog
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass e.g. 100000, or NULL for no limit.';
    END IF;
    IF s.on_overflow IS NULL OR s.on_overflow NOT IN ('reject', 'drop_oldest') THEN
        RAISE EXCEPTION 'invalid on_overflow "%"', s.on_overflow
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass ''reject'' (publish fails) or ''drop_oldest'' (oldest pending events become dead letters).';
    END IF;
    IF s.concurrency IS NULL OR s.concurrency < 1 OR s.concurrency > 64 THEN
        RAISE EXCEPTION 'concurrency must be between 1 and 64: %', s.concurrency
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass e.g. 4: handler processes that run the subscription''s handler side by side.';
    END IF;
    IF s.handler IS NOT NULL AND s.sink IS NOT NULL THEN
        RAISE EXCEPTION 'relay "%" cannot have a handler', s.name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A relay''s events go to its sink; subscribe with a handler under another name.';
    END IF;
    IF s.handler IS NOT NULL AND NOT EXISTS (
           SELECT 1 FROM pg_proc p
            WHERE p.oid = s.handler AND p.prokind = 'f' AND NOT p.proretset
              AND p.pronargs = 1 AND p.proargtypes[0] = 'eventbus.event'::regtype) THEN
        RAISE EXCEPTION 'function % cannot be the handler of subscription "%"', s.handler, s.name
            USING ERRCODE = 'invalid_function_definition',
                  DETAIL = 'A handler is a function (not a procedure, not set-returning) with one argument of type eventbus.event.',
                  HINT = 'Create e.g. FUNCTION app.on_order(e eventbus.event) RETURNS void, and pass ''app.on_order(eventbus.event)''::regprocedure.';
    END IF;
    -- The worker runs the handler as its owner: only a member of that role
    -- may choose it, or anyone could run a superuser's function on
    -- payloads of their choosing.
    IF s.handler IS NOT NULL
       AND NOT (pg_has_role(caller,
                            (SELECT p.proowner FROM pg_proc p WHERE p.oid = s.handler), 'USAGE')
                AND has_function_privilege(caller, s.handler, 'EXECUTE')) THEN
        RAISE EXCEPTION 'permission denied for handler function %', s.handler
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'The worker runs a handler as the owner of the function.',
                  HINT = 'Only the owner of the function (or a member of its role) with EXECUTE on it may make it a handler.';
    END IF;
END
$$;
-- Parses start_at ('now', 'earliest' or a time) into the cursor's start.
CREATE OR REPLACE FUNCTION eventbus._start_time(start_at text)
RETURNS timestamptz
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t timestamptz;
BEGIN
    IF start_at IN ('now', 'earliest') THEN
        RETURN NULL;
    END IF;
    BEGIN
        t := start_at::timestamptz;
    EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR invalid_parameter_value THEN
        t := NULL;
    END;
    IF t IS NULL OR start_at IS NULL OR NOT isfinite(t) THEN
        RAISE EXCEPTION 'invalid start_at "%"', start_at
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass ''now'', ''earliest'' or a time such as ''2026-11-23 12:00+00''.';
    END IF;
    RETURN t;
END
$$;
CREATE OR REPLACE FUNCTION eventbus._subscribe(
    caller          regrole,
    name            text,
    patterns        text[],
    max_attempts    integer,
    backoff_initial interval,
    backoff_max     interval,
    lease           interval,
    ordered         boolean,
    start_at        text,
    filter          jsonpath,
    max_backlog     bigint,
    on_overflow     text,
    handler         regprocedure,
    concurrency     integer)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s       eventbus.subscription;
    t       timestamptz;
BEGIN
    PERFORM eventbus._check_origin();
    s.name := name; s.patterns := patterns; s.max_attempts := max_attempts;
    s.backoff_initial := backoff_initial; s.backoff_max := backoff_max; s.lease := lease;
    s.ordered := ordered; s.filter := filter; s.max_backlog := max_backlog;
    s.on_overflow := on_overflow; s.handler := handler; s.concurrency := concurrency;
    PERFORM eventbus._check_subscription(s, caller);
    PERFORM eventbus._check_subscribe_acl(caller, s.patterns);
    t := eventbus._start_time(start_at);

    INSERT INTO eventbus.subscription AS sb (name, patterns, max_attempts, backoff_initial,
                                             backoff_max, lease, ordered, filter, max_backlog,
                                             on_overflow, handler, concurrency, owner)
    VALUES (s.name, s.patterns, s.max_attempts, s.backoff_initial, s.backoff_max, s.lease,
            s.ordered, s.filter, s.max_backlog, s.on_overflow, s.handler, s.concurrency, caller)
    ON CONFLICT ON CONSTRAINT subscription_name_key DO NOTHING
    RETURNING sb.id INTO s.id;
    IF s.id IS NULL THEN
        RAISE EXCEPTION 'subscription "%" already exists', name
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Choose another name, change it with eventbus.alter_subscription(), or eventbus.unsubscribe() it first.';
    END IF;
    -- 'now': the events committed after this snapshot. Otherwise from the
    -- start of the log ('1:1:' sees nothing, so every event is after it).
    INSERT INTO eventbus.cursor (sub_id, win_lo, start_time)
    VALUES (s.id, CASE WHEN start_at = 'now' THEN eventbus._snapshot() ELSE '1:1:' END, t);
    PERFORM eventbus._subscriptions_changed();
END
$$;
CREATE OR REPLACE FUNCTION eventbus.subscribe(
    name            text,
    patterns        text[],
    max_attempts    integer  DEFAULT 5,
    backoff_initial interval DEFAULT '1 second',
    backoff_max     interval DEFAULT '1 hour',
    lease           interval DEFAULT '30 seconds',
    ordered         boolean  DEFAULT false,
    start_at        text     DEFAULT 'now',
    filter          jsonpath DEFAULT NULL,
    max_backlog     bigint   DEFAULT NULL,
    on_overflow     text     DEFAULT 'reject',
    handler         regprocedure DEFAULT NULL,
    concurrency     integer  DEFAULT 1)
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_gate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE OR REPLACE FUNCTION eventbus._alter_subscription(
    caller          regrole,
    name            text,
    patterns        text[],
    max_attempts    integer,
    backoff_initial interval,
    backoff_max     interval,
    lease           interval,
    ordered         boolean,
    filter          jsonpath,
    max_backlog     bigint,
    on_overflow     text,
    reset           text[],
    handler         regprocedure,
    concurrency     integer)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s eventbus.subscription := eventbus._subscription(_alter_subscription.name, caller, 'manage');
    r text;
BEGIN
    -- Concurrent alters apply one after the other, each to the other's result.
    SELECT * INTO s FROM eventbus.subscription sb WHERE sb.id = s.id FOR UPDATE;
    FOREACH r IN ARRAY coalesce(reset, '{}') LOOP
        CASE r
            WHEN 'filter' THEN s.filter := NULL;
            WHEN 'max_backlog' THEN s.max_backlog := NULL;
            WHEN 'max_attempts' THEN s.max_attempts := 5;
            WHEN 'backoff_initial' THEN s.backoff_initial := interval '1 second';
            WHEN 'backoff_max' THEN s.backoff_max := interval '1 hour';
            WHEN 'lease' THEN s.lease := interval '30 seconds';
            WHEN 'ordered' THEN s.ordered := false;
            WHEN 'on_overflow' THEN s.on_overflow := 'reject';
            WHEN 'handler' THEN s.handler := NULL;
            WHEN 'concurrency' THEN s.concurrency := 1;
            ELSE
                RAISE EXCEPTION 'cannot reset "%"', r
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'reset takes option names: filter, max_backlog, max_attempts, backoff_initial, backoff_max, lease, ordered, on_overflow, handler, concurrency.';
        END CASE;
    END LOOP;
    s.patterns := coalesce(patterns, s.patterns);
    s.max_attempts := coalesce(max_attempts, s.max_attempts);
    s.backoff_initial := coalesce(backoff_initial, s.backoff_initial);
    s.backoff_max := coalesce(backoff_max, s.backoff_max);
    s.lease := coalesce(lease, s.lease);
    s.ordered := coalesce(ordered, s.ordered);
    s.filter := coalesce(filter, s.filter);
    s.max_backlog := coalesce(max_backlog, s.max_backlog);
    s.on_overflow := coalesce(on_overflow, s.on_overflow);
    s.handler := coalesce(handler, s.handler);
    s.concurrency := coalesce(concurrency, s.concurrency);
    -- A handler runs on every payload: choosing it is the owner's right
    -- (a manager could otherwise read the payloads through a function of
    -- its own).
    IF s.handler IS DISTINCT FROM (SELECT sb.handler FROM eventbus.subscription sb WHERE sb.id = s.id) THEN
        PERFORM eventbus._check_right(caller, s.name, s.owner, s.consumers, s.managers, 'own');
    END IF;
    PERFORM eventbus._check_subscription(s, caller);
    IF patterns IS NOT NULL THEN
        -- What the subscription may read is the owner's to have, and the caller's.
        PERFORM eventbus._check_subscribe_acl(s.owner, s.patterns);
        PERFORM eventbus._check_subscribe_acl(caller, s.patterns);
    END IF;
    UPDATE eventbus.subscription sb
       SET patterns = s.patterns, max_attempts = s.max_attempts, backoff_initial = s.backoff_initial,
           backoff_max = s.backoff_max, lease = s.lease, ordered = s.ordered, filter = s.filter,
           max_backlog = s.max_backlog, on_overflow = s.on_overflow, handler = s.handler,
           concurrency = s.concurrency
     WHERE sb.id = s.id;
    PERFORM eventbus._subscriptions_changed();
    PERFORM eventbus._wake(s.id);       -- the worker looks at it again (handler, patterns)
END
$$;
CREATE OR REPLACE FUNCTION eventbus.alter_subscription(
    name            text,
    patterns        text[]   DEFAULT NULL,
    max_attempts    integer  DEFAULT NULL,
    backoff_initial interval DEFAULT NULL,
    backoff_max     interval DEFAULT NULL,
    lease           interval DEFAULT NULL,
    ordered         boolean  DEFAULT NULL,
    filter          jsonpath DEFAULT NULL,
    max_backlog     bigint   DEFAULT NULL,
    on_overflow     text     DEFAULT NULL,
    reset           text[]   DEFAULT NULL,
    handler         regprocedure DEFAULT NULL,
    concurrency     integer  DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_gate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE OR REPLACE FUNCTION eventbus._unsubscribe(caller regrole, name text)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub integer := (eventbus._subscription(_unsubscribe.name, caller, 'manage')).id;
BEGIN
    DELETE FROM eventbus.delivery d WHERE d.sub_id = v_sub;
    DELETE FROM eventbus.batch b WHERE b.sub_id = v_sub;
    DELETE FROM eventbus.expiry x WHERE x.sub_id = v_sub;
    DELETE FROM eventbus.cursor c WHERE c.sub_id = v_sub;
    DELETE FROM eventbus.subscription s WHERE s.id = v_sub;
    PERFORM eventbus._subscriptions_changed();
    PERFORM eventbus._stats_drop_sub(v_sub);
END
$$;
CREATE OR REPLACE FUNCTION eventbus.unsubscribe(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_gate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE OR REPLACE FUNCTION eventbus._pause(caller regrole, name text)
RETURNS void
LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE eventbus.subscription s SET paused = true WHERE s.id = (eventbus._subscription(_pause.name, caller, 'manage')).id;
    SELECT eventbus._subscriptions_changed();
$$;
CREATE OR REPLACE FUNCTION eventbus.pause(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_gate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE OR REPLACE FUNCTION eventbus._resume(caller regrole, name text)
RETURNS void
LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE eventbus.subscription s SET paused = false WHERE s.id = (eventbus._subscription(_resume.name, caller, 'manage')).id;
    SELECT eventbus._wake((eventbus._subscription(_resume.name, caller, 'manage')).id);  -- waiting pollers and LISTENers look again
$$;
CREATE OR REPLACE FUNCTION eventbus.resume(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_gate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
-- Rights on a subscription (docs/security.md): its owner, superusers and
-- roles with the owner's privileges grant consume or manage to other roles.
CREATE OR REPLACE FUNCTION eventbus._check_right_name(r text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF r IS NULL OR r NOT IN ('consume', 'manage') THEN
        RAISE EXCEPTION 'invalid subscription right "%"', coalesce(r, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The rights are ''consume'' (poll, ack, nack, extend_lease) and ''manage'' (alter, pause, resume, seek, redrive, purge, unsubscribe).';
    END IF;
END
$$;
CREATE OR REPLACE FUNCTION eventbus._check_grantee(role regrole)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF role IS NULL OR role = 0 THEN
        RAISE EXCEPTION 'a subscription right is granted to a role, not to %', CASE WHEN role IS NULL THEN 'NULL' ELSE 'PUBLIC' END
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name a role, e.g. ''billing_worker''; to let many roles consume, grant the right to a group role they are members of.';
    END IF;
END
$$;
CREATE OR REPLACE FUNCTION eventbus._grant_subscription(caller regrole, name text, role regrole, "right" text)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s eventbus.subscription := eventbus._subscription(_grant_subscription.name, caller, 'own');
BEGIN
    PERFORM eventbus._check_right_name("right");
    PERFORM eventbus._check_grantee(role);
    -- A consumer reads the events: its own subscribe rights must cover them.
    IF "right" = 'consume' THEN
        PERFORM eventbus._check_subscribe_acl(role, s.patterns);
    END IF;
    UPDATE eventbus.subscription sb
       SET consumers = CASE WHEN "right" = 'consume' AND NOT role = ANY (sb.consumers)
                            THEN sb.consumers || role ELSE sb.consumers END,
           managers = CASE WHEN "right" = 'manage' AND NOT role = ANY (sb.managers)
                           THEN sb.managers || role ELSE sb.managers END
     WHERE sb.id = s.id;
    PERFORM eventbus._subscriptions_changed();
END
$$;
CREATE OR REPLACE FUNCTION eventbus.grant_subscription(name text, role regrole, "right" text DEFAULT 'consume')
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_gate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE OR REPLACE FUNCTION eventbus._revoke_subscription(caller regrole, name text, role regrole, "right" text)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s eventbus.subscription := eventbus._subscription(_revoke_subscription.name, caller, 'own');
BEGIN
    IF "right" IS NOT NULL THEN
        PERFORM eventbus._check_right_name("right");
    END IF;
    PERFORM eventbus._check_grantee(role);
    UPDATE eventbus.subscription sb
       SET consumers = CASE WHEN coalesce("right", 'consume') = 'consume'
                            THEN array_remove(sb.consumers, role) ELSE sb.consumers END,
           managers = CASE WHEN coalesce("right", 'manage') = 'manage'
                           THEN array_remove(sb.managers, role) ELSE sb.managers END
     WHERE sb.id = s.id;
    PERFORM eventbus._subscriptions_changed();
END
$$;
CREATE OR REPLACE FUNCTION eventbus.revoke_subscription(name text, role regrole, "right" text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_gate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE OR REPLACE FUNCTION eventbus._alter_subscription_owner(caller regrole, name text, owner regrole)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s eventbus.subscription := eventbus._subscription(_alter_subscription_owner.name, caller, 'own');
BEGIN
    PERFORM eventbus._check_grantee(owner);
    -- As ALTER ... OWNER TO: the caller must be able to become the new owner.
    IF NOT pg_has_role(caller, owner, 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied to give subscription "%" to role %', s.name, owner
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('Role %s is not a member of role %s.', caller, owner),
                  HINT = 'A superuser, or a member of both the current and the new owner, may give a subscription away.';
    END IF;
    UPDATE eventbus.subscription sb SET owner = _alter_subscription_owner.owner WHERE sb.id = s.id;
    PERFORM eventbus._subscriptions_changed();
END
$$;
CREATE OR REPLACE FUNCTION eventbus.alter_subscription_owner(name text, owner regrole)
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_gate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
-- Moves the subscription back (or forward) to a point of the log: from
-- then on, poll hands out again every retained event from that point.
-- Deliveries in flight (leased or waiting) stay as they are: the replay
-- skips their events. Dead letters from the point on are handed out again.
CREATE OR REPLACE FUNCTION eventbus._seek_to(sub_id integer, since timestamptz, from_event bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM eventbus._check_origin();
    UPDATE eventbus.cursor c
       SET win_lo = '1:1:', win_hi = NULL, pos_txid = NULL, pos_id = NULL,
           start_time = since, start_id = from_event
     WHERE c.sub_id = _seek_to.sub_id;
    -- Batches not handed out yet are read again by the replay (or skipped).
    DELETE FROM eventbus.batch b WHERE b.sub_id = _seek_to.sub_id AND NOT b.leased;
    PERFORM eventbus._wake(sub_id);
END
$$;
CREATE OR REPLACE FUNCTION eventbus._seek(caller regrole, name text, since timestamptz)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF since IS NULL OR NOT isfinite(since) THEN
        RAISE EXCEPTION 'cannot seek subscription "%" to "%"', name, since
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass a finite time, e.g. now() - interval ''1 hour''.';
    END IF;
    PERFORM eventbus._seek_to((eventbus._subscription(_seek.name, caller, 'manage')).id, since, NULL);
END
$$;
CREATE OR REPLACE FUNCTION eventbus.seek(name text, since timestamptz)
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_gate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE OR REPLACE FUNCTION eventbus._seek(caller regrole, name text, from_event bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF from_event IS NULL OR from_event < 1 THEN
        RAISE EXCEPTION 'cannot seek subscription "%" to event %', name, coalesce(from_event::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass an event id, e.g. one returned by eventbus.publish.';
    END IF;
    PERFORM eventbus._seek_to((eventbus._subscription(_seek.name, caller, 'manage')).id, NULL, from_event);
END
$$;
CREATE OR REPLACE FUNCTION eventbus.seek(name text, from_event bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_gate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
-- Tells every backend to reload its topic ACL.
CREATE OR REPLACE FUNCTION eventbus._acl_changed()
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_acl_changed'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
-- Whether every topic the inner pattern matches, the outer one matches.
CREATE OR REPLACE FUNCTION eventbus._pattern_covers(outer_pattern text, inner_pattern text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'eventbus_pattern_covers'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
-- Raises 42501 unless each pattern is covered by one of the caller's
-- subscribe patterns (when subscribing is restricted).
CREATE OR REPLACE FUNCTION eventbus._check_subscribe_acl(caller regrole, patterns text[])
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_check_subscribe_acl'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
-- Adds or removes a row; a grant of an existing row or a revoke of a
-- missing one changes nothing.
CREATE OR REPLACE FUNCTION eventbus._set_acl(role regrole, action text, pattern text, present boolean)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF role IS NULL OR role = 0 THEN
        RAISE EXCEPTION 'a topic right is granted to a role, not to %', CASE WHEN role IS NULL THEN 'NULL' ELSE 'PUBLIC' END
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name a role, e.g. ''orders_app''; with no row of an action, everyone may do it.';
    END IF;
    IF pattern IS NULL OR NOT eventbus.is_valid_pattern(pattern) THEN
        PERFORM eventbus.topic_matches('x', pattern);   -- raises 22023 with the reason
        RAISE EXCEPTION 'pattern must not be NULL'
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Pass e.g. ''orders.#''.';
    END IF;
    IF present THEN
        INSERT INTO eventbus.topic_acl AS a (role, action, pattern)
        VALUES (_set_acl.role, _set_acl.action, _set_acl.pattern)
        ON CONFLICT DO NOTHING;
    ELSE
        DELETE FROM eventbus.topic_acl a
         WHERE a.role = _set_acl.role AND a.action = _set_acl.action AND a.pattern = _set_acl.pattern;
    END IF;
    PERFORM eventbus._acl_changed();
END
$$;
CREATE OR REPLACE FUNCTION eventbus.grant_publish(role regrole, pattern text)
RETURNS void
LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT eventbus._set_acl(role, 'publish', pattern, true) $$;
CREATE OR REPLACE FUNCTION eventbus.revoke_publish(role regrole, pattern text)
RETURNS void
LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT eventbus._set_acl(role, 'publish', pattern, false) $$;
CREATE OR REPLACE FUNCTION eventbus.grant_subscribe(role regrole, pattern text)
RETURNS void
LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT eventbus._set_acl(role, 'subscribe', pattern, true) $$;
CREATE OR REPLACE FUNCTION eventbus.revoke_subscribe(role regrole, pattern text)
RETURNS void
LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT eventbus._set_acl(role, 'subscribe', pattern, false) $$;
-- eventbus install script, part 40: consuming.
--
-- poll, ack, nack and extend_lease are C (src/consume.c): poll hands out
-- due deliveries first (retries, delays, expired leases, the heads of
-- ordered keys), then claims batches cut from the log in commit order
-- (src/batch.c, src/window.c). See docs/consuming.md.
--
-- Locking: batches and due deliveries are claimed with the equivalent of
-- FOR UPDATE SKIP LOCKED, so no poller ever waits for another; only the
-- cutter (the background worker, or poll without it) holds a
-- subscription's cursor row, and never for longer than its own
-- transaction.

-- The events of the log a subscription has not cut into batches yet, in
-- commit order, read in C with the snapshot formula of src/window.c (the
-- one place it is written): matching one of its topics and its filter,
-- after its position, not rejected by a schema; expired ones included,
-- until "lim" not expired ones (NULL: all); from one chunk table only when
-- "chunk" is given; up to the current snapshot, or with "restored" every
-- stored event (the adoption of restored data, whose xids come from
-- another cluster). For the backlog counts, the stats views, chunk pins
-- and that adoption (src/cut.c).
CREATE OR REPLACE FUNCTION eventbus._unread(sub_id integer, lim bigint DEFAULT NULL, chunk regclass DEFAULT NULL,
                                 restored boolean DEFAULT false)
RETURNS TABLE (event_id bigint, txid xid8, published_at timestamptz, expires_at timestamptz,
               key text, deliver_at timestamptz)
AS 'MODULE_PATHNAME', 'eventbus_unread'
LANGUAGE C STABLE PARALLEL UNSAFE;
-- A subscription's backlog: events waiting for a retry or a delay, the
-- open events of its batches not handed out yet, plus the matching events
-- in the log it has not cut yet (after its filter, not expired), counted
-- up to "lim". Publish (on_overflow 'reject') and the cut (on_overflow
-- 'drop_oldest') compare it with max_backlog.
CREATE OR REPLACE FUNCTION eventbus._backlog(sub_id integer, lim bigint)
RETURNS bigint
LANGUAGE plpgsql STABLE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s eventbus.subscription;
    n bigint;
BEGIN
    SELECT * INTO s FROM eventbus.subscription sb WHERE sb.id = _backlog.sub_id;
    IF s.id IS NULL THEN
        RETURN 0;
    END IF;
    SELECT count(*) INTO n
      FROM (SELECT 1 FROM eventbus.delivery d
             WHERE d.sub_id = _backlog.sub_id AND d.state = 'waiting' LIMIT lim) q;
    n := n + coalesce((SELECT sum(cardinality(b.ids) - b.ndone) FROM eventbus.batch b
                        WHERE b.sub_id = _backlog.sub_id AND NOT b.leased), 0);
    IF n >= lim THEN
        RETURN n;
    END IF;
    RETURN n + (SELECT count(*) FROM eventbus._unread(s.id, lim - n) u
                 WHERE u.expires_at IS NULL OR u.expires_at > clock_timestamp());
END
$$;
CREATE OR REPLACE FUNCTION eventbus.poll(
    subscription text,
    max_events   integer  DEFAULT 100,
    lease        interval DEFAULT NULL,
    wait         interval DEFAULT '0',
    ack_lease    bigint   DEFAULT NULL)
RETURNS TABLE (event_id bigint, topic text, key text, payload jsonb, headers jsonb,
               published_at timestamptz, attempt integer, lease_until timestamptz,
               lease_token bigint)
AS 'MODULE_PATHNAME', 'eventbus_poll'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
CREATE OR REPLACE FUNCTION eventbus.ack(subscription text, event_ids bigint[], lease_token bigint DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'eventbus_ack'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
CREATE OR REPLACE FUNCTION eventbus.nack(subscription text, event_id bigint, error text DEFAULT NULL,
                              retry_in interval DEFAULT NULL, lease_token bigint DEFAULT NULL,
                              dead boolean DEFAULT false)
RETURNS text
AS 'MODULE_PATHNAME', 'eventbus_nack'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
CREATE OR REPLACE FUNCTION eventbus.extend_lease(subscription text, event_ids bigint[], lease interval,
                                      lease_token bigint DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'eventbus_extend_lease'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
CREATE OR REPLACE FUNCTION eventbus._redrive(caller regrole, subscription text, event_ids bigint[])
RETURNS integer
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub integer := (eventbus._subscription(subscription, caller, 'manage')).id;
    n integer;
BEGIN
    UPDATE eventbus.delivery d
       SET state = 'waiting', attempt = 0, available_at = clock_timestamp(),
           reason = 'redriven', dead_at = NULL,      -- marks its next hand-out as a retry
           ord = CASE WHEN d.key IS NOT NULL THEN nextval('eventbus.delivery_ord_seq') END
     WHERE d.sub_id = v_sub AND d.state = 'dead'
       AND (event_ids IS NULL OR d.event_id = ANY (event_ids));
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM eventbus._wake(v_sub);
        PERFORM eventbus._stats_sub(v_sub, redriven => n);
    END IF;
    RETURN n;
END
$$;
CREATE OR REPLACE FUNCTION eventbus.redrive(subscription text, event_ids bigint[] DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'eventbus_gate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE OR REPLACE FUNCTION eventbus._purge_dead_letters(caller regrole, subscription text, older_than interval)
RETURNS integer
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub integer := (eventbus._subscription(subscription, caller, 'manage')).id;
    n integer;
BEGIN
    IF older_than < interval '0' THEN
        RAISE EXCEPTION 'older_than must not be negative: "%"', older_than
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass e.g. interval ''7 days'', or NULL for all.';
    END IF;
    DELETE FROM eventbus.delivery d
     WHERE d.sub_id = v_sub AND d.state = 'dead'
       AND (older_than IS NULL OR d.dead_at <= clock_timestamp() - older_than);
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM eventbus._stats_sub(v_sub, discarded => n);
    RETURN n;
END
$$;
CREATE OR REPLACE FUNCTION eventbus.purge_dead_letters(subscription text, older_than interval DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'eventbus_gate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE OR REPLACE FUNCTION eventbus._adopt_restored()
RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cur      bigint := (SELECT system_identifier FROM pg_control_system());
    s        record;
BEGIN
    -- One adopter at a time; the others find the work done.
    LOCK TABLE eventbus.origin IN EXCLUSIVE MODE;
    -- Restored chunks were never sealed here: from now on maintenance may
    -- reclaim them, once no subscription needs them (sql/60_workers.sql).
    UPDATE eventbus.chunk ch SET sealed_at = now()
     WHERE NOT ch.is_current AND ch.sealed_at IS NULL;
    -- Restored chunks may hold events of every restored topic: they count
    -- as of the current generation until they are truncated, and the
    -- restored topics as not retired (src/topicdict.c).
    UPDATE eventbus.chunk ch SET generation = (SELECT cc.generation FROM eventbus.chunk cc WHERE cc.is_current)
     WHERE ch.generation IS NULL;
    UPDATE eventbus.topic t SET used_gen = 0, retired_gen = NULL
     WHERE t.used_gen <> 0 OR t.retired_gen IS NOT NULL;
    IF NOT EXISTS (SELECT 1 FROM eventbus.origin o WHERE o.system_identifier <> cur) THEN
        -- Restored into this same cluster: the xids are ours; one row is enough.
        IF (SELECT count(*) FROM eventbus.origin) > 1 THEN
            DELETE FROM eventbus.origin;
            INSERT INTO eventbus.origin VALUES (cur);
        END IF;
        RETURN false;
    END IF;

    -- Batches (ready or leased): their open events become due deliveries.
    INSERT INTO eventbus.delivery (sub_id, event_id, txid, state, attempt, available_at)
    SELECT b.sub_id, ev.id, ev.txid, 'waiting', b.attempt, now()
      FROM eventbus.batch b
      JOIN eventbus.event_log ev ON ev.txid >= b.first_txid AND ev.txid <= b.last_txid
                                AND ev.id = ANY (b.ids)
     WHERE b.done IS NULL OR get_bit(b.done, array_position(b.ids, ev.id) - 1) = 0
    ON CONFLICT DO NOTHING;
    DELETE FROM eventbus.batch;

    -- Snapshots and xids still agree with each other here: both come from
    -- the dumped cluster, so each cursor says exactly what is undelivered
    -- (eventbus._unread reads the log as a cut would, in commit order, so
    -- that keys of ordered subscriptions queue in it).
    FOR s IN SELECT sb.id, sb.ordered FROM eventbus.subscription sb LOOP
        INSERT INTO eventbus.delivery (sub_id, event_id, txid, state, attempt, available_at, key, ord)
        SELECT s.id, q.event_id, q.txid, 'waiting', 0, coalesce(q.deliver_at, now()),
               CASE WHEN s.ordered THEN q.key END,
               CASE WHEN s.ordered AND q.key IS NOT NULL THEN nextval('eventbus.delivery_ord_seq') END
          FROM eventbus._unread(s.id, restored => true) q
        ON CONFLICT DO NOTHING;
    END LOOP;

    -- Everything restored counts as committed before any snapshot here.
    UPDATE eventbus.event_log SET txid = '2';
    UPDATE eventbus.delivery SET txid = '2';
    UPDATE eventbus.cursor
       SET win_lo = '3:3:', win_hi = NULL, pos_txid = NULL, pos_id = NULL,
           start_time = NULL, start_id = NULL;
    DELETE FROM eventbus.origin;
    INSERT INTO eventbus.origin VALUES (cur);
    RETURN true;
END
$$;
CREATE OR REPLACE FUNCTION eventbus._check_origin()
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_check_origin'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
-- eventbus install script, part 60: background workers and maintenance.
--
-- The background worker (src/worker.c) ticks after publishing commits (and
-- at least every eventbus.tick_interval): it notifies, with at most one
-- NOTIFY each, the subscriptions that have something new (src/tick.c). It
-- calls _maintain every eventbus.maintenance_interval: the event log moves on to
-- the next chunk and chunks nobody needs are truncated. run_maintenance()
-- does one round of both by hand (e.g. from pg_cron, without the worker).
-- See docs/workers.md and docs/notifications.md.

CREATE OR REPLACE FUNCTION eventbus._worker_start()
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_worker_start'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE OR REPLACE FUNCTION eventbus._chunks_changed()
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_chunks_changed'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
-- One tick: what became pollable since the previous tick (snapshot prev,
-- time prev_at), and one NOTIFY per subscription concerned:
--   * events committed between the two snapshots (prev and snap), on
--     topics the subscription's patterns match (its filter is not applied:
--     a notification means "poll now", and the poll may find nothing).
--     The worker reads the topics of those events in C (src/window.c) and
--     passes them: "topics";
--   * deliveries whose retry, delay or lease ended since prev_at, and
--     batches whose lease ended since prev_at;
--   * subscriptions named by committed transactions (kicked): a nack with
--     an immediate retry, a redrive, resume, seek, an ack of an ordered
--     event, a poll that stopped at max_events.
-- The first tick of a worker (prev NULL) notifies every subscription.
-- The payload of each notification is the subscription's name.
CREATE OR REPLACE FUNCTION eventbus._notify_needed(sub_id integer)
RETURNS boolean
AS 'MODULE_PATHNAME', 'eventbus_notify_needed'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
-- The subscriptions that still need an event stored in a chunk: one of
-- their deliveries (leased, waiting or dead) refers to it, one of their
-- batches may hold one of its events (the batch's xid range meets the
-- chunk's), or their position is before one of its events on a topic
-- they match.
CREATE OR REPLACE FUNCTION eventbus._chunk_pins(chunk regclass)
RETURNS text[]
LANGUAGE plpgsql STABLE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_pins text[];
BEGIN
    -- Only a chunk of the log: the query below reads it as one.
    IF NOT EXISTS (SELECT 1 FROM eventbus.chunk c
                    WHERE to_regclass(format('eventbus.%I', c.relname)) = chunk) THEN
        RAISE EXCEPTION '% is not a chunk of the eventbus log', chunk
            USING ERRCODE = 'invalid_parameter_value', HINT = 'eventbus.chunks lists them.';
    END IF;
    EXECUTE format($q$
        SELECT array_agg(s.name ORDER BY s.name)
          FROM eventbus.subscription s JOIN eventbus.cursor cu ON cu.sub_id = s.id
         WHERE EXISTS (SELECT 1 FROM eventbus.delivery d JOIN %1$s ev
                                  ON ev.txid = d.txid AND ev.id = d.event_id
                        WHERE d.sub_id = s.id)
            OR EXISTS (SELECT 1 FROM eventbus.batch b
                        WHERE b.sub_id = s.id
                          AND EXISTS (SELECT 1 FROM %1$s ev
                                       WHERE ev.txid >= b.first_txid AND ev.txid <= b.last_txid))
            OR EXISTS (SELECT 1 FROM eventbus._unread(s.id, 1, %1$L::regclass))$q$, chunk)
      INTO v_pins;
    RETURN coalesce(v_pins, '{}');
END
$$;
-- One step of the topic dictionary's upkeep (src/topicdict.c says why it
-- is safe): fold the uses publishers recorded into used_gen, retire topics
-- used in no chunk generation still stored, and drop retired ones that no
-- stored chunk can hold any more (their counts go to the topic's new id).
-- At most so many rows each, so that a step stays short; returns whether
-- more is left. Holds eventbus.chunk's lock (taken without waiting), so
-- that no rotation changes the generations meanwhile; does nothing while
-- restored data is not adopted.
CREATE OR REPLACE FUNCTION eventbus._maintain_topics(OUT more boolean)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_min_gen bigint;
    v_cur_gen bigint;
    v_from    integer[];
    v_to      integer[];
    v_n       bigint;
BEGIN
    more := false;
    BEGIN
        LOCK TABLE eventbus.chunk IN EXCLUSIVE MODE NOWAIT;
    EXCEPTION WHEN lock_not_available THEN
        more := true;                       -- a maintenance round is running
        RETURN;
    END;
    IF (SELECT count(*) <> 1 OR bool_or(o.system_identifier <> (SELECT system_identifier FROM pg_control_system()))
          FROM eventbus.origin o) THEN
        RETURN;                             -- restored data not adopted yet
    END IF;
    SELECT min(ch.generation), max(ch.generation) INTO v_min_gen, v_cur_gen
      FROM eventbus.chunk ch WHERE ch.generation IS NOT NULL;
    IF v_min_gen IS NULL THEN
        RETURN;
    END IF;
    -- EXECUTE: planned each time for the dictionary's current size (a
    -- plan cached while it was small would scan it once per row).
    EXECUTE $q$
        WITH u AS (DELETE FROM eventbus.topic_use x
                    WHERE x.ctid = ANY (ARRAY(SELECT y.ctid FROM eventbus.topic_use y LIMIT 20000))
                   RETURNING x.topic_id, x.generation),
             f AS (UPDATE eventbus.topic t SET used_gen = q.g
                     FROM (SELECT u.topic_id, max(u.generation) AS g FROM u GROUP BY u.topic_id) q
                    WHERE t.id = q.topic_id AND t.used_gen < q.g)
        SELECT count(*) FROM u$q$ INTO v_n;
    more := more OR v_n >= 20000;
    EXECUTE $q$
        UPDATE eventbus.topic t SET retired_gen = $1
         WHERE t.id = ANY (ARRAY(SELECT r.id FROM eventbus.topic r
                                  WHERE r.retired_gen IS NULL AND r.used_gen < $2
                                  LIMIT 2000))$q$ USING v_cur_gen, v_min_gen;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    more := more OR v_n >= 2000;
    EXECUTE $q$
        WITH d AS (DELETE FROM eventbus.topic t
                    WHERE t.id = ANY (ARRAY(SELECT r.id FROM eventbus.topic r
                                             WHERE r.retired_gen < $1
                                             LIMIT 2000))
                   RETURNING t.id, t.topic)
        -- The topic alone in WHERE: found through its index, never by a
        -- scan of another index once per row.
        SELECT array_agg(d.id),
               array_agg((SELECT max(CASE WHEN l.retired_gen IS NULL OR l.retired_gen >= $1 THEN l.id END)
                            FROM eventbus.topic l
                           WHERE l.topic = d.topic))
          FROM d$q$ INTO v_from, v_to USING v_min_gen;
    more := more OR coalesce(cardinality(v_from), 0) >= 2000;
    PERFORM eventbus._stats_move_topics(v_from, v_to) WHERE v_from IS NOT NULL;
END
$$;
COMMENT ON FUNCTION eventbus._maintain_topics() IS
    'eventbus (internal): one bounded step of dropping unused topics from the dictionary';

-- One round of chunk maintenance:
--   1. reclaim: a chunk that is not current, sealed more than
--      eventbus.retention ago and needed by no subscription is truncated.
--      It is checked under a SHARE lock taken without waiting (NOWAIT):
--      holding it proves that no transaction that wrote to it is still
--      open, and readers go on; only the TRUNCATE takes (again without
--      waiting) the ACCESS EXCLUSIVE lock.
--   2. rotate: when the current chunk holds events and is older than
--      eventbus.chunk_interval or larger than eventbus.chunk_size, and the
--      next chunk of the ring is empty, publishing moves on to it.
-- Nothing is reclaimed while restored data is not adopted yet (eventbus.
-- origin not settled: a restore may still be loading subscriptions), nor a
-- chunk that was never sealed here (restored rows; _adopt_restored seals).
-- READ COMMITTED only: each check must see what committed before its lock.
-- Returns what it did. Two rounds never run at once (the second skips).
CREATE OR REPLACE FUNCTION eventbus._maintain(OUT reclaimed integer, OUT rotated boolean)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_retention interval := current_setting('eventbus.retention')::interval;
    v_interval  interval := current_setting('eventbus.chunk_interval')::interval;
    v_size      bigint   := pg_size_bytes(current_setting('eventbus.chunk_size'));
    v_now       timestamptz := clock_timestamp();
    v_rel       regclass;
    v_any       boolean;
    c           eventbus.chunk;
    n           eventbus.chunk;
BEGIN
    reclaimed := 0;
    rotated := false;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'eventbus maintenance must run in a READ COMMITTED transaction'
            USING ERRCODE = 'invalid_transaction_state',
                  HINT = 'Run SELECT eventbus.run_maintenance() on its own, or with SET TRANSACTION ISOLATION LEVEL READ COMMITTED.';
    END IF;
    -- Counters of subscriptions dropped meanwhile (src/stats.c).
    PERFORM eventbus._stats_prune(ARRAY(SELECT s.id FROM eventbus.subscription s));
    -- Expiry counts into the cursors whose row is free (none is waited for).
    WITH free AS (SELECT cu.sub_id FROM eventbus.cursor cu
                   WHERE cu.sub_id IN (SELECT DISTINCT x.sub_id FROM eventbus.expiry x)
                     FOR UPDATE SKIP LOCKED),
         folded AS (DELETE FROM eventbus.expiry x USING free f WHERE x.sub_id = f.sub_id
                    RETURNING x.sub_id, x.n)
    UPDATE eventbus.cursor cu SET expired = cu.expired + q.n
      FROM (SELECT folded.sub_id, sum(folded.n) AS n FROM folded GROUP BY folded.sub_id) q
     WHERE cu.sub_id = q.sub_id;
    BEGIN
        LOCK TABLE eventbus.chunk IN EXCLUSIVE MODE NOWAIT;
    EXCEPTION WHEN lock_not_available THEN
        RETURN;                             -- another round is running
    END;
    IF (SELECT count(*) <> 1 OR bool_or(o.system_identifier <> (SELECT system_identifier FROM pg_control_system()))
          FROM eventbus.origin o) THEN
        RETURN;                             -- restored data not adopted yet
    END IF;

    FOR c IN SELECT * FROM eventbus.chunk ch
              WHERE NOT ch.is_current AND ch.sealed_at IS NOT NULL
                AND ch.sealed_at <= v_now - v_retention
              ORDER BY ch.chunk_no LOOP
        v_rel := format('eventbus.%I', c.relname)::regclass;
        BEGIN
            EXECUTE format('LOCK TABLE %s IN SHARE MODE NOWAIT', v_rel);
        EXCEPTION WHEN lock_not_available THEN
            CONTINUE;                       -- a writer is still open: next round
        END;
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s)', v_rel) INTO v_any;
        IF NOT v_any THEN
            -- Empty, and no writer open (the lock): it holds no generation.
            UPDATE eventbus.chunk ch SET generation = NULL
             WHERE ch.chunk_no = c.chunk_no AND ch.generation IS NOT NULL;
            CONTINUE;
        END IF;
        CONTINUE WHEN cardinality(eventbus._chunk_pins(v_rel)) > 0;
        BEGIN
            EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE NOWAIT', v_rel);
        EXCEPTION WHEN lock_not_available THEN
            CONTINUE;                       -- being read right now: next round
        END;
        EXECUTE format('TRUNCATE %s', v_rel);
        UPDATE eventbus.chunk ch SET reclaimed_at = v_now, generation = NULL WHERE ch.chunk_no = c.chunk_no;
        reclaimed := reclaimed + 1;
    END LOOP;

    -- One step of the topic dictionary's upkeep (the worker takes the
    -- next ones between its ticks). Before the rotation, whose lock on
    -- the next chunk holds publishers until the commit.
    PERFORM eventbus._maintain_topics();

    SELECT * INTO c FROM eventbus.chunk ch WHERE ch.is_current;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM eventbus.%I)', c.relname) INTO v_any;
    IF v_any AND (c.opened_at <= v_now - v_interval
                  OR pg_relation_size(format('eventbus.%I', c.relname)::regclass) >= v_size) THEN
        SELECT * INTO n FROM eventbus.chunk ch WHERE ch.chunk_no = (c.chunk_no + 1) % 3;
        -- Empty, with no writer still open (a long transaction of its last
        -- turn would otherwise add events of that turn to the new one).
        BEGIN
            EXECUTE format('LOCK TABLE eventbus.%I IN SHARE MODE NOWAIT', n.relname);
            EXECUTE format('SELECT NOT EXISTS (SELECT 1 FROM eventbus.%I)', n.relname) INTO v_any;
        EXCEPTION WHEN lock_not_available THEN
            v_any := false;                 -- next round
        END;
        IF v_any THEN
            UPDATE eventbus.chunk ch SET is_current = false, sealed_at = v_now WHERE ch.chunk_no = c.chunk_no;
            UPDATE eventbus.chunk ch SET is_current = true, opened_at = v_now, sealed_at = NULL,
                                         generation = coalesce(c.generation, 0) + 1
             WHERE ch.chunk_no = n.chunk_no;
            PERFORM eventbus._chunks_changed();
            rotated := true;
        END IF;
    END IF;
END
$$;
-- What the background worker does, by hand: one round of chunk maintenance,
-- then one notification to every subscription that is not paused (without
-- the worker, nothing else tells LISTENing consumers about retries and
-- delays). Schedule it with pg_cron when the library is not preloaded.
CREATE OR REPLACE FUNCTION eventbus.run_maintenance(OUT reclaimed integer, OUT rotated boolean,
                                         OUT notified integer)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    PERFORM eventbus._check_origin();
    SELECT m.reclaimed, m.rotated INTO reclaimed, rotated FROM eventbus._maintain() m;
    notified := 0;
    FOR r IN SELECT s.id, s.name FROM eventbus.subscription s WHERE NOT s.paused ORDER BY s.name LOOP
        IF eventbus._notify_needed(r.id) THEN
            PERFORM pg_notify('eventbus_' || r.name, r.name);
            notified := notified + 1;
        END IF;
    END LOOP;
END
$$;
-- Recurring events through pg_cron: the job publishes the payload on the
-- topic in this database, as the role that scheduled it.
CREATE OR REPLACE FUNCTION eventbus.schedule(job text, cron text, topic text, payload jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_cmd text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'eventbus.schedule needs the extension pg_cron in this database'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('pg_cron runs jobs of one database (cron.database_name, now %L): add pg_cron to shared_preload_libraries, set cron.database_name = %L and run CREATE EXTENSION pg_cron here.',
                                -- pg_settings, not current_setting(): a role that may not read it gets NULL, not 42501
                                (SELECT s.setting FROM pg_settings s WHERE s.name = 'cron.database_name'),
                                current_database());
    END IF;
    IF job IS NULL OR job = '' OR cron IS NULL OR payload IS NULL THEN
        RAISE EXCEPTION 'job, cron and payload must not be NULL or empty'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass e.g. eventbus.schedule(''nightly'', ''0 3 * * *'', ''reports.nightly'', ''{}'').';
    END IF;
    IF topic IS NULL OR NOT eventbus.is_valid_topic(topic) THEN
        RAISE EXCEPTION 'invalid topic "%"', coalesce(topic, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A topic is dot-separated words, e.g. ''reports.nightly''.';
    END IF;
    v_cmd := format('SELECT eventbus.publish(%L, %L::jsonb)', topic, payload);
    RETURN cron.schedule(job, cron, v_cmd);
END
$$;
CREATE OR REPLACE FUNCTION eventbus.unschedule(job text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'eventbus.unschedule needs the extension pg_cron'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Jobs are kept by pg_cron; without it there is nothing to unschedule.';
    END IF;
    -- Only the caller's jobs that eventbus.schedule made: the others are
    -- pg_cron's business (cron.unschedule).
    IF NOT EXISTS (SELECT 1 FROM cron.job j
                    WHERE j.jobname = unschedule.job AND j.username = current_user
                      AND j.command LIKE 'SELECT eventbus.publish(%') THEN
        RAISE EXCEPTION 'no eventbus job "%" of role %', job, current_user
            USING ERRCODE = 'undefined_object',
                  HINT = 'eventbus.unschedule removes the jobs eventbus.schedule made; remove other pg_cron jobs with cron.unschedule().';
    END IF;
    RETURN cron.unschedule(job);
END
$$;
CREATE OR REPLACE FUNCTION eventbus.validate(schema jsonb, document jsonb)
RETURNS boolean
AS 'MODULE_PATHNAME', 'eventbus_validate'
LANGUAGE C STRICT STABLE PARALLEL SAFE;
CREATE OR REPLACE FUNCTION eventbus.validation_errors(schema jsonb, document jsonb)
RETURNS TABLE (path text, keyword text, message text)
AS 'MODULE_PATHNAME', 'eventbus_validation_errors'
LANGUAGE C STRICT STABLE PARALLEL SAFE ROWS 10;
CREATE OR REPLACE FUNCTION eventbus._schemas_changed()
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_schemas_changed'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
-- A schema whose relative "$ref"s resolve against uri: the schema with
-- "$id": uri when it has no "$id" of its own.
CREATE OR REPLACE FUNCTION eventbus._with_base(schema jsonb, uri text)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN uri IS NOT NULL AND jsonb_typeof(schema) = 'object' AND NOT schema ? '$id'
                THEN schema || jsonb_build_object('$id', uri) ELSE schema END
$$;
-- Raises 42501 unless the caller may replace or drop a registered schema:
-- its owner, a role with the owner's privileges, or a superuser.
CREATE OR REPLACE FUNCTION eventbus._check_schema_owner(caller regrole, owner regrole, what text)
RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF owner IS NOT NULL AND NOT pg_has_role(caller, owner, 'USAGE') THEN
        RAISE EXCEPTION 'permission denied for the schema of "%"', what
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('It was registered by role %s; role %s may not replace or drop it.', owner, caller),
                  HINT = format('Ask %s or a superuser.', owner);
    END IF;
END
$$;
-- Registers (or replaces) the schema of a topic pattern, and/or a schema
-- other schemas refer to by URI: "uri" if given, else the schema's "$id".
CREATE OR REPLACE FUNCTION eventbus._register_schema(caller regrole, pattern text, schema jsonb, on_invalid text, uri text)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_uri text := coalesce(uri, CASE WHEN jsonb_typeof(schema) = 'object' THEN schema->>'$id' END);
    v_owner regrole;
BEGIN
    IF schema IS NULL THEN
        RAISE EXCEPTION 'schema must not be NULL'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass a JSON Schema, e.g. ''{"type": "object"}''.';
    END IF;
    IF pattern IS NULL AND v_uri IS NULL THEN
        RAISE EXCEPTION 'a schema needs a topic pattern or a URI'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass a pattern such as ''orders.*.created'', or uri => ''https://example.com/order.json'' for a schema other schemas refer to.';
    END IF;
    IF pattern IS NOT NULL THEN
        PERFORM eventbus.topic_matches('x', pattern);      -- raises 22023 for an invalid pattern
    END IF;
    IF on_invalid IS NULL OR on_invalid NOT IN ('reject', 'dead_letter') THEN
        RAISE EXCEPTION 'invalid on_invalid "%"', on_invalid
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass ''reject'' (publish fails with 23514) or ''dead_letter'' (the event becomes a dead letter of every subscription it reaches).';
    END IF;
    IF EXISTS (SELECT 1 FROM eventbus.schema s
                WHERE s.uri = v_uri
                  AND (_register_schema.pattern IS NULL AND s.pattern IS NOT NULL
                       OR _register_schema.pattern IS NOT NULL
                          AND s.pattern IS DISTINCT FROM _register_schema.pattern)) THEN
        RAISE EXCEPTION 'a schema with URI "%" is already registered', v_uri
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Drop it first with eventbus.drop_schema(), or give this one another "$id" or uri.';
    END IF;
    -- Compiles it: an invalid schema (or a $ref to nothing) raises 22023 here.
    -- Its relative references resolve against its URI, as they will when
    -- another schema refers to it.
    PERFORM eventbus.validate(eventbus._with_base(schema, v_uri), 'null');
    SELECT s.owner INTO v_owner FROM eventbus.schema s
     WHERE CASE WHEN _register_schema.pattern IS NULL THEN s.uri = v_uri AND s.pattern IS NULL
                ELSE s.pattern = _register_schema.pattern END;
    PERFORM eventbus._check_schema_owner(caller, v_owner, coalesce(pattern, v_uri));
    IF pattern IS NULL THEN
        INSERT INTO eventbus.schema AS s (pattern, uri, schema, on_invalid, owner)
        VALUES (NULL, v_uri, _register_schema.schema, _register_schema.on_invalid, caller)
        ON CONFLICT ON CONSTRAINT schema_uri_key DO UPDATE
           SET schema = excluded.schema, on_invalid = excluded.on_invalid, created_at = now();
    ELSE
        INSERT INTO eventbus.schema AS s (pattern, uri, schema, on_invalid, owner)
        VALUES (_register_schema.pattern, v_uri, _register_schema.schema, _register_schema.on_invalid, caller)
        ON CONFLICT ON CONSTRAINT schema_pattern_key DO UPDATE
           SET uri = excluded.uri, schema = excluded.schema, on_invalid = excluded.on_invalid,
               created_at = now();
    END IF;
    PERFORM eventbus._schemas_changed();
END
$$;
CREATE OR REPLACE FUNCTION eventbus.register_schema(pattern text, schema jsonb,
                                         on_invalid text DEFAULT 'reject',
                                         uri text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_gate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
-- Drops the schema of a pattern, or (given no such pattern) the one with
-- that URI.
CREATE OR REPLACE FUNCTION eventbus._drop_schema(caller regrole, pattern text)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_owner regrole;
BEGIN
    SELECT s.owner INTO v_owner FROM eventbus.schema s
     WHERE s.pattern = _drop_schema.pattern
        OR s.pattern IS NULL AND s.uri = _drop_schema.pattern
           AND NOT EXISTS (SELECT 1 FROM eventbus.schema p WHERE p.pattern = _drop_schema.pattern);
    PERFORM eventbus._check_schema_owner(caller, v_owner, pattern);
    DELETE FROM eventbus.schema s WHERE s.pattern = _drop_schema.pattern;
    IF NOT FOUND THEN
        DELETE FROM eventbus.schema s WHERE s.pattern IS NULL AND s.uri = _drop_schema.pattern;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no schema is registered for "%"', pattern
            USING ERRCODE = 'undefined_object',
                  HINT = 'eventbus.schemas lists the registered schemas.';
    END IF;
    PERFORM eventbus._schemas_changed();
END
$$;
CREATE OR REPLACE FUNCTION eventbus.drop_schema(pattern text)
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_gate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
-- An event that failed a schema with on_invalid 'dead_letter' becomes a
-- dead letter (reason 'schema') of every subscription it would have reached
-- (patterns and filter). Called by publish, in its transaction.
CREATE OR REPLACE FUNCTION eventbus._schema_dead_letter(event_id bigint, topic text, payload jsonb, error text)
RETURNS void
LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH dead AS (
        INSERT INTO eventbus.delivery (sub_id, event_id, txid, state, attempt, available_at,
                                       last_error, reason, dead_at)
        SELECT s.id, event_id, pg_current_xact_id(), 'dead', 0, now(), error, 'schema', now()
          FROM eventbus.subscription s
         WHERE EXISTS (SELECT 1 FROM unnest(s.patterns) p WHERE eventbus.topic_matches(topic, p))
           AND (s.filter IS NULL OR coalesce(payload @@ s.filter, false))
        RETURNING sub_id)
    SELECT eventbus._stats_sub(dead.sub_id, "read" => 1, dead => 1) FROM dead;
    SELECT eventbus._wake();
$$;
-- eventbus install script, part 80: statistics.
--
-- Counters and latency histograms live in shared memory (src/stats.c),
-- counted at commit, never written to a table. Gauges (backlog, in flight,
-- ages) are read from the tables when a view is queried. Without the
-- library in shared_preload_libraries the counter columns are NULL and the
-- gauges still work. See docs/observability.md.

CREATE OR REPLACE FUNCTION eventbus._stats_sub(
    sub_id    integer,
    "read"    bigint DEFAULT 0,
    delivered bigint DEFAULT 0,
    acked     bigint DEFAULT 0,
    nacked    bigint DEFAULT 0,
    retried   bigint DEFAULT 0,
    dead      bigint DEFAULT 0,
    expired   bigint DEFAULT 0,
    redriven  bigint DEFAULT 0,
    discarded bigint DEFAULT 0,
    first_at  timestamptz[] DEFAULT NULL,
    leased_at timestamptz[] DEFAULT NULL,
    polled    boolean DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_stats_sub'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE OR REPLACE FUNCTION eventbus._stats_drop_sub(sub_id integer)
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_stats_drop_sub'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE OR REPLACE FUNCTION eventbus._stats_prune(live integer[])
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_stats_prune'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE OR REPLACE FUNCTION eventbus._stats_move_topics("from" integer[], "to" integer[])
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_stats_move_topics'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE OR REPLACE FUNCTION eventbus._stats_topics(
    OUT topic_id integer, OUT published bigint, OUT bytes bigint, OUT last_published_at timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'eventbus_stats_topics'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
CREATE OR REPLACE FUNCTION eventbus._stats_subscriptions(
    OUT sub_id integer, OUT "read" bigint, OUT delivered bigint, OUT acked bigint,
    OUT nacked bigint, OUT retried bigint, OUT dead bigint, OUT expired bigint,
    OUT redriven bigint, OUT discarded bigint, OUT last_poll_at timestamptz,
    OUT delivery_buckets bigint[], OUT delivery_sum double precision,
    OUT ack_buckets bigint[], OUT ack_sum double precision)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'eventbus_stats_subscriptions'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
CREATE OR REPLACE FUNCTION eventbus._stats_info(
    OUT enabled boolean, OUT stats_reset timestamptz, OUT dropped bigint,
    OUT buckets double precision[])
RETURNS record
AS 'MODULE_PATHNAME', 'eventbus_stats_info'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
CREATE OR REPLACE FUNCTION eventbus._stats_reset()
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_stats_reset'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE OR REPLACE FUNCTION eventbus._worker_stats(
    OUT database text, OUT pid integer, OUT state text, OUT ticks bigint,
    OUT notifications bigint, OUT handler_calls bigint, OUT last_tick_at timestamptz,
    OUT last_loop_seconds double precision, OUT loop_seconds double precision,
    OUT last_error text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'eventbus_worker_stats'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
CREATE OR REPLACE FUNCTION eventbus._worker_stats_reset()
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_worker_stats_reset'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
-- What a subscription has pending, read from the tables: unread events of
-- the log not cut into batches yet (those expired apart), waiting
-- deliveries plus leases that ran out, leases held, dead letters, the
-- publication time of the oldest pending event and of the newest matching
-- one, and the events of batches not handed out yet (ready). Unread events are counted up to one
-- million, so that a scrape stays cheap whatever the backlog.
CREATE OR REPLACE FUNCTION eventbus._pending(sub_id integer,
    OUT unread bigint, OUT unread_expired bigint, OUT waiting bigint, OUT in_flight bigint,
    OUT dead_letters bigint, OUT oldest_pending timestamptz, OUT newest timestamptz,
    OUT ready bigint)
RETURNS record
LANGUAGE plpgsql STABLE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s eventbus.subscription;
    c eventbus.cursor;
    v_now timestamptz := clock_timestamp();
    v_oldest timestamptz;
BEGIN
    SELECT * INTO s FROM eventbus.subscription sb WHERE sb.id = _pending.sub_id;
    SELECT * INTO c FROM eventbus.cursor cu WHERE cu.sub_id = _pending.sub_id;
    IF s.id IS NULL OR c.sub_id IS NULL THEN
        RETURN;
    END IF;
    SELECT count(*) FILTER (WHERE NOT u.gone), count(*) FILTER (WHERE u.gone),
           min(u.published_at) FILTER (WHERE NOT u.gone), max(u.published_at)
      INTO unread, unread_expired, oldest_pending, newest
      FROM (SELECT x.published_at, coalesce(x.expires_at <= v_now, false) AS gone
              FROM eventbus._unread(s.id, 1000000) x) u;
    SELECT count(*) FILTER (WHERE d.state = 'waiting' OR (d.state = 'leased' AND d.available_at <= v_now)),
           count(*) FILTER (WHERE d.state = 'leased' AND d.available_at > v_now),
           count(*) FILTER (WHERE d.state = 'dead'),
           min(e.published_at) FILTER (WHERE d.state <> 'dead' AND NOT (d.state = 'leased' AND d.available_at > v_now))
      INTO waiting, in_flight, dead_letters, v_oldest
      FROM eventbus.delivery d
      LEFT JOIN eventbus.event_log e ON e.txid = d.txid AND e.id = d.event_id AND d.state <> 'dead'
     WHERE d.sub_id = s.id;
    oldest_pending := least(oldest_pending, v_oldest);
    -- Batches: never handed out (ready); handed out before and free again,
    -- or their lease over (waiting); leased (in flight).
    SELECT coalesce(sum(cardinality(b.ids) - b.ndone) FILTER (WHERE NOT b.leased AND b.attempt = 0), 0),
           waiting + coalesce(sum(cardinality(b.ids) - b.ndone)
                              FILTER (WHERE (NOT b.leased AND b.attempt > 0) OR b.lease_until <= v_now), 0),
           in_flight + coalesce(sum(cardinality(b.ids) - b.ndone) FILTER (WHERE b.leased AND b.lease_until > v_now), 0)
      INTO ready, waiting, in_flight
      FROM eventbus.batch b WHERE b.sub_id = s.id;
    SELECT least(oldest_pending, min(e.published_at)) INTO oldest_pending
      FROM (SELECT b.first_txid, b.last_txid, b.ids FROM eventbus.batch b
             WHERE b.sub_id = s.id AND (NOT b.leased OR b.lease_until <= v_now)
             ORDER BY b.batch_id LIMIT 1) ob
      JOIN eventbus.event_log e ON e.txid >= ob.first_txid AND e.txid <= ob.last_txid AND e.id = ANY (ob.ids);
    IF newest IS NULL AND oldest_pending IS NOT NULL THEN
        -- Nothing unread: the newest matching event was read already. Its
        -- topic's last commit (shared memory), else a bounded look back.
        -- Topics are matched among those the counters, or the events
        -- looked at, name: never the whole dictionary.
        SELECT max(st.last_published_at) INTO newest
          FROM eventbus._stats_topics() st
          JOIN eventbus.topic tp ON tp.id = st.topic_id
         WHERE EXISTS (SELECT 1 FROM unnest(s.patterns) p WHERE eventbus.topic_matches(tp.topic, p));
        IF newest IS NULL THEN
            WITH q AS (SELECT ev.published_at, ev.topic_id, ev.rejected_by
                         FROM eventbus.event_log ev
                        ORDER BY ev.txid DESC, ev.id DESC
                        LIMIT 100000),
                 m AS (SELECT tp.id FROM eventbus.topic tp
                        WHERE tp.id IN (SELECT DISTINCT q.topic_id FROM q)
                          AND EXISTS (SELECT 1 FROM unnest(s.patterns) p
                                       WHERE eventbus.topic_matches(tp.topic, p)))
            SELECT max(q.published_at) INTO newest
              FROM q WHERE q.topic_id IN (SELECT m.id FROM m) AND q.rejected_by IS NULL;
        END IF;
    END IF;
END
$$;
CREATE OR REPLACE FUNCTION eventbus.reset_stats()
RETURNS void
LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT eventbus._stats_reset();
    SELECT eventbus._worker_stats_reset();
$$;
-- A label value escaped for the Prometheus text format.
CREATE OR REPLACE FUNCTION eventbus._prom_label(value text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT replace(replace(replace(value, E'\\', E'\\\\'), '"', E'\\"'), E'\n', E'\\n')
$$;
-- A number in the Prometheus text format.
CREATE OR REPLACE FUNCTION eventbus._prom_number(value double precision)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN value = 'Infinity' THEN '+Inf' WHEN value = '-Infinity' THEN '-Inf'
                WHEN value = 'NaN' THEN 'NaN' ELSE value::text END
$$;
CREATE OR REPLACE FUNCTION eventbus.prometheus()
RETURNS text
LANGUAGE plpgsql STABLE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_out    text := '';
    v_rows   jsonb[];
    v_info   record;
    m        record;
BEGIN
    v_info := eventbus._stats_info();

    -- Per topic, per subscription and per worker: one JSON object per row,
    -- numbers already in the unit of the metric (seconds, epoch seconds).
    FOR m IN
        SELECT * FROM (VALUES
            ('topic', 'eventbus_published_events_total', 'counter', 'Events published (committed) on the topic.', 'published'),
            ('topic', 'eventbus_published_bytes_total', 'counter', 'Bytes of payload, headers and key published on the topic.', 'bytes'),
            ('topic', 'eventbus_last_published_timestamp_seconds', 'gauge', 'When an event on the topic was last committed.', 'last_published_at'),
            ('sub', 'eventbus_subscription_read_events_total', 'counter', 'Events the subscription took from the log (or got as schema dead letters).', 'read'),
            ('sub', 'eventbus_subscription_routed_events', 'gauge', 'Events that matched the subscription: read plus unread now (may drop after seek or alter_subscription).', 'routed'),
            ('sub', 'eventbus_subscription_delivered_events_total', 'counter', 'Events handed out by poll, every attempt.', 'delivered'),
            ('sub', 'eventbus_subscription_acked_events_total', 'counter', 'Events acked.', 'acked'),
            ('sub', 'eventbus_subscription_nacked_events_total', 'counter', 'Events nacked.', 'nacked'),
            ('sub', 'eventbus_subscription_retried_events_total', 'counter', 'Events handed out again after a nack or an expired lease.', 'retried'),
            ('sub', 'eventbus_subscription_dead_events_total', 'counter', 'Events that became dead letters.', 'dead'),
            ('sub', 'eventbus_subscription_expired_events_total', 'counter', 'Events not handed out because their ttl ran out.', 'expired'),
            ('sub', 'eventbus_subscription_redriven_events_total', 'counter', 'Dead letters put back by redrive.', 'redriven'),
            ('sub', 'eventbus_subscription_discarded_events_total', 'counter', 'Dead letters purged.', 'discarded'),
            ('sub', 'eventbus_subscription_backlog_events', 'gauge', 'Events pending, not leased.', 'backlog'),
            ('sub', 'eventbus_subscription_in_flight_events', 'gauge', 'Events leased and not yet acked.', 'in_flight'),
            ('sub', 'eventbus_subscription_dead_letters', 'gauge', 'Dead letters kept now.', 'dead_letters'),
            ('sub', 'eventbus_subscription_oldest_pending_age_seconds', 'gauge', 'Age of the oldest pending event (0: none).', 'oldest_pending_age'),
            ('sub', 'eventbus_subscription_lag_seconds', 'gauge', 'Publication time of the newest matching event minus that of the oldest pending one.', 'lag'),
            ('sub', 'eventbus_subscription_last_poll_timestamp_seconds', 'gauge', 'When the subscription was last polled.', 'last_poll_at'),
            ('sub', 'eventbus_subscription_paused', 'gauge', '1 when the subscription is paused.', 'paused'),
            ('relay', 'eventbus_relay_up', 'gauge', '1 when the relay process is running and not waiting for the sink or retrying.', 'up'),
            ('relay', 'eventbus_relay_produced_events_total', 'counter', 'Events the relay sent and the sink acknowledged, since the server started.', 'produced'),
            ('relay', 'eventbus_relay_resent_events_total', 'counter', 'Events the relay sent again after a failure for now (each may reach the sink twice), since the server started.', 'resent'),
            ('relay', 'eventbus_relay_last_error_timestamp_seconds', 'gauge', 'When the relay last met an error of its sink (0: none since the server started).', 'last_error_at'),
            ('worker', 'eventbus_worker_up', 'gauge', '1 when the database''s background worker is running.', 'up'),
            ('worker', 'eventbus_worker_ticks_total', 'counter', 'Ticks made by the worker.', 'ticks'),
            ('worker', 'eventbus_worker_notifications_total', 'counter', 'NOTIFYs sent by the worker.', 'notifications'),
            ('worker', 'eventbus_worker_handler_calls_total', 'counter', 'Handler function calls made by the worker.', 'handler_calls'),
            ('worker', 'eventbus_worker_loop_seconds_total', 'counter', 'Time the worker spent working (ticks, handlers, maintenance).', 'loop_seconds'),
            ('worker', 'eventbus_worker_last_tick_timestamp_seconds', 'gauge', 'When the worker last ticked.', 'last_tick_at')
        ) AS f (source, name, kind, help, col)
    LOOP
        IF m.source = 'topic' AND m.name = 'eventbus_published_events_total' THEN
            SELECT array_agg(jsonb_build_object(
                       'l', 'topic="' || eventbus._prom_label(t.topic) || '"',
                       'published', t.published, 'bytes', t.bytes,
                       'last_published_at', extract(epoch FROM t.last_published_at))
                     ORDER BY t.topic)
              INTO v_rows FROM eventbus.topic_stats t;
        ELSIF m.source = 'sub' AND m.name = 'eventbus_subscription_read_events_total' THEN
            SELECT array_agg(jsonb_build_object(
                       'l', 'subscription="' || eventbus._prom_label(s.subscription) || '"',
                       'read', s."read", 'routed', s.routed, 'delivered', s.delivered, 'acked', s.acked,
                       'nacked', s.nacked, 'retried', s.retried, 'dead', s.dead,
                       'expired', s.expired, 'redriven', s.redriven, 'discarded', s.discarded,
                       'backlog', s.backlog, 'in_flight', s.in_flight, 'dead_letters', s.dead_letters,
                       'oldest_pending_age', coalesce(extract(epoch FROM s.oldest_pending_age), 0),
                       'lag', extract(epoch FROM s.lag),
                       'last_poll_at', extract(epoch FROM s.last_poll_at),
                       'paused', s.paused::integer)
                     ORDER BY s.subscription)
              INTO v_rows FROM eventbus.subscription_stats s;
        ELSIF m.source = 'relay' AND m.name = 'eventbus_relay_up' THEN
            -- The backlog and lag of a relay are its subscription's, above.
            SELECT array_agg(jsonb_build_object(
                       'l', 'relay="' || eventbus._prom_label(r.name) || '",sink="' || r.sink || '"',
                       'up', (r.state = 'running')::integer, 'produced', r.produced, 'resent', r.resent,
                       'last_error_at', coalesce(extract(epoch FROM r.last_error_at), 0))
                     ORDER BY r.name)
              INTO v_rows FROM eventbus.relays r;
        ELSIF m.source = 'worker' AND m.name = 'eventbus_worker_up' THEN
            SELECT array_agg(jsonb_build_object(
                       'l', 'database="' || eventbus._prom_label(w.database) || '"',
                       'up', (w.state = 'running')::integer, 'ticks', w.ticks,
                       'notifications', w.notifications, 'handler_calls', w.handler_calls,
                       'loop_seconds', w.total_loop_time / 1000,
                       'last_tick_at', extract(epoch FROM w.last_tick_at))
                     ORDER BY w.database)
              INTO v_rows FROM eventbus.worker_stats w
             WHERE w.database = current_database();   -- other databases are not this scrape's to name
        END IF;
        v_out := v_out || format(E'# HELP %s %s\n# TYPE %s %s\n', m.name, m.help, m.name, m.kind)
              || coalesce((SELECT string_agg(format(E'%s{%s} %s\n', m.name, r ->> 'l',
                                                    eventbus._prom_number((r ->> m.col)::double precision)), '')
                             FROM unnest(v_rows) r
                            WHERE r ->> m.col IS NOT NULL), '');
    END LOOP;

    -- Latency histograms, per subscription.
    FOR m IN
        SELECT * FROM (VALUES
            ('delivery', 'eventbus_delivery_latency_seconds', 'Time from an event becoming deliverable (published, or its deliver_at) to its first hand-out.'),
            ('ack', 'eventbus_ack_latency_seconds', 'Time from a lease to its ack.')
        ) AS f (kind, name, help)
    LOOP
        v_out := v_out || format(E'# HELP %s %s\n# TYPE %s histogram\n', m.name, m.help, m.name)
              || coalesce((SELECT string_agg(
                               (SELECT string_agg(format(E'%s_bucket{subscription="%s",le="%s"} %s\n',
                                                         m.name, eventbus._prom_label(l.subscription),
                                                         eventbus._prom_number(b.bound), b.n), '' ORDER BY b.bound)
                                  FROM unnest(l.buckets, l.counts) AS b (bound, n))
                               || format(E'%s_sum{subscription="%s"} %s\n%s_count{subscription="%s"} %s\n',
                                         m.name, eventbus._prom_label(l.subscription), eventbus._prom_number(l.sum_seconds),
                                         m.name, eventbus._prom_label(l.subscription), l.count),
                               '' ORDER BY l.subscription)
                             FROM eventbus.latency_stats l
                            WHERE l.kind = m.kind), '');
    END LOOP;

    v_out := v_out
        || E'# HELP eventbus_stats_enabled 1 when counters are kept (eventbus in shared_preload_libraries).\n'
        || E'# TYPE eventbus_stats_enabled gauge\n'
        || format(E'eventbus_stats_enabled %s\n', v_info.enabled::integer);
    IF v_info.stats_reset IS NOT NULL THEN
        v_out := v_out
            || E'# HELP eventbus_stats_reset_timestamp_seconds When the counters of this database were last reset.\n'
            || E'# TYPE eventbus_stats_reset_timestamp_seconds gauge\n'
            || format(E'eventbus_stats_reset_timestamp_seconds %s\n', extract(epoch FROM v_info.stats_reset));
    END IF;
    IF v_info.dropped IS NOT NULL THEN
        v_out := v_out
            || E'# HELP eventbus_stats_dropped_total Counts lost because eventbus.stats_max entries were in use.\n'
            || E'# TYPE eventbus_stats_dropped_total counter\n'
            || format(E'eventbus_stats_dropped_total %s\n', v_info.dropped);
    END IF;
    RETURN v_out;
END
$$;
-- A readable view of the log for operators (those granted SELECT on it),
-- showing the topics their subscribe ACL lets them read.
CREATE OR REPLACE VIEW eventbus.events WITH (security_barrier) AS
SELECT e.id, t.topic, e.key, e.payload, e.headers, e.published_at,
       e.deliver_at, e.expires_at, e.txid,
       (SELECT c.chunk_no FROM eventbus.chunk c WHERE c.relname = p.relname) AS chunk
  FROM eventbus.event_log e
  JOIN pg_catalog.pg_class p ON p.oid = e.tableoid
  JOIN eventbus.topic t ON t.id = e.topic_id
 WHERE eventbus._may_read_topic(t.topic);
CREATE OR REPLACE VIEW eventbus.subscriptions WITH (security_barrier) AS
SELECT s.name, s.patterns, s.max_attempts, s.backoff_initial, s.backoff_max, s.lease,
       s.ordered, s.filter, s.max_backlog, s.on_overflow, s.paused,
       'eventbus_' || s.name AS channel, s.created_at, s.handler, s.concurrency,
       (SELECT count(*) FROM eventbus.delivery d WHERE d.sub_id = s.id AND d.state = 'leased')
       + coalesce((SELECT sum(cardinality(b.ids) - b.ndone) FROM eventbus.batch b
                    WHERE b.sub_id = s.id AND b.leased), 0) AS leased,
       (SELECT count(*) FROM eventbus.delivery d WHERE d.sub_id = s.id AND d.state = 'waiting') AS waiting,
       (SELECT count(*) FROM eventbus.delivery d WHERE d.sub_id = s.id AND d.state = 'dead') AS dead,
       c.expired + coalesce((SELECT sum(x.n) FROM eventbus.expiry x WHERE x.sub_id = s.id), 0) AS expired,
       s.owner, s.consumers, s.managers
  FROM eventbus.subscription s JOIN eventbus.cursor c ON c.sub_id = s.id
 WHERE eventbus._visible(s.owner, s.consumers, s.managers);
CREATE OR REPLACE VIEW eventbus.topic_acls AS
SELECT a.role, a.action, a.pattern FROM eventbus.topic_acl a;
CREATE OR REPLACE VIEW eventbus.dead_letters WITH (security_barrier) AS
SELECT s.name AS subscription, d.event_id, t.topic, e.key, e.payload,
       d.attempt AS attempts, d.last_error, d.reason, d.dead_at
  FROM eventbus.delivery d
  JOIN eventbus.subscription s ON s.id = d.sub_id
  LEFT JOIN eventbus.event_log e ON e.txid = d.txid AND e.id = d.event_id
  LEFT JOIN eventbus.topic t ON t.id = e.topic_id
 WHERE d.state = 'dead' AND eventbus._visible(s.owner, s.consumers, s.managers);
-- Every event a subscription holds state for: in a batch (ready: cut, not
-- handed out yet; leased) or in a delivery row of its own (leased,
-- waiting, dead). Acked events and events not cut yet have no row here.
-- The rows of both tables first, then the subscriptions the role may see:
-- the filter stays a barrier (a UNION ALL at the top of the view would be
-- flattened, and a reader's function pushed into its branches).
CREATE OR REPLACE VIEW eventbus.deliveries WITH (security_barrier) AS
SELECT s.name AS subscription, u.event_id, u.state, u.attempt, u.available_at, u.batch_id, u.last_error
  FROM (SELECT b.sub_id, b.ids[o.i] AS event_id,
               CASE WHEN b.leased THEN 'leased' ELSE 'ready' END AS state,
               b.attempt, CASE WHEN b.leased THEN b.lease_until END AS available_at,
               b.batch_id, NULL::text AS last_error
          FROM eventbus.batch b
         CROSS JOIN LATERAL generate_subscripts(b.ids, 1) AS o (i)
         WHERE b.done IS NULL OR get_bit(b.done, o.i - 1) = 0
        UNION ALL
        SELECT d.sub_id, d.event_id, d.state, d.attempt, d.available_at, NULL::bigint, d.last_error
          FROM eventbus.delivery d) u
  JOIN eventbus.subscription s ON s.id = u.sub_id
 WHERE eventbus._visible(s.owner, s.consumers, s.managers);
CREATE OR REPLACE VIEW eventbus.chunks AS
SELECT c.chunk_no, c.relname, c.is_current, c.opened_at, c.sealed_at, c.reclaimed_at,
       pg_total_relation_size(format('eventbus.%I', c.relname)::regclass) AS bytes,
       eventbus._chunk_pins(format('eventbus.%I', c.relname)::regclass) AS pinned_by
  FROM eventbus.chunk c;
CREATE OR REPLACE VIEW eventbus.schemas AS
SELECT s.pattern, s.uri, s.on_invalid, s.schema, s.created_at, s.owner
  FROM eventbus.schema s;
-- The checks behind GET /health of the metrics endpoint, also for probes
-- that use SQL: one row per check, whether it passes, what was seen and
-- the threshold (settings eventbus.health_*; 0 or -1: reported only).
--   worker        this database's worker runs
--   ticking       its last tick is at most health_tick_age old
--   lag           the oldest pending event of any subscription that is
--                 not paused is at most health_max_lag old
--   dead_letters  at most health_max_new_dead_letters events became dead
--                 letters in the last health_dead_letter_window
-- Without the library preloaded there is no worker: "worker" fails.
CREATE OR REPLACE FUNCTION eventbus.health(OUT check_name text, OUT ok boolean, OUT value text, OUT threshold text)
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- The settings show with a unit ('1min'), which interval reads.
    v_tick     interval := coalesce(current_setting('eventbus.health_tick_age', true), '60s')::interval;
    v_lag      interval := coalesce(current_setting('eventbus.health_max_lag', true), '0')::interval;
    v_window   interval := coalesce(current_setting('eventbus.health_dead_letter_window', true), '300s')::interval;
    v_max_dead bigint := coalesce(current_setting('eventbus.health_max_new_dead_letters', true), '-1')::bigint;
    v_now      timestamptz := clock_timestamp();
    w          record;
    v_worst    record;
    v_new      bigint;
BEGIN
    SELECT ws.pid, ws.state, ws.last_tick_at INTO w
      FROM eventbus._worker_stats() ws WHERE ws.database = current_database();
    check_name := 'worker';
    ok := w.pid IS NOT NULL AND w.state = 'running';
    value := CASE WHEN w.pid IS NULL THEN coalesce(w.state, 'no worker') ELSE format('pid %s, %s', w.pid, w.state) END;
    threshold := 'running';
    RETURN NEXT;
    check_name := 'ticking';
    ok := w.last_tick_at IS NOT NULL AND v_now - w.last_tick_at <= v_tick;
    value := CASE WHEN w.last_tick_at IS NULL THEN 'never ticked'
                  ELSE format('last tick %s s ago', round(extract(epoch FROM v_now - w.last_tick_at)::numeric, 1)) END;
    threshold := format('%s s', extract(epoch FROM v_tick)::bigint);
    RETURN NEXT;
    SELECT s.name, v_now - p.oldest_pending AS age INTO v_worst
      FROM eventbus.subscription s CROSS JOIN LATERAL eventbus._pending(s.id) p
     WHERE NOT s.paused AND p.oldest_pending IS NOT NULL
     ORDER BY p.oldest_pending LIMIT 1;
    check_name := 'lag';
    ok := v_lag = interval '0' OR v_worst.age IS NULL OR v_worst.age <= v_lag;
    value := CASE WHEN v_worst.age IS NULL THEN 'nothing pending'
                  ELSE format('oldest pending event %s s old (subscription %s)',
                              round(extract(epoch FROM v_worst.age)::numeric, 1), v_worst.name) END;
    threshold := CASE WHEN v_lag = interval '0' THEN 'not checked' ELSE format('%s s', extract(epoch FROM v_lag)::bigint) END;
    RETURN NEXT;
    SELECT count(*) INTO v_new FROM eventbus.delivery d
     WHERE d.state = 'dead' AND d.dead_at > v_now - v_window;
    check_name := 'dead_letters';
    ok := v_max_dead < 0 OR v_new <= v_max_dead;
    value := format('%s new in the last %s s', v_new, extract(epoch FROM v_window)::bigint);
    threshold := CASE WHEN v_max_dead < 0 THEN 'not checked' ELSE v_max_dead::text END;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION eventbus.health() IS
    'eventbus: the checks of GET /health (worker running, ticking, lag, new dead letters), each with its threshold';

CREATE OR REPLACE VIEW eventbus.topic_stats AS
SELECT t.topic,
       CASE WHEN i.enabled THEN coalesce(sum(st.published), 0)::bigint END AS published,
       CASE WHEN i.enabled THEN coalesce(sum(st.bytes), 0)::bigint END AS bytes,
       max(st.last_published_at) AS last_published_at,
       i.stats_reset
  FROM eventbus.topic t
 CROSS JOIN eventbus._stats_info() i
  LEFT JOIN eventbus._stats_topics() st ON st.topic_id = t.id
 GROUP BY t.topic, i.enabled, i.stats_reset;
CREATE OR REPLACE VIEW eventbus.subscription_stats AS
SELECT s.name AS subscription,
       CASE WHEN i.enabled THEN coalesce(st."read", 0) + p.unread + p.unread_expired + p.ready END AS routed,
       CASE WHEN i.enabled THEN coalesce(st."read", 0) END AS "read",
       CASE WHEN i.enabled THEN coalesce(st.delivered, 0) END AS delivered,
       CASE WHEN i.enabled THEN coalesce(st.acked, 0) END AS acked,
       CASE WHEN i.enabled THEN coalesce(st.nacked, 0) END AS nacked,
       CASE WHEN i.enabled THEN coalesce(st.retried, 0) END AS retried,
       CASE WHEN i.enabled THEN coalesce(st.dead, 0) END AS dead,
       CASE WHEN i.enabled THEN coalesce(st.expired, 0) END AS expired,
       CASE WHEN i.enabled THEN coalesce(st.redriven, 0) END AS redriven,
       CASE WHEN i.enabled THEN coalesce(st.discarded, 0) END AS discarded,
       p.unread + p.ready + p.waiting AS backlog,
       p.in_flight,
       p.dead_letters,
       clock_timestamp() - p.oldest_pending AS oldest_pending_age,
       CASE WHEN p.oldest_pending IS NULL THEN interval '0'
            ELSE greatest(p.newest - p.oldest_pending, interval '0') END AS lag,
       st.last_poll_at,
       s.paused,
       i.stats_reset
  FROM eventbus.subscription s
 CROSS JOIN eventbus._stats_info() i
 CROSS JOIN LATERAL eventbus._pending(s.id) p
  LEFT JOIN eventbus._stats_subscriptions() st ON st.sub_id = s.id;
CREATE OR REPLACE VIEW eventbus.latency_stats AS
SELECT s.name AS subscription, h.kind, h.counts[array_length(h.counts, 1)] AS count,
       h.sum AS sum_seconds,
       h.sum / nullif(h.counts[array_length(h.counts, 1)], 0) AS mean_seconds,
       (SELECT b.bound FROM unnest(i.buckets, h.counts) AS b (bound, n)
         WHERE b.n >= 0.5 * h.counts[array_length(h.counts, 1)] AND b.n > 0
         ORDER BY b.bound LIMIT 1) AS p50_seconds,
       (SELECT b.bound FROM unnest(i.buckets, h.counts) AS b (bound, n)
         WHERE b.n >= 0.99 * h.counts[array_length(h.counts, 1)] AND b.n > 0
         ORDER BY b.bound LIMIT 1) AS p99_seconds,
       i.buckets, h.counts
  FROM eventbus.subscription s
 CROSS JOIN eventbus._stats_info() i
  JOIN eventbus._stats_subscriptions() st ON st.sub_id = s.id
 CROSS JOIN LATERAL (VALUES ('delivery', st.delivery_buckets, st.delivery_sum),
                            ('ack', st.ack_buckets, st.ack_sum)) AS h (kind, counts, sum);
CREATE OR REPLACE VIEW eventbus.worker_stats AS
SELECT w.database, w.pid, w.state, w.ticks, w.notifications, w.handler_calls, w.last_tick_at,
       w.last_loop_seconds * 1000 AS last_loop_time,
       w.loop_seconds * 1000 AS total_loop_time,
       w.last_error
  FROM eventbus._worker_stats() w;

-- Relays (sql/65_relays.sql).
CREATE FUNCTION eventbus._kafka_validator(options text[], catalog oid)
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_kafka_validator'
LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION eventbus._kafka_validator(text[], oid) IS
    'eventbus (internal): check the options of a server or user mapping of eventbus_kafka against librdkafka';

CREATE FOREIGN DATA WRAPPER eventbus_kafka VALIDATOR eventbus._kafka_validator;
COMMENT ON FOREIGN DATA WRAPPER eventbus_kafka IS
    'eventbus: Kafka brokers for relays; server options are librdkafka properties, user mapping options hold credentials';

CREATE FUNCTION eventbus._http_validator(options text[], catalog oid)
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_http_validator'
LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION eventbus._http_validator(text[], oid) IS
    'eventbus (internal): check the options of a server or user mapping of eventbus_http';

CREATE FOREIGN DATA WRAPPER eventbus_http VALIDATOR eventbus._http_validator;
COMMENT ON FOREIGN DATA WRAPPER eventbus_http IS
    'eventbus: HTTP endpoints for relays (webhooks); server options: url, timeout_ms, mode, headers, TLS; user mapping: signing secrets';

CREATE FUNCTION eventbus._http_check_options(options jsonb)
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_http_check_options'
LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION eventbus._http_check_options(jsonb) IS
    'eventbus (internal): raise a clear error unless an HTTP relay''s options are valid';

CREATE FUNCTION eventbus._kafka_check_options(options jsonb)
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_kafka_check_options'
LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION eventbus._kafka_check_options(jsonb) IS
    'eventbus (internal): raise a clear error unless a relay''s options are valid';

CREATE FUNCTION eventbus._kafka_check_topic(topic text)
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_kafka_check_topic'
LANGUAGE C STABLE;
COMMENT ON FUNCTION eventbus._kafka_check_topic(text) IS
    'eventbus (internal): raise a clear error unless a relay''s topic (or topic template) is valid';

-- What a relay's sink, server, topic and options must be, for its owner.
CREATE FUNCTION eventbus._check_relay(owner regrole, name text, sink text, server name,
                                      topic text, options jsonb)
RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    srv pg_foreign_server;
    wrapper name;
BEGIN
    IF sink IS NULL OR sink NOT IN ('kafka', 'http') THEN
        RAISE EXCEPTION 'invalid sink "%" for relay "%"', sink, name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The sink is ''kafka'' or ''http''.';
    END IF;
    IF server IS NULL THEN
        RAISE EXCEPTION 'relay "%" needs a server', name
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'CREATE SERVER kafka FOREIGN DATA WRAPPER eventbus_kafka OPTIONS ("bootstrap.servers" ''host:9092''), then pass server => ''kafka''.';
    END IF;
    SELECT * INTO srv FROM pg_foreign_server s WHERE s.srvname = server;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'server "%" does not exist', server
            USING ERRCODE = 'undefined_object',
                  HINT = 'CREATE SERVER ' || quote_ident(server) || ' FOREIGN DATA WRAPPER eventbus_kafka OPTIONS ("bootstrap.servers" ''host:9092'').';
    END IF;
    SELECT w.fdwname INTO wrapper FROM pg_foreign_data_wrapper w WHERE w.oid = srv.srvfdw;
    IF wrapper <> 'eventbus_' || sink THEN
        RAISE EXCEPTION 'server "%" is not a server of eventbus_% but of %', server, sink, wrapper
            USING ERRCODE = 'wrong_object_type',
                  HINT = format('A relay with sink %L needs a server made with FOREIGN DATA WRAPPER eventbus_%s.', sink, sink);
    END IF;
    IF NOT has_server_privilege(owner, srv.oid, 'USAGE') THEN
        RAISE EXCEPTION 'permission denied for server %', server
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('The relay''s owner %s needs USAGE on the server.', owner),
                  HINT = 'GRANT USAGE ON FOREIGN SERVER ' || quote_ident(server) || ' TO ' || owner || ';';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_user_mapping m
                    WHERE m.umserver = srv.oid AND m.umuser IN (owner, 0)) THEN
        RAISE EXCEPTION 'user mapping for "%" does not exist for server "%"', owner, server
            USING ERRCODE = 'undefined_object',
                  DETAIL = 'The relay connects with the user mapping of its owner (or of PUBLIC).',
                  HINT = 'CREATE USER MAPPING FOR ' || owner || ' SERVER ' || quote_ident(server)
                         || ' (with OPTIONS ("sasl.username" ..., "sasl.password" ...) when the brokers need them).';
    END IF;
    IF sink = 'kafka' THEN
        PERFORM eventbus._kafka_check_topic(topic);
    ELSIF topic IS NULL OR topic !~ '^([A-Za-z0-9._~!$&''()*+,;=:@/%-]|\{(topic|[1-9]|[12][0-9]|3[0-2])\})*$' THEN
        RAISE EXCEPTION 'invalid URL path template "%"', topic
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'An HTTP relay''s topic is a path appended to its server''s url: URL characters and the placeholders {topic} and {1} to {32}.',
                  HINT = 'Pass e.g. '''' (the server''s url alone), ''/{1}'' or ''/events/{topic}''.';
    END IF;
    IF options IS NULL OR jsonb_typeof(options) <> 'object' THEN
        RAISE EXCEPTION 'options of relay "%" must be a JSON object', name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass e.g. ''{"compression.type": "lz4", "source": "https://shop.example/orders"}''.';
    END IF;
    IF sink = 'kafka' THEN
        PERFORM eventbus._kafka_check_options(options);
    ELSE
        PERFORM eventbus._http_check_options(options);
    END IF;
END
$$;
COMMENT ON FUNCTION eventbus._check_relay(regrole, text, text, name, text, jsonb) IS
    'eventbus (internal): raise a clear error unless a relay''s sink, server, topic and options are valid for its owner';

CREATE FUNCTION eventbus._create_relay(
    caller          regrole,
    name            text,
    patterns        text[],
    sink            text,
    server          name,
    topic           text,
    options         jsonb,
    filter          jsonpath,
    start_at        text,
    max_attempts    integer,
    backoff_initial interval,
    backoff_max     interval)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_topic text := coalesce(topic, CASE WHEN sink = 'http' THEN '' ELSE '{topic}' END);
BEGIN
    PERFORM eventbus._check_relay(caller, name, sink, server, v_topic, options);
    PERFORM eventbus._subscribe(caller, name, patterns, max_attempts, backoff_initial, backoff_max,
                                interval '10 seconds', false, start_at, filter, NULL, 'reject', NULL, 1);
    UPDATE eventbus.subscription s
       SET sink = _create_relay.sink, sink_server = server, sink_topic = v_topic, sink_options = options
     WHERE s.name = _create_relay.name;
    PERFORM eventbus._subscriptions_changed();
END
$$;
COMMENT ON FUNCTION eventbus._create_relay(regrole, text, text[], text, name, text, jsonb, jsonpath, text, integer, interval, interval) IS
    'eventbus (internal): create_relay for the role that called eventbus.create_relay (access.c)';

CREATE FUNCTION eventbus.create_relay(
    name            text,
    patterns        text[],
    sink            text     DEFAULT 'kafka',
    server          name     DEFAULT NULL,
    topic           text     DEFAULT NULL,
    options         jsonb    DEFAULT '{}',
    filter          jsonpath DEFAULT NULL,
    start_at        text     DEFAULT 'now',
    max_attempts    integer  DEFAULT 5,
    backoff_initial interval DEFAULT '1 second',
    backoff_max     interval DEFAULT '1 hour')
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_gate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.create_relay(text, text[], text, name, text, jsonb, jsonpath, text, integer, interval, interval) IS
    'eventbus: create a relay: a subscription whose events a relay process sends to a sink (Kafka, HTTP), at least once, in commit order per key';

-- Changing where a relay's events go is the owner's right: a manager could
-- otherwise send the payloads to a server of its own.
CREATE FUNCTION eventbus._alter_relay(caller regrole, name text, server name, topic text, options jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s eventbus.subscription := eventbus._subscription(_alter_relay.name, caller, 'own');
BEGIN
    SELECT * INTO s FROM eventbus.subscription sb WHERE sb.id = s.id FOR UPDATE;
    IF s.sink IS NULL THEN
        RAISE EXCEPTION 'subscription "%" is not a relay', name
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'Change a subscription with eventbus.alter_subscription().';
    END IF;
    s.sink_server := coalesce(server, s.sink_server);
    s.sink_topic := coalesce(topic, s.sink_topic);
    s.sink_options := coalesce(options, s.sink_options);
    PERFORM eventbus._check_relay(s.owner, s.name, s.sink, s.sink_server, s.sink_topic, s.sink_options);
    UPDATE eventbus.subscription sb
       SET sink_server = s.sink_server, sink_topic = s.sink_topic, sink_options = s.sink_options
     WHERE sb.id = s.id;
    PERFORM eventbus._wake(s.id);
END
$$;
COMMENT ON FUNCTION eventbus._alter_relay(regrole, text, name, text, jsonb) IS
    'eventbus (internal): alter_relay for the role that called eventbus.alter_relay (access.c)';

CREATE FUNCTION eventbus.alter_relay(name text, server name DEFAULT NULL, topic text DEFAULT NULL,
                                     options jsonb DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_gate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.alter_relay(text, name, text, jsonb) IS
    'eventbus: change a relay''s server, topic or options (NULL keeps one); its relay process picks them up before its next batch';

CREATE FUNCTION eventbus._drop_relay(caller regrole, name text)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF (eventbus._subscription(_drop_relay.name, caller, 'manage')).sink IS NULL THEN
        RAISE EXCEPTION 'subscription "%" is not a relay', name
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'Drop a subscription with eventbus.unsubscribe().';
    END IF;
    PERFORM eventbus._unsubscribe(caller, name);
END
$$;
COMMENT ON FUNCTION eventbus._drop_relay(regrole, text) IS
    'eventbus (internal): drop_relay for the role that called eventbus.drop_relay (access.c)';

CREATE FUNCTION eventbus.drop_relay(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_gate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.drop_relay(text) IS
    'eventbus: drop a relay with its position and dead letters; its relay process stops';

CREATE FUNCTION eventbus._relay_status()
RETURNS TABLE (sub_id integer, pid integer, state text, produced bigint, last_produced_at timestamptz,
               last_error text, last_error_at timestamptz, resent bigint)
AS 'MODULE_PATHNAME', 'eventbus_relay_status'
LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION eventbus._relay_status() IS
    'eventbus (internal): what the relay processes of this database report (shared memory)';
-- Read by eventbus.relays as its reader: what a relay process is doing is
-- not secret (the view shows only the relays the reader holds a right on).
GRANT EXECUTE ON FUNCTION eventbus._relay_status() TO PUBLIC;

CREATE VIEW eventbus.relays WITH (security_barrier) AS
SELECT s.name, s.sink, s.sink_server AS server, s.sink_topic AS topic, s.sink_options AS options,
       s.patterns, s.paused,
       CASE WHEN s.paused THEN 'paused' ELSE coalesce(r.state, 'stopped') END AS state,
       r.pid, coalesce(r.produced, 0) AS produced, r.last_produced_at,
       coalesce(r.resent, 0) AS resent, r.last_error, r.last_error_at,
       s.owner
  FROM eventbus.subscription s
  LEFT JOIN eventbus._relay_status() r ON r.sub_id = s.id
 WHERE s.sink IS NOT NULL AND eventbus._visible(s.owner, s.consumers, s.managers);
COMMENT ON VIEW eventbus.relays IS
    'eventbus: the relays the current role holds a right on: sink, server, topic, options, what the relay process is doing, its last error';

-- Comments and privileges, as a fresh install sets them.
COMMENT ON FUNCTION eventbus._may_read_topic(text) IS
    'eventbus (internal): whether current_user may read events of the topic (topic ACLs)';
COMMENT ON VIEW eventbus.events IS 'eventbus: every stored event (of the topics the role may read), with its topic text and chunk';
COMMENT ON FUNCTION eventbus.topic_matches(text, text) IS
    'eventbus: does the topic match the pattern ("*" one word, "#" zero or more words)';
COMMENT ON FUNCTION eventbus.is_valid_topic(text) IS
    'eventbus: is the text a valid topic (for CHECK constraints)';
COMMENT ON FUNCTION eventbus.is_valid_pattern(text) IS
    'eventbus: is the text a valid subscription pattern (for CHECK constraints)';
COMMENT ON FUNCTION eventbus.publish(text, jsonb, text, jsonb, timestamptz, interval) IS
    'eventbus: publish one event in the current transaction; returns its id';
COMMENT ON FUNCTION eventbus.publish_batch(text[], jsonb[], text[], jsonb[], timestamptz, interval) IS
    'eventbus: publish many events in the current transaction; returns their ids in order';
COMMENT ON FUNCTION eventbus._subscriptions_changed() IS
    'eventbus (internal): invalidate the caches of subscription options in every backend';
COMMENT ON FUNCTION eventbus._wake(integer) IS
    'eventbus (internal): at commit, wake waiting pollers and have the worker notify subscription sub_id';
COMMENT ON FUNCTION eventbus._wake_at_end(integer, timestamptz) IS
    'eventbus (internal): this transaction wrote deliveries due at "due": wake and notify if it ends after that, or rolls back';
COMMENT ON FUNCTION eventbus._wake_count() IS
    'eventbus (internal): how many wake-ups there have been (poll waits for it to change)';
COMMENT ON FUNCTION eventbus._wait(timestamptz, bigint) IS
    'eventbus (internal): sleep until the wake count differs from seen, or until the time';
COMMENT ON FUNCTION eventbus._snapshot() IS
    'eventbus (internal): current snapshot counting the own transaction as in progress';
COMMENT ON FUNCTION eventbus._check_name(text) IS
    'eventbus (internal): raise 22023 unless the text is a valid subscription name';
COMMENT ON FUNCTION eventbus._subscription(text, regrole, text) IS
    'eventbus (internal): the subscription of that name, or error 42704, or 42501 unless the caller holds the right';
COMMENT ON FUNCTION eventbus._check_right(regrole, text, regrole, regrole[], regrole[], text) IS
    'eventbus (internal): raise 42501 unless the role holds the right on the subscription';
COMMENT ON FUNCTION eventbus._visible(regrole, regrole[], regrole[]) IS
    'eventbus (internal): whether current_user holds a right on a subscription (views filter by it)';
COMMENT ON FUNCTION eventbus._check_interval(text, interval, interval) IS
    'eventbus (internal): raise 22023 unless the interval is positive and within the limit';
COMMENT ON FUNCTION eventbus._check_subscription(eventbus.subscription, regrole) IS
    'eventbus (internal): raise a clear error unless every option of a subscription is valid';
COMMENT ON FUNCTION eventbus._start_time(text) IS
    'eventbus (internal): the time a start_at names, NULL for ''now'' and ''earliest'', or error 22023';
COMMENT ON FUNCTION eventbus._subscribe(regrole, text, text[], integer, interval, interval, interval, boolean, text, jsonpath, bigint, text, regprocedure, integer) IS
    'eventbus (internal): subscribe for the role that called eventbus.subscribe (access.c)';
COMMENT ON FUNCTION eventbus.subscribe(text, text[], integer, interval, interval, interval, boolean, text, jsonpath, bigint, text, regprocedure, integer) IS
    'eventbus: create a durable subscription to every event whose topic matches one of the patterns';
COMMENT ON FUNCTION eventbus._alter_subscription(regrole, text, text[], integer, interval, interval, interval, boolean, jsonpath, bigint, text, text[], regprocedure, integer) IS
    'eventbus (internal): alter_subscription for the role that called eventbus.alter_subscription (access.c)';
COMMENT ON FUNCTION eventbus.alter_subscription(text, text[], integer, interval, interval, interval, boolean, jsonpath, bigint, text, text[], regprocedure, integer) IS
    'eventbus: change options of a subscription (NULL keeps an option; reset => names puts options back to their defaults)';
COMMENT ON FUNCTION eventbus._unsubscribe(regrole, text) IS
    'eventbus (internal): unsubscribe for the role that called eventbus.unsubscribe (access.c)';
COMMENT ON FUNCTION eventbus.unsubscribe(text) IS
    'eventbus: drop a subscription with its position, leases and dead letters';
COMMENT ON FUNCTION eventbus._pause(regrole, text) IS
    'eventbus (internal): pause for the role that called eventbus.pause (access.c)';
COMMENT ON FUNCTION eventbus.pause(text) IS
    'eventbus: stop handing out events of a subscription (they keep accumulating)';
COMMENT ON FUNCTION eventbus._resume(regrole, text) IS
    'eventbus (internal): resume for the role that called eventbus.resume (access.c)';
COMMENT ON FUNCTION eventbus.resume(text) IS 'eventbus: hand out events of a paused subscription again';
COMMENT ON FUNCTION eventbus._check_right_name(text) IS
    'eventbus (internal): raise 22023 unless the text names a subscription right';
COMMENT ON FUNCTION eventbus._check_grantee(regrole) IS
    'eventbus (internal): raise 22023 unless the role can hold a subscription right';
COMMENT ON FUNCTION eventbus._grant_subscription(regrole, text, regrole, text) IS
    'eventbus (internal): grant_subscription for the role that called eventbus.grant_subscription (access.c)';
COMMENT ON FUNCTION eventbus.grant_subscription(text, regrole, text) IS
    'eventbus: let a role consume (poll, ack, nack, extend_lease) or manage (alter, pause, resume, seek, redrive, purge, unsubscribe) a subscription';
COMMENT ON FUNCTION eventbus._revoke_subscription(regrole, text, regrole, text) IS
    'eventbus (internal): revoke_subscription for the role that called eventbus.revoke_subscription (access.c)';
COMMENT ON FUNCTION eventbus.revoke_subscription(text, regrole, text) IS
    'eventbus: take a right on a subscription back from a role (both rights when right is NULL)';
COMMENT ON FUNCTION eventbus._alter_subscription_owner(regrole, text, regrole) IS
    'eventbus (internal): alter_subscription_owner for the role that called eventbus.alter_subscription_owner (access.c)';
COMMENT ON FUNCTION eventbus.alter_subscription_owner(text, regrole) IS
    'eventbus: give a subscription to another owner';
COMMENT ON VIEW eventbus.subscriptions IS
    'eventbus: the subscriptions the current role holds a right on, with their options, LISTEN channel, delivery counts, owner and grantees';
COMMENT ON FUNCTION eventbus._seek_to(integer, timestamptz, bigint) IS
    'eventbus (internal): move a subscription to a time or an event id';
COMMENT ON FUNCTION eventbus._seek(regrole, text, timestamptz) IS
    'eventbus (internal): seek for the role that called eventbus.seek (access.c)';
COMMENT ON FUNCTION eventbus.seek(text, timestamptz) IS
    'eventbus: replay every retained event published at or after a time (or skip those before it)';
COMMENT ON FUNCTION eventbus._seek(regrole, text, bigint) IS
    'eventbus (internal): seek for the role that called eventbus.seek (access.c)';
COMMENT ON FUNCTION eventbus.seek(text, bigint) IS
    'eventbus: replay every retained event from an event id on (or skip those before it)';
COMMENT ON FUNCTION eventbus._acl_changed() IS
    'eventbus (internal): every backend reloads its topic ACL';
COMMENT ON FUNCTION eventbus._pattern_covers(text, text) IS
    'eventbus (internal): whether the outer pattern matches every topic the inner one matches';
COMMENT ON FUNCTION eventbus._check_subscribe_acl(regrole, text[]) IS
    'eventbus (internal): raise 42501 unless the role may subscribe with each pattern';
COMMENT ON FUNCTION eventbus._set_acl(regrole, text, text, boolean) IS
    'eventbus (internal): add or remove a row of eventbus.topic_acl';
COMMENT ON FUNCTION eventbus.grant_publish(regrole, text) IS
    'eventbus: let a role publish to the topics a pattern matches (once any role has a publish pattern, publishing is restricted to them)';
COMMENT ON FUNCTION eventbus.revoke_publish(regrole, text) IS
    'eventbus: take a publish pattern back from a role';
COMMENT ON FUNCTION eventbus.grant_subscribe(regrole, text) IS
    'eventbus: let a role subscribe with patterns the pattern covers, and read those topics in eventbus.events';
COMMENT ON FUNCTION eventbus.revoke_subscribe(regrole, text) IS
    'eventbus: take a subscribe pattern back from a role';
COMMENT ON VIEW eventbus.topic_acls IS
    'eventbus: the per-topic rights: who may publish to, and subscribe to, which patterns';
COMMENT ON FUNCTION eventbus._unread(integer, bigint, regclass, boolean) IS
    'eventbus (internal): events of the log a subscription has not cut into batches yet';
COMMENT ON FUNCTION eventbus._backlog(integer, bigint) IS
    'eventbus (internal): pending events of a subscription (waiting, in ready batches, uncut), counted up to lim';
COMMENT ON FUNCTION eventbus.poll(text, integer, interval, interval, bigint) IS
    'eventbus: lease up to max_events events of a subscription: due retries first, then new events in commit order; wait for them up to "wait"; first ack what is still leased under ack_lease';
COMMENT ON FUNCTION eventbus.ack(text, bigint[], bigint) IS
    'eventbus: finish leased events (under lease_token, if given; all of that lease when event_ids is NULL); returns how many are now done';
COMMENT ON FUNCTION eventbus.nack(text, bigint, text, interval, bigint, boolean) IS
    'eventbus: give a leased event back: retried after backoff (or retry_in), dead after max_attempts or at once with dead => true';
COMMENT ON FUNCTION eventbus.extend_lease(text, bigint[], interval, bigint) IS
    'eventbus: make leases of events still being worked on end "lease" from now';
COMMENT ON VIEW eventbus.dead_letters IS
    'eventbus: events a subscription gave up on, with the last error, until redriven or purged';
COMMENT ON VIEW eventbus.deliveries IS
    'eventbus: every event a subscription holds state for: ready or leased in a batch, leased, waiting or dead on its own';
COMMENT ON FUNCTION eventbus._redrive(regrole, text, bigint[]) IS
    'eventbus (internal): redrive for the role that called eventbus.redrive (access.c)';
COMMENT ON FUNCTION eventbus.redrive(text, bigint[]) IS
    'eventbus: put dead letters back, with fresh attempts (all of them when event_ids is NULL)';
COMMENT ON FUNCTION eventbus._purge_dead_letters(regrole, text, interval) IS
    'eventbus (internal): purge_dead_letters for the role that called eventbus.purge_dead_letters (access.c)';
COMMENT ON FUNCTION eventbus.purge_dead_letters(text, interval) IS
    'eventbus: discard dead letters for good (all, or those dead longer than older_than)';
COMMENT ON FUNCTION eventbus._adopt_restored() IS
    'eventbus (internal): adopt events and cursors restored from another cluster';
COMMENT ON FUNCTION eventbus._check_origin() IS
    'eventbus (internal): adopt restored data if it comes from another cluster (cached per backend)';
COMMENT ON FUNCTION eventbus._worker_start() IS
    'eventbus (internal): start this database''s background worker when the transaction commits';
COMMENT ON FUNCTION eventbus._chunks_changed() IS
    'eventbus (internal): make every backend re-read the current chunk';
COMMENT ON FUNCTION eventbus._notify_needed(integer) IS
    'eventbus (internal): whether to NOTIFY a subscription again (it was polled since, or 1 s passed)';
COMMENT ON FUNCTION eventbus._chunk_pins(regclass) IS
    'eventbus (internal): names of the subscriptions that still need events of a chunk';
COMMENT ON FUNCTION eventbus._maintain() IS
    'eventbus (internal): reclaim chunks nobody needs, move publishing on to the next chunk';
COMMENT ON FUNCTION eventbus.run_maintenance() IS
    'eventbus: one round of what the background worker does: reclaim and rotate chunks, notify subscriptions';
COMMENT ON VIEW eventbus.chunks IS
    'eventbus: the chunks of the event log, their size, and the subscriptions that keep each from being reclaimed';
COMMENT ON FUNCTION eventbus.schedule(text, text, text, jsonb) IS
    'eventbus: publish an event on a cron schedule (needs pg_cron); returns the pg_cron job id';
COMMENT ON FUNCTION eventbus.unschedule(text) IS
    'eventbus: remove a job made by eventbus.schedule (needs pg_cron)';
COMMENT ON FUNCTION eventbus.validate(jsonb, jsonb) IS
    'eventbus: whether the document is valid against the JSON Schema (draft 2020-12 by default)';
COMMENT ON FUNCTION eventbus.validation_errors(jsonb, jsonb) IS
    'eventbus: every place where the document fails the JSON Schema: path, keyword, message';
COMMENT ON FUNCTION eventbus._schemas_changed() IS
    'eventbus (internal): make every backend reload the registered schemas';
COMMENT ON FUNCTION eventbus._with_base(jsonb, text) IS
    'eventbus (internal): the schema with "$id" set to uri unless it has one';
COMMENT ON FUNCTION eventbus._check_schema_owner(regrole, regrole, text) IS
    'eventbus (internal): raise 42501 unless the role may replace or drop a schema of that owner';
COMMENT ON FUNCTION eventbus._register_schema(regrole, text, jsonb, text, text) IS
    'eventbus (internal): register_schema for the role that called eventbus.register_schema (access.c)';
COMMENT ON FUNCTION eventbus.register_schema(text, jsonb, text, text) IS
    'eventbus: check payloads published on topics matching the pattern against a JSON Schema (replaces the pattern''s schema)';
COMMENT ON FUNCTION eventbus._drop_schema(regrole, text) IS
    'eventbus (internal): drop_schema for the role that called eventbus.drop_schema (access.c)';
COMMENT ON FUNCTION eventbus.drop_schema(text) IS
    'eventbus: stop checking payloads against the schema of a pattern (or drop a schema registered by URI)';
COMMENT ON VIEW eventbus.schemas IS 'eventbus: the registered JSON Schemas';
COMMENT ON FUNCTION eventbus._schema_dead_letter(bigint, text, jsonb, text) IS
    'eventbus (internal): make an event that failed its schema a dead letter of every subscription it reaches';
COMMENT ON FUNCTION eventbus._stats_sub(integer, bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint, timestamptz[], timestamptz[], boolean) IS
    'eventbus (internal): count for a subscription when this transaction commits';
COMMENT ON FUNCTION eventbus._stats_drop_sub(integer) IS
    'eventbus (internal): forget a subscription''s counts when this transaction commits';
COMMENT ON FUNCTION eventbus._stats_prune(integer[]) IS
    'eventbus (internal): forget the counts of subscriptions not in "live"';
COMMENT ON FUNCTION eventbus._stats_move_topics(integer[], integer[]) IS
    'eventbus (internal): move the counts of dropped topic ids to the topic''s live id (NULL: forget them)';
COMMENT ON FUNCTION eventbus._stats_topics() IS
    'eventbus (internal): this database''s topic counters in shared memory';
COMMENT ON FUNCTION eventbus._stats_subscriptions() IS
    'eventbus (internal): this database''s subscription counters and histograms in shared memory';
COMMENT ON FUNCTION eventbus._stats_info() IS
    'eventbus (internal): whether counters exist, when they were reset, counts lost, bucket bounds';
COMMENT ON FUNCTION eventbus._stats_reset() IS
    'eventbus (internal): forget this database''s counters';
COMMENT ON FUNCTION eventbus._worker_stats() IS
    'eventbus (internal): the background workers'' slots in shared memory';
COMMENT ON FUNCTION eventbus._worker_stats_reset() IS
    'eventbus (internal): zero this database''s worker counters';
COMMENT ON FUNCTION eventbus._pending(integer) IS
    'eventbus (internal): a subscription''s pending events, read from the tables';
COMMENT ON VIEW eventbus.topic_stats IS
    'eventbus: events and bytes published (committed) per topic since the last reset';
COMMENT ON VIEW eventbus.subscription_stats IS
    'eventbus: per subscription, events routed, delivered, acked ... since the last reset, and what is pending now';
COMMENT ON VIEW eventbus.latency_stats IS
    'eventbus: latency histograms per subscription: publish to first delivery, lease to ack';
COMMENT ON VIEW eventbus.worker_stats IS
    'eventbus: the background worker of each database: ticks, notifications, handler calls, time spent';
COMMENT ON FUNCTION eventbus.reset_stats() IS
    'eventbus: set this database''s eventbus counters and histograms back to zero';
COMMENT ON FUNCTION eventbus._prom_label(text) IS
    'eventbus (internal): escape a Prometheus label value';
COMMENT ON FUNCTION eventbus._prom_number(double precision) IS
    'eventbus (internal): format a number for Prometheus';
COMMENT ON FUNCTION eventbus.prometheus() IS
    'eventbus: every metric of this database in the Prometheus text exposition format 0.0.4';
REVOKE EXECUTE ON FUNCTION
    eventbus._acl_changed(),
    eventbus._set_acl(regrole, text, text, boolean),
    eventbus.grant_publish(regrole, text),
    eventbus.revoke_publish(regrole, text),
    eventbus.grant_subscribe(regrole, text),
    eventbus.revoke_subscribe(regrole, text)
FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION eventbus._adopt_restored(), eventbus._check_origin() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION
    eventbus.register_schema(text, jsonb, text, text),
    eventbus.drop_schema(text),
    eventbus._schemas_changed(),
    eventbus._schema_dead_letter(bigint, text, jsonb, text)
FROM PUBLIC;
REVOKE ALL ON eventbus.topic_stats, eventbus.subscription_stats, eventbus.latency_stats,
              eventbus.worker_stats FROM PUBLIC;
GRANT SELECT ON eventbus.topic_stats, eventbus.subscription_stats, eventbus.latency_stats,
                eventbus.worker_stats TO pg_monitor;
REVOKE EXECUTE ON FUNCTION
    eventbus.reset_stats(),
    eventbus.prometheus(),
    eventbus.health(),
    eventbus._stats_sub(integer, bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint, timestamptz[], timestamptz[], boolean),
    eventbus._stats_drop_sub(integer),
    eventbus._stats_prune(integer[]),
    eventbus._stats_move_topics(integer[], integer[]),
    eventbus._stats_topics(),
    eventbus._stats_subscriptions(),
    eventbus._stats_info(),
    eventbus._stats_reset(),
    eventbus._worker_stats(),
    eventbus._worker_stats_reset(),
    eventbus._pending(integer),
    eventbus._unread(integer, bigint, regclass, boolean)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    eventbus.prometheus(),
    eventbus.health(),
    eventbus._stats_topics(),
    eventbus._stats_subscriptions(),
    eventbus._stats_info(),
    eventbus._worker_stats(),
    eventbus._pending(integer)
TO pg_monitor;
REVOKE ALL ON ALL TABLES IN SCHEMA eventbus FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA eventbus FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION
    eventbus.publish(text, jsonb, text, jsonb, timestamptz, interval),
    eventbus.publish_batch(text[], jsonb[], text[], jsonb[], timestamptz, interval)
FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION
    eventbus.subscribe(text, text[], integer, interval, interval, interval, boolean, text, jsonpath, bigint, text, regprocedure, integer),
    eventbus.alter_subscription(text, text[], integer, interval, interval, interval, boolean, jsonpath, bigint, text, text[], regprocedure, integer),
    eventbus.unsubscribe(text),
    eventbus.pause(text),
    eventbus.resume(text),
    eventbus.seek(text, timestamptz),
    eventbus.seek(text, bigint),
    eventbus.grant_subscription(text, regrole, text),
    eventbus.revoke_subscription(text, regrole, text),
    eventbus.alter_subscription_owner(text, regrole),
    eventbus.create_relay(text, text[], text, name, text, jsonb, jsonpath, text, integer, interval, interval),
    eventbus.alter_relay(text, name, text, jsonb),
    eventbus.drop_relay(text),
    eventbus.poll(text, integer, interval, interval, bigint),
    eventbus.ack(text, bigint[], bigint),
    eventbus.nack(text, bigint, text, interval, bigint, boolean),
    eventbus.extend_lease(text, bigint[], interval, bigint),
    eventbus.redrive(text, bigint[]),
    eventbus.purge_dead_letters(text, interval),
    eventbus._snapshot(),
    eventbus._subscription(text, regrole, text),
    eventbus._seek_to(integer, timestamptz, bigint),
    eventbus._backlog(integer, bigint),
    eventbus._subscriptions_changed(),
    eventbus._wake(integer),
    eventbus._wake_at_end(integer, timestamptz),
    eventbus._wake_count(),
    eventbus._wait(timestamptz, bigint)
FROM PUBLIC;
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'eventbus'::regnamespace AND p.proname LIKE '\_%'
                AND p.pronargs > 0 AND p.proargtypes[0] = 'regrole'::regtype
                AND p.proname <> '_check_right' AND p.proname <> '_check_grantee'
                AND p.proname <> '_visible' LOOP
        EXECUTE pg_catalog.format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$$;
REVOKE EXECUTE ON FUNCTION
    eventbus.run_maintenance(),
    eventbus._notify_needed(integer),
    eventbus._maintain(),
    eventbus._maintain_topics(),
    eventbus._chunk_pins(regclass),
    eventbus._chunks_changed(),
    eventbus._worker_start(),
    eventbus.schedule(text, text, text, jsonb),
    eventbus.unschedule(text)
FROM PUBLIC;
REVOKE ALL ON eventbus.chunks FROM PUBLIC;
GRANT SELECT ON eventbus.chunks TO pg_monitor;
GRANT EXECUTE ON FUNCTION eventbus._chunk_pins(regclass) TO pg_monitor;

-- CloudEvents and context propagation (new in 0.2.0, sql/75_cloudevents.sql).
--
-- to_cloudevent and publish_cloudevent map events to and from CloudEvents
-- 1.0 structured mode (src/cloudevent.c); the Kafka relay uses the same
-- mapping for binary mode from C. set_context makes an event the context
-- of the rest of the transaction: what is published meanwhile gets its
-- causation and correlation ids and trace (src/context.c). See
-- docs/cloudevents.md.

-- The identity of this install, in CloudEvents ids (<instance>:<event id>)
-- so that they are unique across clusters. Made by CREATE EXTENSION and
-- not dumped: a restored database is another instance.
CREATE TABLE eventbus.instance (
    id        uuid NOT NULL,
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton)
);
INSERT INTO eventbus.instance (id) VALUES (pg_catalog.gen_random_uuid());
COMMENT ON TABLE eventbus.instance IS 'eventbus: the uuid of this install (one row), the prefix of CloudEvents ids';

CREATE FUNCTION eventbus.instance_id()
RETURNS uuid
AS 'MODULE_PATHNAME', 'eventbus_instance_id'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION eventbus.instance_id() IS
    'eventbus: the uuid CREATE EXTENSION gave this install (the prefix of CloudEvents ids)';

CREATE FUNCTION eventbus.to_cloudevent(event_id bigint, source text DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'eventbus_to_cloudevent'
LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION eventbus.to_cloudevent(bigint, text) IS
    'eventbus: a stored event as a CloudEvents 1.0 JSON object (structured mode)';

CREATE FUNCTION eventbus.publish_cloudevent(event jsonb)
RETURNS bigint
AS 'MODULE_PATHNAME', 'eventbus_publish_cloudevent'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.publish_cloudevent(jsonb) IS
    'eventbus: publish a structured CloudEvent (type: topic, data: payload, partitionkey: key, other attributes: headers); returns its id';

CREATE FUNCTION eventbus.set_context(event_id bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_set_context'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.set_context(bigint) IS
    'eventbus: make a stored event the context of the rest of the transaction (events published get its causation_id, correlation_id, traceparent); NULL clears it';
REVOKE EXECUTE ON FUNCTION
    eventbus.publish_cloudevent(jsonb),
    eventbus.set_context(bigint)
FROM PUBLIC;
REVOKE ALL ON eventbus.instance FROM PUBLIC;

-- What users were granted before, granted again.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT * FROM eventbus_update_acl LOOP
        EXECUTE pg_catalog.format('GRANT %s ON %s %s TO %I', r.privilege,
                                  CASE r.kind WHEN 'function' THEN 'FUNCTION' ELSE 'TABLE' END,
                                  CASE r.kind WHEN 'function' THEN r.new_name::regprocedure::text ELSE r.new_name END,
                                  (SELECT rolname FROM pg_catalog.pg_roles WHERE oid = r.grantee));
    END LOOP;
END
$$;
DROP TABLE eventbus_update_acl;

