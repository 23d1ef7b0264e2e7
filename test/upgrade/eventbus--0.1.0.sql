-- eventbus install script, part 00: the event log.
--
-- Events live in a fixed ring of chunk tables (event_log_0 .. event_log_2)
-- that inherit from eventbus.event_log. publish() appends to the current
-- chunk only; storage is reclaimed by TRUNCATE of a whole chunk once nobody
-- needs it, never by DELETE. See docs/architecture.md.

\echo Use "CREATE EXTENSION eventbus" to load this file. \quit

COMMENT ON SCHEMA eventbus IS 'eventbus: the database as an event bus';

-- Event ids. Ids are unique but not commit-ordered: readers order by the
-- publishing transaction (txid), never by id alone.
CREATE SEQUENCE eventbus.event_id_seq AS bigint;
COMMENT ON SEQUENCE eventbus.event_id_seq IS 'eventbus: event ids';

-- Topic dictionary: each distinct topic is stored once, events carry its id,
-- so matching runs once per distinct topic. The topic column has no unique
-- index on purpose: a unique index would make two transactions that publish
-- the same brand-new topic wait for each other. A race can leave two ids for
-- one topic; readers map both to the same text.
CREATE SEQUENCE eventbus.topic_id_seq AS integer;
COMMENT ON SEQUENCE eventbus.topic_id_seq IS 'eventbus: topic dictionary ids';
CREATE TABLE eventbus.topic (
    id         integer PRIMARY KEY,
    topic      text COLLATE "C" NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX topic_topic_idx ON eventbus.topic (topic);
COMMENT ON TABLE eventbus.topic IS 'eventbus: topic dictionary (id -> topic text)';

-- The parent of the chunks: reading it reads every chunk. It holds no rows.
CREATE TABLE eventbus.event_log (
    id           bigint NOT NULL,
    txid         xid8 NOT NULL,          -- top-level xid of the publishing transaction
    published_at timestamptz NOT NULL,   -- now() of the publishing transaction
    topic_id     integer NOT NULL,       -- eventbus.topic.id
    key          text,                   -- ordering key, optional
    payload      jsonb NOT NULL,
    headers      jsonb,                  -- JSON object of strings, optional
    deliver_at   timestamptz,            -- not handed out before this, optional
    expires_at   timestamptz,            -- not handed out after this, optional
    rejected_by  text                    -- a schema (pattern) the payload failed, with on_invalid
                                         -- 'dead_letter': only dead letters refer to it
);
COMMENT ON TABLE eventbus.event_log IS 'eventbus: the event log (parent of the chunk tables)';

CREATE TABLE eventbus.event_log_0 () INHERITS (eventbus.event_log);
CREATE TABLE eventbus.event_log_1 () INHERITS (eventbus.event_log);
CREATE TABLE eventbus.event_log_2 () INHERITS (eventbus.event_log);
-- One index per chunk: readers select by publishing transaction (the tick
-- formula of docs/architecture.md) and fetch single events by (txid, id).
CREATE INDEX event_log_0_txid_idx ON eventbus.event_log_0 (txid, id);
CREATE INDEX event_log_1_txid_idx ON eventbus.event_log_1 (txid, id);
CREATE INDEX event_log_2_txid_idx ON eventbus.event_log_2 (txid, id);
COMMENT ON TABLE eventbus.event_log_0 IS 'eventbus: event log chunk 0';
COMMENT ON TABLE eventbus.event_log_1 IS 'eventbus: event log chunk 1';
COMMENT ON TABLE eventbus.event_log_2 IS 'eventbus: event log chunk 2';

-- The ring of chunks and which one receives new events. Changed only by
-- eventbus's own C code, which invalidates every backend's cached copy.
CREATE TABLE eventbus.chunk (
    chunk_no     integer PRIMARY KEY CHECK (chunk_no BETWEEN 0 AND 2),
    relname      name NOT NULL UNIQUE,
    is_current   boolean NOT NULL DEFAULT false,
    opened_at    timestamptz,            -- when it last became current
    sealed_at    timestamptz,            -- when publishing last moved on from it
    reclaimed_at timestamptz             -- when it was last truncated
);
CREATE UNIQUE INDEX chunk_one_current ON eventbus.chunk (is_current) WHERE is_current;
INSERT INTO eventbus.chunk (chunk_no, relname, is_current, opened_at) VALUES
    (0, 'event_log_0', true, now()),
    (1, 'event_log_1', false, NULL),
    (2, 'event_log_2', false, NULL);
COMMENT ON TABLE eventbus.chunk IS 'eventbus: the ring of event log chunks';

-- pg_dump keeps the events, the topics they refer to and the id sequences.
-- The chunk ring itself is rebuilt by CREATE EXTENSION on restore.
SELECT pg_catalog.pg_extension_config_dump('eventbus.event_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.topic_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.topic', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.event_log_0', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.event_log_1', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.event_log_2', '');

-- A readable view of the log for operators.
CREATE VIEW eventbus.events AS
SELECT e.id, t.topic, e.key, e.payload, e.headers, e.published_at,
       e.deliver_at, e.expires_at, e.txid,
       (SELECT c.chunk_no FROM eventbus.chunk c WHERE c.relname = p.relname) AS chunk
  FROM eventbus.event_log e
  JOIN pg_catalog.pg_class p ON p.oid = e.tableoid
  JOIN eventbus.topic t ON t.id = e.topic_id;
COMMENT ON VIEW eventbus.events IS 'eventbus: every stored event, with its topic text and chunk';
-- eventbus install script, part 10: topic and pattern grammar.

CREATE FUNCTION eventbus.topic_matches(topic text, pattern text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'eventbus_topic_matches'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION eventbus.topic_matches(text, text) IS
    'eventbus: does the topic match the pattern ("*" one word, "#" zero or more words)';

CREATE FUNCTION eventbus.is_valid_topic(topic text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'eventbus_is_valid_topic'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION eventbus.is_valid_topic(text) IS
    'eventbus: is the text a valid topic (for CHECK constraints)';

CREATE FUNCTION eventbus.is_valid_pattern(pattern text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'eventbus_is_valid_pattern'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION eventbus.is_valid_pattern(text) IS
    'eventbus: is the text a valid subscription pattern (for CHECK constraints)';
-- eventbus install script, part 20: publishing.
-- Neither function is STRICT: a NULL key, headers, deliver_at or ttl means
-- "not given", and a NULL topic or payload is an error, never a silent NULL.

CREATE FUNCTION eventbus.publish(
    topic      text,
    payload    jsonb,
    key        text DEFAULT NULL,
    headers    jsonb DEFAULT NULL,
    deliver_at timestamptz DEFAULT NULL,
    ttl        interval DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'eventbus_publish'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.publish(text, jsonb, text, jsonb, timestamptz, interval) IS
    'eventbus: publish one event in the current transaction; returns its id';

CREATE FUNCTION eventbus.publish_batch(
    topics     text[],
    payloads   jsonb[],
    keys       text[] DEFAULT NULL,
    headers    jsonb[] DEFAULT NULL,
    deliver_at timestamptz DEFAULT NULL,
    ttl        interval DEFAULT NULL)
RETURNS SETOF bigint
AS 'MODULE_PATHNAME', 'eventbus_publish_batch'
LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 100;
COMMENT ON FUNCTION eventbus.publish_batch(text[], jsonb[], text[], jsonb[], timestamptz, interval) IS
    'eventbus: publish many events in the current transaction; returns their ids in order';
-- eventbus install script, part 30: subscriptions.
--
-- A subscription is configuration (eventbus.subscription), a position in
-- the log (eventbus.cursor) and rows only for events that are leased,
-- waiting for a retry or a delay, or dead (eventbus.delivery). Nothing is
-- copied per subscription at publish time. See docs/consuming.md.

CREATE TABLE eventbus.subscription (
    id              integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    patterns        text[] NOT NULL,
    max_attempts    integer NOT NULL,
    backoff_initial interval NOT NULL,
    backoff_max     interval NOT NULL,
    lease           interval NOT NULL,
    ordered         boolean NOT NULL DEFAULT false,
    filter          jsonpath,
    max_backlog     bigint,
    on_overflow     text NOT NULL DEFAULT 'reject' CHECK (on_overflow IN ('reject', 'drop_oldest')),
    paused          boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    handler         regprocedure            -- called by the background worker per event
);
COMMENT ON TABLE eventbus.subscription IS 'eventbus: subscriptions (configuration)';
COMMENT ON SEQUENCE eventbus.subscription_id_seq IS 'eventbus: subscription ids';

-- What a handler subscription's function receives, one event per call.
CREATE TYPE eventbus.event AS (
    id           bigint,
    topic        text,
    key          text,
    payload      jsonb,
    headers      jsonb,
    published_at timestamptz,
    attempt      integer,        -- 1 on the first try
    subscription text
);
COMMENT ON TYPE eventbus.event IS 'eventbus: an event as handed to a handler function';

-- Where a subscription stands in the log. The window (win_lo, win_hi] holds
-- the events whose publishing transaction committed after snapshot win_lo
-- and by snapshot win_hi; (pos_txid, pos_id) is the last event of the window
-- already handed out, in (txid, id) order; a fresh window starts at
-- (xmin(win_lo), 0), below every event in it. Kept apart from the
-- configuration so that polling never locks what alter/pause change.
CREATE TABLE eventbus.cursor (
    sub_id     integer PRIMARY KEY,          -- eventbus.subscription.id
    win_lo     pg_snapshot NOT NULL,
    win_hi     pg_snapshot,
    pos_txid   xid8,
    pos_id     bigint,
    start_time timestamptz,         -- start_at or seek to a time: skip events published before it
    start_id   bigint,              -- seek to an event id: skip events with a lower id
    expired    bigint NOT NULL DEFAULT 0   -- events not handed out because their ttl ran out
);
COMMENT ON TABLE eventbus.cursor IS 'eventbus: each subscription''s position in the log';

-- One row per event that a subscription has leased out, is retrying or
-- delaying, or has given up on. An acked event has no row. For ordered
-- subscriptions, keyed rows carry the key and their place in the key's
-- queue (ord): only the row of a key with the lowest ord is handed out.
CREATE TABLE eventbus.delivery (
    sub_id       integer NOT NULL,        -- eventbus.subscription.id (no FK: no check per insert)
    event_id     bigint NOT NULL,
    txid         xid8 NOT NULL,           -- to fetch the event by the log's (txid, id) index
    state        text NOT NULL CHECK (state IN ('leased', 'waiting', 'dead')),
    attempt      integer NOT NULL,        -- handed out this many times
    available_at timestamptz NOT NULL,    -- leased: lease end; waiting: next try
    last_error   text,
    reason       text CHECK (reason IN ('failed', 'lease_expired', 'redriven', 'overflow', 'schema')),
    dead_at      timestamptz,
    key          text,                    -- ordered subscriptions only
    ord          bigint,                  -- ordered subscriptions only: place in the key's queue
    leased_at    timestamptz,             -- leased: when the lease began (for the ack latency)
    PRIMARY KEY (sub_id, event_id)
);
CREATE INDEX delivery_due_idx ON eventbus.delivery (sub_id, available_at) WHERE state <> 'dead';
CREATE INDEX delivery_key_idx ON eventbus.delivery (sub_id, key, ord)
    WHERE key IS NOT NULL AND state <> 'dead';
CREATE SEQUENCE eventbus.delivery_ord_seq;
COMMENT ON SEQUENCE eventbus.delivery_ord_seq IS 'eventbus: queue order of keyed deliveries of ordered subscriptions';
COMMENT ON TABLE eventbus.delivery IS 'eventbus: leased, waiting and dead deliveries';

SELECT pg_catalog.pg_extension_config_dump('eventbus.subscription', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.subscription_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.cursor', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.delivery', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.delivery_ord_seq', '');

-- Tells other backends that subscriptions changed (publish caches the ones
-- with a backlog limit).
CREATE FUNCTION eventbus._subscriptions_changed()
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_subscriptions_changed'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus._subscriptions_changed() IS
    'eventbus (internal): invalidate the caches of subscription options in every backend';

-- Waiting pollers (poll's wait) sleep until a transaction that made events
-- pollable commits: publishes, nacks, redrives, seeks and resumes call
-- _wake, which wakes them at commit. See docs/consuming.md.
CREATE FUNCTION eventbus._wake(sub_id integer DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_wake'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus._wake(integer) IS
    'eventbus (internal): at commit, wake waiting pollers and have the worker notify subscription sub_id';

CREATE FUNCTION eventbus._wake_at_end(sub_id integer, due timestamptz)
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_wake_at_end'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus._wake_at_end(integer, timestamptz) IS
    'eventbus (internal): this transaction wrote deliveries due at "due": wake and notify if it ends after that, or rolls back';

CREATE FUNCTION eventbus._wake_count()
RETURNS bigint
AS 'MODULE_PATHNAME', 'eventbus_wake_count'
LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION eventbus._wake_count() IS
    'eventbus (internal): how many wake-ups there have been (poll waits for it to change)';

CREATE FUNCTION eventbus._wait(until timestamptz, seen bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_wait'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus._wait(timestamptz, bigint) IS
    'eventbus (internal): sleep until the wake count differs from seen, or until the time';

-- The current snapshot, with this transaction's own xid counted as still in
-- progress: a poller must neither receive nor step over the events its own
-- transaction publishes (they are handed out after it commits).
CREATE FUNCTION eventbus._snapshot()
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
COMMENT ON FUNCTION eventbus._snapshot() IS
    'eventbus (internal): current snapshot counting the own transaction as in progress';

-- Raises 22023 unless the name can be a subscription name.
CREATE FUNCTION eventbus._check_name(name text)
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

COMMENT ON FUNCTION eventbus._check_name(text) IS
    'eventbus (internal): raise 22023 unless the text is a valid subscription name';

-- Returns the subscription row, or raises 42704 naming it.
CREATE FUNCTION eventbus._subscription(name text)
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
    RETURN s;
END
$$;
COMMENT ON FUNCTION eventbus._subscription(text) IS
    'eventbus (internal): the subscription of that name, or error 42704';

-- Raises 22023 unless an interval is positive and at most the given limit.
CREATE FUNCTION eventbus._check_interval(what text, value interval, lim interval)
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

COMMENT ON FUNCTION eventbus._check_interval(text, interval, interval) IS
    'eventbus (internal): raise 22023 unless the interval is positive and within the limit';

-- The calling role, also inside SECURITY DEFINER functions.
CREATE FUNCTION eventbus._caller()
RETURNS oid
AS 'MODULE_PATHNAME', 'eventbus_caller'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION eventbus._caller() IS
    'eventbus (internal): the role calling (current_user outside SECURITY DEFINER functions)';

-- Raises a clear error unless every option of the subscription row is valid.
CREATE FUNCTION eventbus._check_subscription(s eventbus.subscription)
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
       AND NOT (pg_has_role(eventbus._caller(),
                            (SELECT p.proowner FROM pg_proc p WHERE p.oid = s.handler), 'USAGE')
                AND has_function_privilege(eventbus._caller(), s.handler, 'EXECUTE')) THEN
        RAISE EXCEPTION 'permission denied for handler function %', s.handler
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'The worker runs a handler as the owner of the function.',
                  HINT = 'Only the owner of the function (or a member of its role) with EXECUTE on it may make it a handler.';
    END IF;
END
$$;
COMMENT ON FUNCTION eventbus._check_subscription(eventbus.subscription) IS
    'eventbus (internal): raise a clear error unless every option of a subscription is valid';

-- Parses start_at ('now', 'earliest' or a time) into the cursor's start.
CREATE FUNCTION eventbus._start_time(start_at text)
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
COMMENT ON FUNCTION eventbus._start_time(text) IS
    'eventbus (internal): the time a start_at names, NULL for ''now'' and ''earliest'', or error 22023';

CREATE FUNCTION eventbus.subscribe(
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
    handler         regprocedure DEFAULT NULL)
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
    s.on_overflow := on_overflow; s.handler := handler;
    PERFORM eventbus._check_subscription(s);
    t := eventbus._start_time(start_at);

    INSERT INTO eventbus.subscription AS sb (name, patterns, max_attempts, backoff_initial,
                                             backoff_max, lease, ordered, filter, max_backlog,
                                             on_overflow, handler)
    VALUES (s.name, s.patterns, s.max_attempts, s.backoff_initial, s.backoff_max, s.lease,
            s.ordered, s.filter, s.max_backlog, s.on_overflow, s.handler)
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
COMMENT ON FUNCTION eventbus.subscribe(text, text[], integer, interval, interval, interval, boolean, text, jsonpath, bigint, text, regprocedure) IS
    'eventbus: create a durable subscription to every event whose topic matches one of the patterns';

CREATE FUNCTION eventbus.alter_subscription(
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
    handler         regprocedure DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s eventbus.subscription := eventbus._subscription(alter_subscription.name);
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
            ELSE
                RAISE EXCEPTION 'cannot reset "%"', r
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'reset takes option names: filter, max_backlog, max_attempts, backoff_initial, backoff_max, lease, ordered, on_overflow, handler.';
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
    PERFORM eventbus._check_subscription(s);
    UPDATE eventbus.subscription sb
       SET patterns = s.patterns, max_attempts = s.max_attempts, backoff_initial = s.backoff_initial,
           backoff_max = s.backoff_max, lease = s.lease, ordered = s.ordered, filter = s.filter,
           max_backlog = s.max_backlog, on_overflow = s.on_overflow, handler = s.handler
     WHERE sb.id = s.id;
    PERFORM eventbus._subscriptions_changed();
    PERFORM eventbus._wake(s.id);       -- the worker looks at it again (handler, patterns)
END
$$;
COMMENT ON FUNCTION eventbus.alter_subscription(text, text[], integer, interval, interval, interval, boolean, jsonpath, bigint, text, text[], regprocedure) IS
    'eventbus: change options of a subscription (NULL keeps an option; reset => names puts options back to their defaults)';

CREATE FUNCTION eventbus.unsubscribe(name text)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub integer := (eventbus._subscription(unsubscribe.name)).id;
BEGIN
    DELETE FROM eventbus.delivery d WHERE d.sub_id = v_sub;
    DELETE FROM eventbus.cursor c WHERE c.sub_id = v_sub;
    DELETE FROM eventbus.subscription s WHERE s.id = v_sub;
    PERFORM eventbus._subscriptions_changed();
    PERFORM eventbus._stats_drop_sub(v_sub);
END
$$;
COMMENT ON FUNCTION eventbus.unsubscribe(text) IS
    'eventbus: drop a subscription with its position, leases and dead letters';

CREATE FUNCTION eventbus.pause(name text)
RETURNS void
LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE eventbus.subscription s SET paused = true WHERE s.id = (eventbus._subscription(pause.name)).id;
$$;
COMMENT ON FUNCTION eventbus.pause(text) IS
    'eventbus: stop handing out events of a subscription (they keep accumulating)';

CREATE FUNCTION eventbus.resume(name text)
RETURNS void
LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE eventbus.subscription s SET paused = false WHERE s.id = (eventbus._subscription(resume.name)).id;
    SELECT eventbus._wake((eventbus._subscription(resume.name)).id);  -- waiting pollers and LISTENers look again
$$;
COMMENT ON FUNCTION eventbus.resume(text) IS 'eventbus: hand out events of a paused subscription again';

CREATE VIEW eventbus.subscriptions AS
SELECT s.name, s.patterns, s.max_attempts, s.backoff_initial, s.backoff_max, s.lease,
       s.ordered, s.filter, s.max_backlog, s.on_overflow, s.paused,
       'eventbus_' || s.name AS channel, s.created_at, s.handler,
       (SELECT count(*) FROM eventbus.delivery d WHERE d.sub_id = s.id AND d.state = 'leased') AS leased,
       (SELECT count(*) FROM eventbus.delivery d WHERE d.sub_id = s.id AND d.state = 'waiting') AS waiting,
       (SELECT count(*) FROM eventbus.delivery d WHERE d.sub_id = s.id AND d.state = 'dead') AS dead,
       c.expired
  FROM eventbus.subscription s JOIN eventbus.cursor c ON c.sub_id = s.id;
COMMENT ON VIEW eventbus.subscriptions IS
    'eventbus: every subscription with its options, LISTEN channel and delivery counts';

-- Moves the subscription back (or forward) to a point of the log: from
-- then on, poll hands out again every retained event from that point.
-- Deliveries in flight (leased or waiting) stay as they are: the replay
-- skips their events. Dead letters from the point on are handed out again.
CREATE FUNCTION eventbus._seek(sub_id integer, since timestamptz, from_event bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM eventbus._check_origin();
    UPDATE eventbus.cursor c
       SET win_lo = '1:1:', win_hi = NULL, pos_txid = NULL, pos_id = NULL,
           start_time = since, start_id = from_event
     WHERE c.sub_id = _seek.sub_id;
    PERFORM eventbus._wake(sub_id);
END
$$;
COMMENT ON FUNCTION eventbus._seek(integer, timestamptz, bigint) IS
    'eventbus (internal): move a subscription to a time or an event id';

CREATE FUNCTION eventbus.seek(name text, since timestamptz)
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
    PERFORM eventbus._seek((eventbus._subscription(seek.name)).id, since, NULL);
END
$$;
COMMENT ON FUNCTION eventbus.seek(text, timestamptz) IS
    'eventbus: replay every retained event published at or after a time (or skip those before it)';

CREATE FUNCTION eventbus.seek(name text, from_event bigint)
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
    PERFORM eventbus._seek((eventbus._subscription(seek.name)).id, NULL, from_event);
END
$$;
COMMENT ON FUNCTION eventbus.seek(text, bigint) IS
    'eventbus: replay every retained event from an event id on (or skip those before it)';
-- eventbus install script, part 40: consuming.
--
-- poll hands out, in this order: deliveries that are due again (waiting
-- retries and delays, expired leases), then new events read from the log
-- through the subscription's window of snapshots. New events are read in
-- commit order by the snapshot formula of docs/architecture.md, never by
-- "id > last id", so a transaction that commits late is still delivered.
--
-- Locking: due deliveries are taken with FOR UPDATE SKIP LOCKED; new events
-- are taken by the poller that holds the subscription's cursor row, taken
-- with FOR UPDATE SKIP LOCKED too. No poller ever waits for another; two
-- pollers never receive the same event while its lease is held.

-- The delay before retry number "attempt" + 1: initial * 2^(attempt-1),
-- capped, then between half and all of it (jitter).
CREATE FUNCTION eventbus._backoff(initial interval, maximum interval, attempt integer)
RETURNS interval
LANGUAGE sql VOLATILE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT d * (0.5 + random() * 0.5)
      FROM (SELECT CASE WHEN attempt > 40 THEN maximum
                        ELSE least(initial * power(2, greatest(attempt - 1, 0)), maximum) END AS d) q
$$;
COMMENT ON FUNCTION eventbus._backoff(interval, interval, integer) IS
    'eventbus (internal): exponential backoff with jitter';

-- The ids of the topics that match any of the patterns.
CREATE FUNCTION eventbus._topic_ids(patterns text[])
RETURNS integer[]
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY(SELECT t.id FROM eventbus.topic t
                  WHERE EXISTS (SELECT 1 FROM unnest(patterns) p
                                 WHERE eventbus.topic_matches(t.topic, p)))
$$;
COMMENT ON FUNCTION eventbus._topic_ids(text[]) IS
    'eventbus (internal): ids of the topics any of the patterns match';

-- The events of the log a subscription has not read yet: matching one of
-- its topics and its filter, after its position, not rejected by a schema;
-- expired ones included. Inlined into its callers (which pin search_path).
CREATE FUNCTION eventbus._unread(s eventbus.subscription, c eventbus.cursor, topics integer[])
RETURNS TABLE (published_at timestamptz, expires_at timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT ev.published_at, ev.expires_at
      FROM eventbus.event_log ev
     WHERE ev.txid >= pg_catalog.pg_snapshot_xmin(c.win_lo)
       AND ev.topic_id = ANY (topics)
       AND ev.rejected_by IS NULL
       AND NOT pg_catalog.pg_visible_in_snapshot(ev.txid, c.win_lo)
       AND (c.win_hi IS NULL OR NOT pg_catalog.pg_visible_in_snapshot(ev.txid, c.win_hi)
            OR (ev.txid, ev.id) > (c.pos_txid, c.pos_id))
       AND (c.start_time IS NULL OR ev.published_at >= c.start_time)
       AND (c.start_id IS NULL OR ev.id >= c.start_id)
       AND (s.filter IS NULL OR coalesce(ev.payload @@ s.filter, false))
$$;
COMMENT ON FUNCTION eventbus._unread(eventbus.subscription, eventbus.cursor, integer[]) IS
    'eventbus (internal): events of the log a subscription has not read yet';

-- The names of the topics, as a JSON object from id (as text) to topic:
-- poll looks each event's topic up there instead of joining the dictionary.
CREATE FUNCTION eventbus._topic_names(topics integer[])
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_object_agg(t.id::text, t.topic), '{}')
      FROM eventbus.topic t WHERE t.id = ANY (topics)
$$;
COMMENT ON FUNCTION eventbus._topic_names(integer[]) IS
    'eventbus (internal): id -> topic of the given topics, as jsonb';

-- A subscription's backlog: events waiting for a retry or a delay, plus the
-- matching events in the log it has not read yet (after its filter, not
-- expired), counted up to "lim". Publish (on_overflow 'reject') and poll
-- (on_overflow 'drop_oldest') compare it with max_backlog.
CREATE FUNCTION eventbus._backlog(sub_id integer, lim bigint)
RETURNS bigint
LANGUAGE plpgsql STABLE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s eventbus.subscription;
    c eventbus.cursor;
    n bigint;
    v_topics integer[];
BEGIN
    SELECT * INTO s FROM eventbus.subscription sb WHERE sb.id = _backlog.sub_id;
    SELECT * INTO c FROM eventbus.cursor cu WHERE cu.sub_id = _backlog.sub_id;
    IF s.id IS NULL OR c.sub_id IS NULL THEN
        RETURN 0;
    END IF;
    SELECT count(*) INTO n
      FROM (SELECT 1 FROM eventbus.delivery d
             WHERE d.sub_id = _backlog.sub_id AND d.state = 'waiting' LIMIT lim) q;
    IF n >= lim THEN
        RETURN n;
    END IF;
    v_topics := eventbus._topic_ids(s.patterns);
    RETURN n + (SELECT count(*)
                  FROM (SELECT 1 FROM eventbus._unread(s, c, v_topics) u
                         WHERE u.expires_at IS NULL OR u.expires_at > clock_timestamp()
                         LIMIT lim - n) q);
END
$$;
COMMENT ON FUNCTION eventbus._backlog(integer, bigint) IS
    'eventbus (internal): pending events of a subscription (waiting plus unread), counted up to lim';

CREATE FUNCTION eventbus.poll(
    subscription text,
    max_events   integer  DEFAULT 100,
    lease        interval DEFAULT NULL,
    wait         interval DEFAULT '0')
RETURNS TABLE (event_id bigint, topic text, key text, payload jsonb, headers jsonb,
               published_at timestamptz, attempt integer, lease_until timestamptz)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s          eventbus.subscription;
    c          eventbus.cursor;
    v_now      timestamptz;
    v_until    timestamptz;
    v_deadline timestamptz;         -- NULL: do not wait
    v_wakes    bigint;
    v_left     integer;             -- events still to hand out in this call
    v_want     integer;             -- events still to take in the current mode
    v_mode     text;                -- 'drop' (overflow to the DLQ) or 'lease'
    v_got      integer;
    v_more     boolean;             -- stopped at max_events: others may find more
    v_expired  bigint[];            -- due deliveries whose ttl ran out
    v_topics   integer[];
    v_names    jsonb;                   -- topic id (as text) -> topic, of v_topics
    v_hi       pg_snapshot;
    v_seen     integer;
    v_limit    integer;
    v_fresh    boolean;
    v_blocked  boolean;
    v_denied   boolean;             -- another poller holds the cursor
    v_ids      bigint[] := '{}';
    v_txids    xid8[] := '{}';
    v_keys     text[] := '{}';          -- ordered: keys of overflowed events
    v_replay   boolean;                 -- replaying after seek
    v_looked   pg_snapshot;             -- a waiting poll: the log as of its last look
    v_due      timestamptz;             -- earliest lease end or delay written
    -- Counted for the stats at commit (eventbus._stats_sub).
    v_n_read   integer := 0;            -- taken from the log
    v_n_deliv  integer := 0;            -- handed out
    v_n_retry  integer := 0;            -- handed out again
    v_n_dead   integer := 0;
    v_n_exp    integer := 0;            -- expired (ttl)
    v_first    timestamptz[] := '{}';   -- first hand-outs: when they became deliverable
    d          record;
    e          record;
BEGIN
    PERFORM eventbus._check_origin();          -- before reading the clock
    s := eventbus._subscription(subscription);
    IF max_events IS NULL OR max_events < 1 OR max_events > 10000 THEN
        RAISE EXCEPTION 'max_events must be between 1 and 10000: %', max_events
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass e.g. 100.';
    END IF;
    IF lease IS NOT NULL THEN
        PERFORM eventbus._check_interval('lease', lease, interval '1 day');
    END IF;
    IF wait IS NULL OR wait < interval '0' OR wait > interval '1 hour' THEN
        RAISE EXCEPTION 'wait must be between 0 and 1 hour: "%"', wait
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass e.g. interval ''5 seconds'', or 0 not to wait.';
    END IF;
    -- Waiting needs a new snapshot per attempt: READ COMMITTED only.
    IF wait > interval '0' AND current_setting('transaction_isolation') = 'read committed' THEN
        v_deadline := clock_timestamp() + wait;
    END IF;

    v_topics := eventbus._topic_ids(s.patterns);
    v_names := eventbus._topic_names(v_topics);
    LOOP
        -- "Polled now", before looking: a notification the worker sends
        -- after this is not held back for this subscription (src/stats.c).
        PERFORM eventbus._stats_sub(s.id, polled => true);
        IF v_deadline IS NOT NULL THEN
            v_wakes := eventbus._wake_count(); -- before looking: no wake-up is missed
            v_looked := eventbus._snapshot();
        END IF;
        v_now := clock_timestamp();
        v_denied := false;
        v_until := v_now + coalesce(lease, s.lease);
        v_left := max_events;
        v_got := 0;
        v_more := false;
        v_expired := '{}';

        -- 1. Deliveries due again: waiting ones whose time has come, expired
        -- leases; of an ordered subscription only the first of each key.
        FOR d IN
            SELECT dl.event_id, dl.txid, dl.state, dl.attempt, dl.reason
              FROM eventbus.delivery dl
             WHERE dl.sub_id = s.id AND dl.state <> 'dead' AND dl.available_at <= v_now
               AND NOT s.paused
               AND (NOT s.ordered OR dl.key IS NULL
                    OR NOT EXISTS (SELECT 1 FROM eventbus.delivery k
                                    WHERE k.sub_id = dl.sub_id AND k.key = dl.key
                                      AND k.state <> 'dead' AND k.event_id <> dl.event_id
                                      AND (k.ord < dl.ord OR k.state = 'leased')))
             ORDER BY dl.available_at, dl.event_id
             LIMIT max_events
               FOR UPDATE OF dl SKIP LOCKED
        LOOP
            IF d.state = 'leased' AND d.attempt >= s.max_attempts THEN
                UPDATE eventbus.delivery dl
                   SET state = 'dead', reason = 'lease_expired', dead_at = v_now,
                       last_error = coalesce(dl.last_error, 'lease expired')
                 WHERE dl.sub_id = s.id AND dl.event_id = d.event_id;
                v_n_dead := v_n_dead + 1;
                IF s.ordered THEN
                    PERFORM eventbus._wake(s.id);   -- the next event of its key is pollable now
                END IF;
                CONTINUE;
            END IF;
            SELECT ev.id, t.topic, ev.key, ev.payload, ev.headers, ev.published_at, ev.deliver_at,
                   ev.expires_at
              INTO e
              FROM eventbus.event_log ev JOIN eventbus.topic t ON t.id = ev.topic_id
             WHERE ev.txid = d.txid AND ev.id = d.event_id;
            IF NOT FOUND OR e.expires_at <= v_now THEN
                v_expired := v_expired || d.event_id;     -- counted below, with the cursor
                IF s.ordered THEN
                    PERFORM eventbus._wake(s.id);   -- the next event of its key is pollable now
                END IF;
                CONTINUE;
            END IF;
            UPDATE eventbus.delivery dl
               SET state = 'leased', attempt = dl.attempt + 1, available_at = v_until, leased_at = v_now
             WHERE dl.sub_id = s.id AND dl.event_id = d.event_id;
            v_n_deliv := v_n_deliv + 1;
            IF d.attempt > 0 OR d.reason = 'redriven' THEN
                v_n_retry := v_n_retry + 1;
            ELSE                            -- delayed or queued behind its key until now
                v_first := v_first || greatest(e.published_at, e.deliver_at);
            END IF;
            event_id := e.id; topic := e.topic; key := e.key; payload := e.payload;
            headers := e.headers; published_at := e.published_at;
            attempt := d.attempt + 1; lease_until := v_until;
            RETURN NEXT;
            v_left := v_left - 1;
            v_got := v_got + 1;
        END LOOP;
        v_more := v_left <= 0;

        -- 2. New events, by whoever holds the cursor; the others skip this step.
        IF NOT s.paused AND (v_left > 0 OR cardinality(v_expired) > 0) THEN
            SELECT * INTO c FROM eventbus.cursor cu WHERE cu.sub_id = s.id FOR UPDATE SKIP LOCKED;
            v_denied := NOT FOUND;
        ELSE
            c := NULL;
        END IF;
        IF c.sub_id IS NOT NULL THEN
            IF cardinality(v_expired) > 0 THEN
                DELETE FROM eventbus.delivery dl WHERE dl.sub_id = s.id AND dl.event_id = ANY (v_expired);
                c.expired := c.expired + cardinality(v_expired);
                v_n_exp := v_n_exp + cardinality(v_expired);
            END IF;
            v_replay := c.start_time IS NOT NULL OR c.start_id IS NOT NULL;

            -- Over max_backlog with on_overflow 'drop_oldest': the oldest
            -- unread events go to the DLQ first ('drop' mode), then the
            -- rest is leased as usual.
            FOREACH v_mode IN ARRAY ARRAY['drop', 'lease'] LOOP
                IF v_mode = 'drop' THEN
                    CONTINUE WHEN s.max_backlog IS NULL OR s.on_overflow <> 'drop_oldest';
                    v_want := least(eventbus._backlog(s.id, s.max_backlog + 10000) - s.max_backlog, 10000);
                ELSE
                    v_want := v_left;
                END IF;
                CONTINUE WHEN v_want <= 0;
                v_fresh := false;

                -- The rest of the current window, then at most one fresh window.
                LOOP
                    IF c.win_hi IS NULL THEN
                        EXIT WHEN v_fresh;
                        v_hi := eventbus._snapshot();
                        -- Snapshots only move forward: a snapshot older than the
                        -- window's start (possible under REPEATABLE READ) reads
                        -- nothing now.
                        EXIT WHEN pg_snapshot_xmax(v_hi) < pg_snapshot_xmax(c.win_lo)
                               OR EXISTS (SELECT 1 FROM pg_snapshot_xip(v_hi) x
                                           WHERE pg_visible_in_snapshot(x, c.win_lo));
                        -- Every event of the window has txid >= xmin(win_lo): start
                        -- there, so the position is always an index condition.
                        c.win_hi := v_hi; c.pos_txid := pg_snapshot_xmin(c.win_lo); c.pos_id := 0;
                        v_fresh := true;
                    END IF;

                    v_limit := v_want;
                    v_seen := 0;
                    FOR e IN
                        -- Two ordered walks of the (txid, id) indexes from the
                        -- position, each limited, on the log alone (an OR would
                        -- make the planner sort the whole window); topics are
                        -- joined to what they return.
                        SELECT w.id, w.txid, w.topic_id, w.key, w.payload, w.headers, w.published_at,
                               w.deliver_at, w.expires_at
                          FROM ((SELECT ev.id, ev.txid, ev.topic_id, ev.key, ev.payload, ev.headers,
                                        ev.published_at, ev.deliver_at, ev.expires_at
                                   FROM eventbus.event_log ev      -- in progress at win_lo
                                  WHERE ev.txid = ANY (ARRAY(SELECT pg_snapshot_xip(c.win_lo)))
                                    -- A one-time filter: no scan at all when no
                                    -- transaction was in progress at win_lo.
                                    AND pg_snapshot_xmin(c.win_lo) <> pg_snapshot_xmax(c.win_lo)
                                    AND ev.topic_id = ANY (v_topics)
                                    AND ev.rejected_by IS NULL
                                    AND pg_visible_in_snapshot(ev.txid, c.win_hi)
                                    AND (ev.txid, ev.id) > (c.pos_txid, c.pos_id)
                                  ORDER BY ev.txid, ev.id
                                  LIMIT v_limit)
                                UNION ALL
                                (SELECT ev.id, ev.txid, ev.topic_id, ev.key, ev.payload, ev.headers,
                                        ev.published_at, ev.deliver_at, ev.expires_at
                                   FROM eventbus.event_log ev      -- started after win_lo
                                  WHERE ev.txid >= pg_snapshot_xmax(c.win_lo)
                                    AND ev.txid < pg_snapshot_xmax(c.win_hi)
                                    AND ev.topic_id = ANY (v_topics)
                                    AND ev.rejected_by IS NULL
                                    AND pg_visible_in_snapshot(ev.txid, c.win_hi)
                                    AND (ev.txid, ev.id) > (c.pos_txid, c.pos_id)
                                  ORDER BY ev.txid, ev.id
                                  LIMIT v_limit)) w
                         ORDER BY w.txid, w.id        -- every xip txid is below xmax(win_lo)
                         LIMIT v_limit
                    LOOP
                        v_seen := v_seen + 1;
                        c.pos_txid := e.txid; c.pos_id := e.id;
                        CONTINUE WHEN c.start_time IS NOT NULL AND e.published_at < c.start_time;
                        CONTINUE WHEN c.start_id IS NOT NULL AND e.id < c.start_id;
                        CONTINUE WHEN s.filter IS NOT NULL AND NOT coalesce(e.payload @@ s.filter, false);
                        IF e.expires_at <= v_now THEN                  -- expired (TTL)
                            c.expired := c.expired + 1;
                            v_n_read := v_n_read + 1;
                            v_n_exp := v_n_exp + 1;
                            CONTINUE;
                        END IF;
                        -- Replaying after seek: an event still leased or waiting
                        -- is in flight already; it is not handed out twice. (An IF:
                        -- the query must not run per event outside a replay.)
                        IF v_replay THEN
                            CONTINUE WHEN EXISTS (
                                SELECT 1 FROM eventbus.delivery dl
                                 WHERE dl.sub_id = s.id AND dl.event_id = e.id AND dl.state <> 'dead');
                        END IF;
                        v_n_read := v_n_read + 1;
                        IF v_mode = 'drop' THEN                         -- overflow: to the DLQ
                            v_n_dead := v_n_dead + 1;
                            v_ids := v_ids || e.id;
                            v_txids := v_txids || e.txid;
                            v_keys := v_keys || CASE WHEN s.ordered THEN e.key END;
                            v_want := v_want - 1;
                            CONTINUE;
                        END IF;
                        IF e.deliver_at > v_now OR (s.ordered AND e.key IS NOT NULL) THEN
                            -- Delayed, or keyed in an ordered subscription: one row
                            -- each; it waits if delayed or if its key has an
                            -- earlier event not yet acked or dead.
                            v_blocked := e.deliver_at > v_now
                                OR (s.ordered AND e.key IS NOT NULL
                                    AND EXISTS (SELECT 1 FROM eventbus.delivery k
                                                 WHERE k.sub_id = s.id AND k.key = e.key
                                                   AND k.state <> 'dead'));
                            INSERT INTO eventbus.delivery AS dl
                                   (sub_id, event_id, txid, state, attempt, available_at, key, ord,
                                    leased_at)
                            VALUES (s.id, e.id, e.txid,
                                    CASE WHEN v_blocked THEN 'waiting' ELSE 'leased' END,
                                    CASE WHEN v_blocked THEN 0 ELSE 1 END,
                                    CASE WHEN v_blocked THEN greatest(e.deliver_at, v_now) ELSE v_until END,
                                    CASE WHEN s.ordered THEN e.key END,
                                    CASE WHEN s.ordered AND e.key IS NOT NULL
                                         THEN nextval('eventbus.delivery_ord_seq') END,
                                    CASE WHEN NOT v_blocked THEN v_now END)
                            ON CONFLICT ON CONSTRAINT delivery_pkey DO UPDATE     -- replay after seek
                               SET state = excluded.state, attempt = excluded.attempt,
                                   available_at = excluded.available_at, key = excluded.key,
                                   ord = excluded.ord, reason = NULL, dead_at = NULL, last_error = NULL,
                                   leased_at = excluded.leased_at;
                            IF v_blocked THEN
                                v_due := least(v_due, greatest(e.deliver_at, v_now));
                                CONTINUE;
                            END IF;
                        ELSE
                            v_ids := v_ids || e.id;
                            v_txids := v_txids || e.txid;   -- v_keys stays empty: unnest pads NULLs
                        END IF;
                        v_n_deliv := v_n_deliv + 1;
                        v_first := v_first || greatest(e.published_at, e.deliver_at);
                        event_id := e.id; topic := v_names ->> e.topic_id::text; key := e.key; payload := e.payload;
                        headers := e.headers; published_at := e.published_at;
                        attempt := 1; lease_until := v_until;
                        RETURN NEXT;
                        v_left := v_left - 1;
                        v_want := v_want - 1;
                        v_got := v_got + 1;
                    END LOOP;

                    -- One insert for every event leased (or dropped) from this window.
                    IF cardinality(v_ids) > 0 THEN
                        IF NOT v_replay THEN
                            INSERT INTO eventbus.delivery (sub_id, event_id, txid, state, attempt,
                                                           available_at, reason, dead_at, last_error,
                                                           key, ord, leased_at)
                            SELECT s.id, u.id, u.txid,
                                   CASE v_mode WHEN 'drop' THEN 'dead' ELSE 'leased' END,
                                   CASE v_mode WHEN 'drop' THEN 0 ELSE 1 END, v_until,
                                   CASE v_mode WHEN 'drop' THEN 'overflow' END,
                                   CASE v_mode WHEN 'drop' THEN v_now END,
                                   CASE v_mode WHEN 'drop' THEN 'over max_backlog' END,
                                   u.key,
                                   CASE WHEN u.key IS NOT NULL THEN nextval('eventbus.delivery_ord_seq') END,
                                   CASE v_mode WHEN 'lease' THEN v_now END
                              FROM unnest(v_ids, v_txids, v_keys) WITH ORDINALITY AS u (id, txid, key, i)
                             ORDER BY u.i;
                        ELSE                                    -- replay after seek
                            INSERT INTO eventbus.delivery AS dl (sub_id, event_id, txid, state, attempt,
                                                                 available_at, reason, dead_at, last_error,
                                                                 key, ord, leased_at)
                            SELECT s.id, u.id, u.txid,
                                   CASE v_mode WHEN 'drop' THEN 'dead' ELSE 'leased' END,
                                   CASE v_mode WHEN 'drop' THEN 0 ELSE 1 END, v_until,
                                   CASE v_mode WHEN 'drop' THEN 'overflow' END,
                                   CASE v_mode WHEN 'drop' THEN v_now END,
                                   CASE v_mode WHEN 'drop' THEN 'over max_backlog' END,
                                   u.key,
                                   CASE WHEN u.key IS NOT NULL THEN nextval('eventbus.delivery_ord_seq') END,
                                   CASE v_mode WHEN 'lease' THEN v_now END
                              FROM unnest(v_ids, v_txids, v_keys) WITH ORDINALITY AS u (id, txid, key, i)
                             ORDER BY u.i
                            ON CONFLICT ON CONSTRAINT delivery_pkey DO UPDATE   -- a dead letter replayed
                               SET state = excluded.state, attempt = excluded.attempt,
                                   available_at = excluded.available_at, reason = excluded.reason,
                                   dead_at = excluded.dead_at, last_error = excluded.last_error,
                                   key = excluded.key, ord = excluded.ord, leased_at = excluded.leased_at;
                        END IF;
                        v_ids := '{}';
                        v_txids := '{}';
                        v_keys := '{}';
                    END IF;

                    -- Fewer rows than the limit: the window is read to its end.
                    IF v_seen < v_limit THEN
                        c.win_lo := c.win_hi; c.win_hi := NULL; c.pos_txid := NULL; c.pos_id := NULL;
                        -- A replay (seek) is over once a window started after it ends.
                        c.start_id := NULL;
                        IF c.start_time <= v_now THEN
                            c.start_time := NULL;
                        END IF;
                    END IF;
                    EXIT WHEN v_want <= 0;
                END LOOP;
            END LOOP;
            v_more := v_more OR v_left <= 0;

            UPDATE eventbus.cursor cu
               SET win_lo = c.win_lo, win_hi = c.win_hi, pos_txid = c.pos_txid, pos_id = c.pos_id,
                   start_time = c.start_time, start_id = c.start_id, expired = c.expired
             WHERE cu.sub_id = s.id;
        END IF;

        -- Stopped at max_events: other waiting pollers may find the rest.
        IF v_more THEN
            PERFORM eventbus._wake(s.id);
        END IF;
        -- Leases (and delays) written here: should this transaction end after
        -- they fall due, or roll back, pollers and LISTENers are told then.
        IF v_got > 0 THEN
            v_due := least(v_due, v_until);
        END IF;
        IF v_due IS NOT NULL THEN
            PERFORM eventbus._wake_at_end(s.id, v_due);
            v_due := NULL;
        END IF;
        IF v_got > 0 OR v_deadline IS NULL OR clock_timestamp() >= v_deadline THEN
            PERFORM eventbus._stats_sub(s.id, "read" => v_n_read, delivered => v_n_deliv,
                                        retried => v_n_retry, dead => v_n_dead, expired => v_n_exp,
                                        first_at => v_first);
            EXIT;
        END IF;

        -- Sleep until something may be there: a wake-up (a commit that
        -- published, nacked, redrove ...) followed by a cheap check that
        -- reads the log and the due deliveries without writing; the next
        -- lease end or retry; the deadline. Denied the cursor, look again
        -- within 100 ms (its holder wakes nobody when it is done).
        LOOP
            PERFORM eventbus._wait(least(v_deadline,
                                         CASE WHEN v_denied THEN clock_timestamp() + interval '100 ms' END,
                                         (SELECT min(dl.available_at) FROM eventbus.delivery dl
                                           WHERE dl.sub_id = s.id AND dl.state <> 'dead'
                                             AND dl.available_at > v_now)),
                                   v_wakes);
            EXIT WHEN v_denied OR clock_timestamp() >= v_deadline;
            s := eventbus._subscription(subscription);    -- paused or changed meanwhile
            v_topics := eventbus._topic_ids(s.patterns);
            v_names := eventbus._topic_names(v_topics);
            v_wakes := eventbus._wake_count();
            v_hi := eventbus._snapshot();
            EXIT WHEN NOT s.paused
                  AND (EXISTS (SELECT 1 FROM eventbus.delivery dl
                                WHERE dl.sub_id = s.id AND dl.state <> 'dead'
                                  AND dl.available_at <= clock_timestamp()
                                  AND (NOT s.ordered OR dl.key IS NULL
                                       OR NOT EXISTS (SELECT 1 FROM eventbus.delivery k
                                                       WHERE k.sub_id = dl.sub_id AND k.key = dl.key
                                                         AND k.state <> 'dead' AND k.event_id <> dl.event_id
                                                         AND (k.ord < dl.ord OR k.state = 'leased'))))
                       OR EXISTS (SELECT 1 FROM eventbus.event_log ev
                                   WHERE ev.txid >= pg_snapshot_xmin(v_looked)
                                     AND ev.topic_id = ANY (v_topics)
                                     AND ev.rejected_by IS NULL
                                     AND NOT pg_visible_in_snapshot(ev.txid, v_looked)));
            v_looked := v_hi;
            v_now := clock_timestamp();
        END LOOP;
        s := eventbus._subscription(subscription);
    END LOOP;
END
$$;
COMMENT ON FUNCTION eventbus.poll(text, integer, interval, interval) IS
    'eventbus: lease up to max_events events of a subscription: due retries first, then new events in commit order; wait for them up to "wait"';

-- Deletes the leased deliveries of the events (src/consume.c): one scan of
-- the primary key for the whole array, counted for the stats.
CREATE FUNCTION eventbus._ack_ids(sub_id integer, event_ids bigint[])
RETURNS integer
AS 'MODULE_PATHNAME', 'eventbus_ack_ids'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus._ack_ids(integer, bigint[]) IS
    'eventbus (internal): delete a subscription''s leased deliveries of the events, return how many';

CREATE FUNCTION eventbus.ack(subscription text, event_ids bigint[])
RETURNS integer
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s eventbus.subscription := eventbus._subscription(subscription);
    n integer;
BEGIN
    n := eventbus._ack_ids(s.id, event_ids);
    IF s.ordered AND n > 0 THEN
        PERFORM eventbus._wake(s.id);       -- the next event of each key is pollable now
    END IF;
    RETURN n;
END
$$;
COMMENT ON FUNCTION eventbus.ack(text, bigint[]) IS
    'eventbus: finish leased events; returns how many were leased and are now done';

CREATE FUNCTION eventbus.nack(subscription text, event_id bigint, error text DEFAULT NULL,
                              retry_in interval DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s eventbus.subscription;
    d eventbus.delivery;
    v_at timestamptz;
BEGIN
    s := eventbus._subscription(subscription);
    IF retry_in IS NOT NULL AND (retry_in < interval '0' OR retry_in > interval '30 days') THEN
        RAISE EXCEPTION 'retry_in must be between 0 and 30 days: "%"', retry_in
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass e.g. interval ''10 seconds'', or NULL for the backoff.';
    END IF;
    SELECT * INTO d FROM eventbus.delivery dl
     WHERE dl.sub_id = s.id AND dl.event_id = nack.event_id AND dl.state = 'leased'
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'event % is not leased by subscription "%"', event_id, subscription
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Only events returned by eventbus.poll and not yet acked can be nacked.';
    END IF;
    IF d.attempt >= s.max_attempts THEN
        UPDATE eventbus.delivery dl
           SET state = 'dead', reason = 'failed', last_error = error, dead_at = clock_timestamp()
         WHERE dl.sub_id = s.id AND dl.event_id = nack.event_id;
        PERFORM eventbus._stats_sub(s.id, nacked => 1, dead => 1);
        IF s.ordered THEN
            PERFORM eventbus._wake(s.id);   -- the next event of its key is pollable now
        END IF;
        RETURN 'dead';
    END IF;
    v_at := clock_timestamp() + coalesce(retry_in, eventbus._backoff(s.backoff_initial, s.backoff_max, d.attempt));
    UPDATE eventbus.delivery dl
       SET state = 'waiting', last_error = error, available_at = v_at
     WHERE dl.sub_id = s.id AND dl.event_id = nack.event_id;
    PERFORM eventbus._stats_sub(s.id, nacked => 1);
    PERFORM eventbus._wake();               -- waiting pollers and the worker look at the new retry time
    PERFORM eventbus._wake_at_end(s.id, v_at);  -- due by commit (retry_in => 0): notify then
    RETURN 'retry';
END
$$;
COMMENT ON FUNCTION eventbus.nack(text, bigint, text, interval) IS
    'eventbus: give a leased event back: retried after backoff (or retry_in), dead after max_attempts';

CREATE FUNCTION eventbus.extend_lease(subscription text, event_ids bigint[], lease interval)
RETURNS integer
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    PERFORM eventbus._check_interval('lease', lease, interval '1 day');
    UPDATE eventbus.delivery d SET available_at = clock_timestamp() + lease
     WHERE d.sub_id = (eventbus._subscription(subscription)).id
       AND d.event_id = ANY (event_ids) AND d.state = 'leased';
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION eventbus.extend_lease(text, bigint[], interval) IS
    'eventbus: make leases of events still being worked on end "lease" from now';

CREATE VIEW eventbus.dead_letters AS
SELECT s.name AS subscription, d.event_id, t.topic, e.key, e.payload,
       d.attempt AS attempts, d.last_error, d.reason, d.dead_at
  FROM eventbus.delivery d
  JOIN eventbus.subscription s ON s.id = d.sub_id
  LEFT JOIN eventbus.event_log e ON e.txid = d.txid AND e.id = d.event_id
  LEFT JOIN eventbus.topic t ON t.id = e.topic_id
 WHERE d.state = 'dead';
COMMENT ON VIEW eventbus.dead_letters IS
    'eventbus: events a subscription gave up on, with the last error, until redriven or purged';

CREATE FUNCTION eventbus.redrive(subscription text, event_ids bigint[] DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    UPDATE eventbus.delivery d
       SET state = 'waiting', attempt = 0, available_at = clock_timestamp(),
           reason = 'redriven', dead_at = NULL,      -- marks its next hand-out as a retry
           ord = CASE WHEN d.key IS NOT NULL THEN nextval('eventbus.delivery_ord_seq') END
     WHERE d.sub_id = (eventbus._subscription(subscription)).id AND d.state = 'dead'
       AND (event_ids IS NULL OR d.event_id = ANY (event_ids));
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM eventbus._wake((eventbus._subscription(subscription)).id);
        PERFORM eventbus._stats_sub((eventbus._subscription(subscription)).id, redriven => n);
    END IF;
    RETURN n;
END
$$;
COMMENT ON FUNCTION eventbus.redrive(text, bigint[]) IS
    'eventbus: put dead letters back, with fresh attempts (all of them when event_ids is NULL)';

CREATE FUNCTION eventbus.purge_dead_letters(subscription text, older_than interval DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    IF older_than < interval '0' THEN
        RAISE EXCEPTION 'older_than must not be negative: "%"', older_than
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass e.g. interval ''7 days'', or NULL for all.';
    END IF;
    DELETE FROM eventbus.delivery d
     WHERE d.sub_id = (eventbus._subscription(subscription)).id AND d.state = 'dead'
       AND (older_than IS NULL OR d.dead_at <= clock_timestamp() - older_than);
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM eventbus._stats_sub((eventbus._subscription(subscription)).id, discarded => n);
    RETURN n;
END
$$;
COMMENT ON FUNCTION eventbus.purge_dead_letters(text, interval) IS
    'eventbus: discard dead letters for good (all, or those dead longer than older_than)';
-- eventbus install script, part 50: data restored from another cluster.
--
-- Events and cursors store transaction ids and snapshots, which mean
-- something only in the cluster that wrote them. After pg_dump/pg_restore
-- into another cluster (another xid history), the first publish, subscribe
-- or poll adopts the restored data once: every subscription's undelivered
-- events become due deliveries, restored events are re-stamped as committed
-- long ago (xid 2), and cursors restart after them. eventbus.origin names
-- the cluster the data belongs to; CREATE EXTENSION records this one, and
-- a restore adds the dumped cluster's row.

CREATE TABLE eventbus.origin (
    system_identifier bigint NOT NULL
);
INSERT INTO eventbus.origin SELECT system_identifier FROM pg_catalog.pg_control_system();
SELECT pg_catalog.pg_extension_config_dump('eventbus.origin', '');
COMMENT ON TABLE eventbus.origin IS 'eventbus: the cluster whose transaction ids the stored data uses';

CREATE FUNCTION eventbus._adopt_restored()
RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cur      bigint := (SELECT system_identifier FROM pg_control_system());
    s        record;
    v_topics integer[];
BEGIN
    -- One adopter at a time; the others find the work done.
    LOCK TABLE eventbus.origin IN EXCLUSIVE MODE;
    -- Restored chunks were never sealed here: from now on maintenance may
    -- reclaim them, once no subscription needs them (src/sql/60_workers.sql).
    UPDATE eventbus.chunk ch SET sealed_at = now()
     WHERE NOT ch.is_current AND ch.sealed_at IS NULL;
    IF NOT EXISTS (SELECT 1 FROM eventbus.origin o WHERE o.system_identifier <> cur) THEN
        -- Restored into this same cluster: the xids are ours; one row is enough.
        IF (SELECT count(*) FROM eventbus.origin) > 1 THEN
            DELETE FROM eventbus.origin;
            INSERT INTO eventbus.origin VALUES (cur);
        END IF;
        RETURN false;
    END IF;

    -- Snapshots and xids still agree with each other here: both come from
    -- the dumped cluster, so each cursor says exactly what is undelivered.
    FOR s IN SELECT sb.id, sb.patterns, sb.filter, sb.ordered, c.win_lo, c.win_hi, c.pos_txid,
                    c.pos_id, c.start_time, c.start_id
               FROM eventbus.subscription sb JOIN eventbus.cursor c ON c.sub_id = sb.id
    LOOP
        v_topics := eventbus._topic_ids(s.patterns);
        -- In (txid, id) order, so that keys of ordered subscriptions queue in it.
        INSERT INTO eventbus.delivery (sub_id, event_id, txid, state, attempt, available_at, key, ord)
        SELECT s.id, q.id, q.txid, 'waiting', 0, coalesce(q.deliver_at, now()),
               CASE WHEN s.ordered THEN q.key END,
               CASE WHEN s.ordered AND q.key IS NOT NULL THEN nextval('eventbus.delivery_ord_seq') END
          FROM (SELECT ev.id, ev.txid, ev.key, ev.deliver_at
                  FROM eventbus.event_log ev
                 WHERE ev.topic_id = ANY (v_topics)
                   AND ev.rejected_by IS NULL
                   AND NOT pg_visible_in_snapshot(ev.txid, s.win_lo)
                   AND NOT (s.win_hi IS NOT NULL AND s.pos_txid IS NOT NULL
                            AND pg_visible_in_snapshot(ev.txid, s.win_hi)
                            AND (ev.txid, ev.id) <= (s.pos_txid, s.pos_id))
                   AND (s.start_time IS NULL OR ev.published_at >= s.start_time)
                   AND (s.start_id IS NULL OR ev.id >= s.start_id)
                   AND (s.filter IS NULL OR coalesce(ev.payload @@ s.filter, false))
                 ORDER BY ev.txid, ev.id) q
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
COMMENT ON FUNCTION eventbus._adopt_restored() IS
    'eventbus (internal): adopt events and cursors restored from another cluster';

CREATE FUNCTION eventbus._check_origin()
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_check_origin'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus._check_origin() IS
    'eventbus (internal): adopt restored data if it comes from another cluster (cached per backend)';

REVOKE EXECUTE ON FUNCTION eventbus._adopt_restored(), eventbus._check_origin() FROM PUBLIC;
-- eventbus install script, part 60: background workers and maintenance.
--
-- The background worker (src/worker.c) calls _tick after publishing commits
-- (and at least every eventbus.tick_interval): it notifies, with at most
-- one NOTIFY each, the subscriptions that have something new. It calls
-- _maintain every eventbus.maintenance_interval: the event log moves on to
-- the next chunk and chunks nobody needs are truncated. run_maintenance()
-- does one round of both by hand (e.g. from pg_cron, without the worker).
-- See docs/workers.md and docs/notifications.md.

CREATE FUNCTION eventbus._worker_start()
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_worker_start'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus._worker_start() IS
    'eventbus (internal): start this database''s background worker when the transaction commits';

CREATE FUNCTION eventbus._chunks_changed()
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_chunks_changed'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus._chunks_changed() IS
    'eventbus (internal): make every backend re-read the current chunk';

-- One tick: what became pollable since the previous tick (snapshot prev,
-- time prev_at), and one NOTIFY per subscription concerned:
--   * events committed between the two snapshots, on topics the
--     subscription's patterns match (its filter is not applied: a
--     notification means "poll now", and the poll may find nothing);
--   * deliveries whose retry, delay or lease ended since prev_at;
--   * subscriptions named by committed transactions (kicked): a nack with
--     an immediate retry, a redrive, resume, seek, an ack of an ordered
--     event, a poll that stopped at max_events.
-- The first tick of a worker (prev NULL) notifies every subscription.
-- The payload of each notification is the subscription's name.
CREATE FUNCTION eventbus._notify_needed(sub_id integer)
RETURNS boolean
AS 'MODULE_PATHNAME', 'eventbus_notify_needed'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus._notify_needed(integer) IS
    'eventbus (internal): whether to NOTIFY a subscription again (it was polled since, or 1 s passed)';

CREATE FUNCTION eventbus._tick(prev pg_snapshot, prev_at timestamptz,
                               kicked integer[], kick_all boolean,
                               OUT snap pg_snapshot, OUT tick_at timestamptz,
                               OUT next_due timestamptz, OUT notified integer,
                               OUT handlers text[])
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_topics integer[] := '{}';
    r record;
BEGIN
    snap := pg_current_snapshot();
    tick_at := clock_timestamp();
    notified := 0;
    handlers := '{}';
    -- Nobody to notify: the snapshot is all this tick has to keep.
    IF NOT EXISTS (SELECT 1 FROM eventbus.subscription s WHERE NOT s.paused) THEN
        RETURN;
    END IF;
    IF prev IS NOT NULL THEN
        -- The topics of the events committed between the two snapshots.
        v_topics := ARRAY(
            SELECT DISTINCT q.topic_id
              FROM (SELECT ev.topic_id FROM eventbus.event_log ev
                     WHERE ev.txid = ANY (ARRAY(SELECT pg_snapshot_xip(prev)))
                       -- A one-time filter: no scan when nothing was in progress.
                       AND pg_snapshot_xmin(prev) <> pg_snapshot_xmax(prev)
                       AND ev.rejected_by IS NULL
                       AND pg_visible_in_snapshot(ev.txid, snap)
                    UNION ALL
                    SELECT ev.topic_id FROM eventbus.event_log ev
                     WHERE ev.txid >= pg_snapshot_xmax(prev) AND ev.txid < pg_snapshot_xmax(snap)
                       AND ev.rejected_by IS NULL
                       AND pg_visible_in_snapshot(ev.txid, snap)) q);
    END IF;
    FOR r IN
        SELECT s.id, s.name, s.handler IS NOT NULL AS has_handler
          FROM eventbus.subscription s
         WHERE NOT s.paused
           AND (prev IS NULL OR kick_all OR s.id = ANY (kicked)
                OR (cardinality(v_topics) > 0
                    AND EXISTS (SELECT 1 FROM eventbus.topic t, unnest(s.patterns) p
                                 WHERE t.id = ANY (v_topics) AND eventbus.topic_matches(t.topic, p)))
                OR EXISTS (SELECT 1 FROM eventbus.delivery d
                            WHERE d.sub_id = s.id AND d.state <> 'dead'
                              AND d.available_at > prev_at AND d.available_at <= tick_at))
         ORDER BY s.name
    LOOP
        -- Not again while the last notification has not been followed by a
        -- poll (src/stats.c): one notification, one poll, sees it all.
        IF eventbus._notify_needed(r.id) THEN
            PERFORM pg_notify('eventbus_' || r.name, r.name);
            notified := notified + 1;
        END IF;
        IF r.has_handler THEN
            handlers := handlers || r.name;
        END IF;
    END LOOP;
    -- When the worker must look again at the latest: the next retry, delay
    -- or lease end of a subscription that is not paused.
    next_due := (SELECT min(q.t)
                   FROM eventbus.subscription s
                  CROSS JOIN LATERAL (SELECT d.available_at AS t FROM eventbus.delivery d
                                       WHERE d.sub_id = s.id AND d.state <> 'dead'
                                         AND d.available_at > tick_at
                                       ORDER BY d.available_at LIMIT 1) q
                  WHERE NOT s.paused);
END
$$;
COMMENT ON FUNCTION eventbus._tick(pg_snapshot, timestamptz, integer[], boolean) IS
    'eventbus (internal): notify the subscriptions with something new since the previous tick';

-- The subscriptions that still need an event stored in a chunk: one of
-- their deliveries (leased, waiting or dead) refers to it, or their
-- position is before one of its events on a topic they match.
CREATE FUNCTION eventbus._chunk_pins(chunk regclass)
RETURNS text[]
LANGUAGE plpgsql STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_pins text[];
BEGIN
    EXECUTE format($q$
        SELECT array_agg(s.name ORDER BY s.name)
          FROM eventbus.subscription s JOIN eventbus.cursor cu ON cu.sub_id = s.id
         WHERE EXISTS (SELECT 1 FROM eventbus.delivery d JOIN %1$s ev
                                  ON ev.txid = d.txid AND ev.id = d.event_id
                        WHERE d.sub_id = s.id)
            OR EXISTS (SELECT 1 FROM %1$s ev
                        WHERE ev.txid >= pg_snapshot_xmin(cu.win_lo)
                          AND ev.rejected_by IS NULL
                          AND NOT pg_visible_in_snapshot(ev.txid, cu.win_lo)
                          AND (cu.win_hi IS NULL OR NOT pg_visible_in_snapshot(ev.txid, cu.win_hi)
                               OR (ev.txid, ev.id) > (cu.pos_txid, cu.pos_id))
                          AND ev.topic_id = ANY (eventbus._topic_ids(s.patterns)))$q$, chunk)
      INTO v_pins;
    RETURN coalesce(v_pins, '{}');
END
$$;
COMMENT ON FUNCTION eventbus._chunk_pins(regclass) IS
    'eventbus (internal): names of the subscriptions that still need events of a chunk';

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
CREATE FUNCTION eventbus._maintain(OUT reclaimed integer, OUT rotated boolean)
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
        CONTINUE WHEN NOT v_any;
        CONTINUE WHEN cardinality(eventbus._chunk_pins(v_rel)) > 0;
        BEGIN
            EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE NOWAIT', v_rel);
        EXCEPTION WHEN lock_not_available THEN
            CONTINUE;                       -- being read right now: next round
        END;
        EXECUTE format('TRUNCATE %s', v_rel);
        UPDATE eventbus.chunk ch SET reclaimed_at = v_now WHERE ch.chunk_no = c.chunk_no;
        reclaimed := reclaimed + 1;
    END LOOP;

    SELECT * INTO c FROM eventbus.chunk ch WHERE ch.is_current;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM eventbus.%I)', c.relname) INTO v_any;
    IF v_any AND (c.opened_at <= v_now - v_interval
                  OR pg_relation_size(format('eventbus.%I', c.relname)::regclass) >= v_size) THEN
        SELECT * INTO n FROM eventbus.chunk ch WHERE ch.chunk_no = (c.chunk_no + 1) % 3;
        EXECUTE format('SELECT NOT EXISTS (SELECT 1 FROM eventbus.%I)', n.relname) INTO v_any;
        IF v_any THEN
            UPDATE eventbus.chunk ch SET is_current = false, sealed_at = v_now WHERE ch.chunk_no = c.chunk_no;
            UPDATE eventbus.chunk ch SET is_current = true, opened_at = v_now, sealed_at = NULL
             WHERE ch.chunk_no = n.chunk_no;
            PERFORM eventbus._chunks_changed();
            rotated := true;
        END IF;
    END IF;
END
$$;
COMMENT ON FUNCTION eventbus._maintain() IS
    'eventbus (internal): reclaim chunks nobody needs, move publishing on to the next chunk';

-- What the background worker does, by hand: one round of chunk maintenance,
-- then one notification to every subscription that is not paused (without
-- the worker, nothing else tells LISTENing consumers about retries and
-- delays). Schedule it with pg_cron when the library is not preloaded.
CREATE FUNCTION eventbus.run_maintenance(OUT reclaimed integer, OUT rotated boolean,
                                         OUT notified integer)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM eventbus._check_origin();
    SELECT m.reclaimed, m.rotated INTO reclaimed, rotated FROM eventbus._maintain() m;
    SELECT t.notified INTO notified FROM eventbus._tick(NULL, NULL, '{}', false) t;
END
$$;
COMMENT ON FUNCTION eventbus.run_maintenance() IS
    'eventbus: one round of what the background worker does: reclaim and rotate chunks, notify subscriptions';

CREATE VIEW eventbus.chunks AS
SELECT c.chunk_no, c.relname, c.is_current, c.opened_at, c.sealed_at, c.reclaimed_at,
       pg_total_relation_size(format('eventbus.%I', c.relname)::regclass) AS bytes,
       eventbus._chunk_pins(format('eventbus.%I', c.relname)::regclass) AS pinned_by
  FROM eventbus.chunk c;
COMMENT ON VIEW eventbus.chunks IS
    'eventbus: the chunks of the event log, their size, and the subscriptions that keep each from being reclaimed';

-- Recurring events through pg_cron: the job publishes the payload on the
-- topic in this database, as the role that scheduled it.
CREATE FUNCTION eventbus.schedule(job text, cron text, topic text, payload jsonb DEFAULT '{}')
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
                                current_setting('cron.database_name', true), current_database());
    END IF;
    IF job IS NULL OR job = '' OR cron IS NULL OR payload IS NULL THEN
        RAISE EXCEPTION 'job, cron and payload must not be NULL or empty'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass e.g. eventbus.schedule(''nightly'', ''0 3 * * *'', ''reports.nightly'', ''{}'').';
    END IF;
    IF NOT eventbus.is_valid_topic(topic) THEN
        RAISE EXCEPTION 'invalid topic "%"', topic
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A topic is dot-separated words, e.g. ''reports.nightly''.';
    END IF;
    v_cmd := format('SELECT eventbus.publish(%L, %L::jsonb)', topic, payload);
    RETURN cron.schedule(job, cron, v_cmd);
END
$$;
COMMENT ON FUNCTION eventbus.schedule(text, text, text, jsonb) IS
    'eventbus: publish an event on a cron schedule (needs pg_cron); returns the pg_cron job id';

CREATE FUNCTION eventbus.unschedule(job text)
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
    RETURN cron.unschedule(job);
END
$$;
COMMENT ON FUNCTION eventbus.unschedule(text) IS
    'eventbus: remove a job made by eventbus.schedule (needs pg_cron)';

-- This database's worker starts when CREATE EXTENSION commits.
SELECT eventbus._worker_start();
-- eventbus install script, part 70: schema checks.
--
-- A schema registered for a topic pattern checks every payload published on
-- a matching topic (src/schemareg.c, at publish); a schema registered with a
-- URI only serves as the target of "$ref" from other schemas. The validator
-- is src/jsonschema.c (JSON Schema draft 2020-12, and draft-07). See
-- docs/schemas.md.

CREATE TABLE eventbus.schema (
    id          integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    pattern     text UNIQUE,              -- topics it checks; NULL: only referenced by uri
    uri         text UNIQUE,              -- what "$ref" uses to refer to it; NULL: none
    schema      jsonb NOT NULL,
    on_invalid  text NOT NULL DEFAULT 'reject' CHECK (on_invalid IN ('reject', 'dead_letter')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (pattern IS NOT NULL OR uri IS NOT NULL)
);
COMMENT ON TABLE eventbus.schema IS 'eventbus: registered JSON Schemas';
COMMENT ON SEQUENCE eventbus.schema_id_seq IS 'eventbus: schema ids';
SELECT pg_catalog.pg_extension_config_dump('eventbus.schema', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.schema_id_seq', '');

CREATE FUNCTION eventbus.validate(schema jsonb, document jsonb)
RETURNS boolean
AS 'MODULE_PATHNAME', 'eventbus_validate'
LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION eventbus.validate(jsonb, jsonb) IS
    'eventbus: whether the document is valid against the JSON Schema (draft 2020-12 by default)';

CREATE FUNCTION eventbus.validation_errors(schema jsonb, document jsonb)
RETURNS TABLE (path text, keyword text, message text)
AS 'MODULE_PATHNAME', 'eventbus_validation_errors'
LANGUAGE C STRICT STABLE PARALLEL SAFE ROWS 10;
COMMENT ON FUNCTION eventbus.validation_errors(jsonb, jsonb) IS
    'eventbus: every place where the document fails the JSON Schema: path, keyword, message';

CREATE FUNCTION eventbus._schemas_changed()
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_schemas_changed'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus._schemas_changed() IS
    'eventbus (internal): make every backend reload the registered schemas';

-- A schema whose relative "$ref"s resolve against uri: the schema with
-- "$id": uri when it has no "$id" of its own.
CREATE FUNCTION eventbus._with_base(schema jsonb, uri text)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN uri IS NOT NULL AND jsonb_typeof(schema) = 'object' AND NOT schema ? '$id'
                THEN schema || jsonb_build_object('$id', uri) ELSE schema END
$$;
COMMENT ON FUNCTION eventbus._with_base(jsonb, text) IS
    'eventbus (internal): the schema with "$id" set to uri unless it has one';

-- Registers (or replaces) the schema of a topic pattern, and/or a schema
-- other schemas refer to by URI: "uri" if given, else the schema's "$id".
CREATE FUNCTION eventbus.register_schema(pattern text, schema jsonb,
                                         on_invalid text DEFAULT 'reject',
                                         uri text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_uri text := coalesce(uri, CASE WHEN jsonb_typeof(schema) = 'object' THEN schema->>'$id' END);
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
                  AND (register_schema.pattern IS NULL AND s.pattern IS NOT NULL
                       OR register_schema.pattern IS NOT NULL
                          AND s.pattern IS DISTINCT FROM register_schema.pattern)) THEN
        RAISE EXCEPTION 'a schema with URI "%" is already registered', v_uri
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Drop it first with eventbus.drop_schema(), or give this one another "$id" or uri.';
    END IF;
    -- Compiles it: an invalid schema (or a $ref to nothing) raises 22023 here.
    -- Its relative references resolve against its URI, as they will when
    -- another schema refers to it.
    PERFORM eventbus.validate(eventbus._with_base(schema, v_uri), 'null');
    IF pattern IS NULL THEN
        INSERT INTO eventbus.schema AS s (pattern, uri, schema, on_invalid)
        VALUES (NULL, v_uri, register_schema.schema, register_schema.on_invalid)
        ON CONFLICT ON CONSTRAINT schema_uri_key DO UPDATE
           SET schema = excluded.schema, on_invalid = excluded.on_invalid, created_at = now();
    ELSE
        INSERT INTO eventbus.schema AS s (pattern, uri, schema, on_invalid)
        VALUES (register_schema.pattern, v_uri, register_schema.schema, register_schema.on_invalid)
        ON CONFLICT ON CONSTRAINT schema_pattern_key DO UPDATE
           SET uri = excluded.uri, schema = excluded.schema, on_invalid = excluded.on_invalid,
               created_at = now();
    END IF;
    PERFORM eventbus._schemas_changed();
END
$$;
COMMENT ON FUNCTION eventbus.register_schema(text, jsonb, text, text) IS
    'eventbus: check payloads published on topics matching the pattern against a JSON Schema (replaces the pattern''s schema)';

-- Drops the schema of a pattern, or (given no such pattern) the one with
-- that URI.
CREATE FUNCTION eventbus.drop_schema(pattern text)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM eventbus.schema s WHERE s.pattern = drop_schema.pattern;
    IF NOT FOUND THEN
        DELETE FROM eventbus.schema s WHERE s.pattern IS NULL AND s.uri = drop_schema.pattern;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no schema is registered for "%"', pattern
            USING ERRCODE = 'undefined_object',
                  HINT = 'eventbus.schemas lists the registered schemas.';
    END IF;
    PERFORM eventbus._schemas_changed();
END
$$;
COMMENT ON FUNCTION eventbus.drop_schema(text) IS
    'eventbus: stop checking payloads against the schema of a pattern (or drop a schema registered by URI)';

CREATE VIEW eventbus.schemas AS
SELECT s.pattern, s.uri, s.on_invalid, s.schema, s.created_at
  FROM eventbus.schema s;
COMMENT ON VIEW eventbus.schemas IS 'eventbus: the registered JSON Schemas';

-- An event that failed a schema with on_invalid 'dead_letter' becomes a
-- dead letter (reason 'schema') of every subscription it would have reached
-- (patterns and filter). Called by publish, in its transaction.
CREATE FUNCTION eventbus._schema_dead_letter(event_id bigint, topic text, payload jsonb, error text)
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
COMMENT ON FUNCTION eventbus._schema_dead_letter(bigint, text, jsonb, text) IS
    'eventbus (internal): make an event that failed its schema a dead letter of every subscription it reaches';

REVOKE EXECUTE ON FUNCTION
    eventbus.register_schema(text, jsonb, text, text),
    eventbus.drop_schema(text),
    eventbus._schemas_changed(),
    eventbus._schema_dead_letter(bigint, text, jsonb, text)
FROM PUBLIC;
-- eventbus install script, part 80: statistics.
--
-- Counters and latency histograms live in shared memory (src/stats.c),
-- counted at commit, never written to a table. Gauges (backlog, in flight,
-- ages) are read from the tables when a view is queried. Without the
-- library in shared_preload_libraries the counter columns are NULL and the
-- gauges still work. See docs/observability.md.

CREATE FUNCTION eventbus._stats_sub(
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
COMMENT ON FUNCTION eventbus._stats_sub(integer, bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint, timestamptz[], timestamptz[], boolean) IS
    'eventbus (internal): count for a subscription when this transaction commits';

CREATE FUNCTION eventbus._stats_drop_sub(sub_id integer)
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_stats_drop_sub'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus._stats_drop_sub(integer) IS
    'eventbus (internal): forget a subscription''s counts when this transaction commits';

CREATE FUNCTION eventbus._stats_prune(live integer[])
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_stats_prune'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus._stats_prune(integer[]) IS
    'eventbus (internal): forget the counts of subscriptions not in "live"';

CREATE FUNCTION eventbus._stats_topics(
    OUT topic_id integer, OUT published bigint, OUT bytes bigint, OUT last_published_at timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'eventbus_stats_topics'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION eventbus._stats_topics() IS
    'eventbus (internal): this database''s topic counters in shared memory';

CREATE FUNCTION eventbus._stats_subscriptions(
    OUT sub_id integer, OUT "read" bigint, OUT delivered bigint, OUT acked bigint,
    OUT nacked bigint, OUT retried bigint, OUT dead bigint, OUT expired bigint,
    OUT redriven bigint, OUT discarded bigint, OUT last_poll_at timestamptz,
    OUT delivery_buckets bigint[], OUT delivery_sum double precision,
    OUT ack_buckets bigint[], OUT ack_sum double precision)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'eventbus_stats_subscriptions'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION eventbus._stats_subscriptions() IS
    'eventbus (internal): this database''s subscription counters and histograms in shared memory';

CREATE FUNCTION eventbus._stats_info(
    OUT enabled boolean, OUT stats_reset timestamptz, OUT dropped bigint,
    OUT buckets double precision[])
RETURNS record
AS 'MODULE_PATHNAME', 'eventbus_stats_info'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION eventbus._stats_info() IS
    'eventbus (internal): whether counters exist, when they were reset, counts lost, bucket bounds';

CREATE FUNCTION eventbus._stats_reset()
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_stats_reset'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus._stats_reset() IS
    'eventbus (internal): forget this database''s counters';

CREATE FUNCTION eventbus._worker_stats(
    OUT database text, OUT pid integer, OUT state text, OUT ticks bigint,
    OUT notifications bigint, OUT handler_calls bigint, OUT last_tick_at timestamptz,
    OUT last_loop_seconds double precision, OUT loop_seconds double precision,
    OUT last_error text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'eventbus_worker_stats'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION eventbus._worker_stats() IS
    'eventbus (internal): the background workers'' slots in shared memory';

-- What a subscription has pending, read from the tables: unread events of
-- the log (and those of them expired), waiting deliveries plus leases that
-- ran out, leases held, the publication time of the oldest pending event
-- and of the newest matching one. Unread events are counted up to one
-- million, so that a scrape stays cheap whatever the backlog.
CREATE FUNCTION eventbus._pending(sub_id integer,
    OUT unread bigint, OUT unread_expired bigint, OUT waiting bigint, OUT in_flight bigint,
    OUT dead_letters bigint, OUT oldest_pending timestamptz, OUT newest timestamptz)
RETURNS record
LANGUAGE plpgsql STABLE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s eventbus.subscription;
    c eventbus.cursor;
    v_topics integer[];
    v_now timestamptz := clock_timestamp();
    v_oldest timestamptz;
BEGIN
    SELECT * INTO s FROM eventbus.subscription sb WHERE sb.id = _pending.sub_id;
    SELECT * INTO c FROM eventbus.cursor cu WHERE cu.sub_id = _pending.sub_id;
    IF s.id IS NULL OR c.sub_id IS NULL THEN
        RETURN;
    END IF;
    v_topics := eventbus._topic_ids(s.patterns);
    SELECT count(*) FILTER (WHERE NOT u.gone), count(*) FILTER (WHERE u.gone),
           min(u.published_at) FILTER (WHERE NOT u.gone), max(u.published_at)
      INTO unread, unread_expired, oldest_pending, newest
      FROM (SELECT x.published_at, coalesce(x.expires_at <= v_now, false) AS gone
              FROM eventbus._unread(s, c, v_topics) x
             LIMIT 1000000) u;
    SELECT count(*) FILTER (WHERE d.state = 'waiting' OR (d.state = 'leased' AND d.available_at <= v_now)),
           count(*) FILTER (WHERE d.state = 'leased' AND d.available_at > v_now),
           count(*) FILTER (WHERE d.state = 'dead'),
           min(e.published_at) FILTER (WHERE d.state <> 'dead' AND NOT (d.state = 'leased' AND d.available_at > v_now))
      INTO waiting, in_flight, dead_letters, v_oldest
      FROM eventbus.delivery d
      LEFT JOIN eventbus.event_log e ON e.txid = d.txid AND e.id = d.event_id AND d.state <> 'dead'
     WHERE d.sub_id = s.id;
    oldest_pending := least(oldest_pending, v_oldest);
    IF newest IS NULL AND oldest_pending IS NOT NULL THEN
        -- Nothing unread: the newest matching event was read already. Its
        -- topic's last commit (shared memory), else a bounded look back.
        SELECT max(t.last_published_at) INTO newest
          FROM eventbus._stats_topics() t WHERE t.topic_id = ANY (v_topics);
        IF newest IS NULL THEN
            SELECT max(q.published_at) INTO newest
              FROM (SELECT ev.published_at, ev.topic_id, ev.rejected_by
                      FROM eventbus.event_log ev
                     ORDER BY ev.txid DESC, ev.id DESC
                     LIMIT 100000) q
             WHERE q.topic_id = ANY (v_topics) AND q.rejected_by IS NULL;
        END IF;
    END IF;
END
$$;
COMMENT ON FUNCTION eventbus._pending(integer) IS
    'eventbus (internal): a subscription''s pending events, read from the tables';

CREATE VIEW eventbus.topic_stats AS
SELECT t.topic,
       CASE WHEN i.enabled THEN coalesce(st.published, 0) END AS published,
       CASE WHEN i.enabled THEN coalesce(st.bytes, 0) END AS bytes,
       st.last_published_at,
       i.stats_reset
  FROM eventbus.topic t
 CROSS JOIN eventbus._stats_info() i
  LEFT JOIN eventbus._stats_topics() st ON st.topic_id = t.id;
COMMENT ON VIEW eventbus.topic_stats IS
    'eventbus: events and bytes published (committed) per topic since the last reset';

CREATE VIEW eventbus.subscription_stats AS
SELECT s.name AS subscription,
       CASE WHEN i.enabled THEN coalesce(st."read", 0) + p.unread + p.unread_expired END AS routed,
       CASE WHEN i.enabled THEN coalesce(st."read", 0) END AS "read",
       CASE WHEN i.enabled THEN coalesce(st.delivered, 0) END AS delivered,
       CASE WHEN i.enabled THEN coalesce(st.acked, 0) END AS acked,
       CASE WHEN i.enabled THEN coalesce(st.nacked, 0) END AS nacked,
       CASE WHEN i.enabled THEN coalesce(st.retried, 0) END AS retried,
       CASE WHEN i.enabled THEN coalesce(st.dead, 0) END AS dead,
       CASE WHEN i.enabled THEN coalesce(st.expired, 0) END AS expired,
       CASE WHEN i.enabled THEN coalesce(st.redriven, 0) END AS redriven,
       CASE WHEN i.enabled THEN coalesce(st.discarded, 0) END AS discarded,
       p.unread + p.waiting AS backlog,
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
COMMENT ON VIEW eventbus.subscription_stats IS
    'eventbus: per subscription, events routed, delivered, acked ... since the last reset, and what is pending now';

CREATE VIEW eventbus.latency_stats AS
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
COMMENT ON VIEW eventbus.latency_stats IS
    'eventbus: latency histograms per subscription: publish to first delivery, lease to ack';

CREATE VIEW eventbus.worker_stats AS
SELECT w.database, w.pid, w.state, w.ticks, w.notifications, w.handler_calls, w.last_tick_at,
       w.last_loop_seconds * 1000 AS last_loop_time,
       w.loop_seconds * 1000 AS total_loop_time,
       w.last_error
  FROM eventbus._worker_stats() w;
COMMENT ON VIEW eventbus.worker_stats IS
    'eventbus: the background worker of each database: ticks, notifications, handler calls, time spent';

CREATE FUNCTION eventbus.reset_stats()
RETURNS void
LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT eventbus._stats_reset();
$$;
COMMENT ON FUNCTION eventbus.reset_stats() IS
    'eventbus: set this database''s eventbus counters and histograms back to zero';

-- A label value escaped for the Prometheus text format.
CREATE FUNCTION eventbus._prom_label(value text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT replace(replace(replace(value, E'\\', E'\\\\'), '"', E'\\"'), E'\n', E'\\n')
$$;
COMMENT ON FUNCTION eventbus._prom_label(text) IS
    'eventbus (internal): escape a Prometheus label value';

-- A number in the Prometheus text format.
CREATE FUNCTION eventbus._prom_number(value double precision)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN value = 'Infinity' THEN '+Inf' WHEN value = '-Infinity' THEN '-Inf'
                WHEN value = 'NaN' THEN 'NaN' ELSE value::text END
$$;
COMMENT ON FUNCTION eventbus._prom_number(double precision) IS
    'eventbus (internal): format a number for Prometheus';

CREATE FUNCTION eventbus.prometheus()
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
        ELSIF m.source = 'worker' AND m.name = 'eventbus_worker_up' THEN
            SELECT array_agg(jsonb_build_object(
                       'l', 'database="' || eventbus._prom_label(w.database) || '"',
                       'up', (w.state = 'running')::integer, 'ticks', w.ticks,
                       'notifications', w.notifications, 'handler_calls', w.handler_calls,
                       'loop_seconds', w.total_loop_time / 1000,
                       'last_tick_at', extract(epoch FROM w.last_tick_at))
                     ORDER BY w.database)
              INTO v_rows FROM eventbus.worker_stats w;
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
COMMENT ON FUNCTION eventbus.prometheus() IS
    'eventbus: every metric of this database in the Prometheus text exposition format 0.0.4';

-- A fresh install starts from zero (ids of a dropped installation may be reused).
SELECT eventbus._stats_reset();

-- Reading statistics is for the extension owner and pg_monitor; nothing
-- here changes state except reset_stats.
REVOKE ALL ON eventbus.topic_stats, eventbus.subscription_stats, eventbus.latency_stats,
              eventbus.worker_stats FROM PUBLIC;
GRANT SELECT ON eventbus.topic_stats, eventbus.subscription_stats, eventbus.latency_stats,
                eventbus.worker_stats TO pg_monitor;
REVOKE EXECUTE ON FUNCTION
    eventbus.reset_stats(),
    eventbus.prometheus(),
    eventbus._stats_sub(integer, bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint, timestamptz[], timestamptz[], boolean),
    eventbus._stats_drop_sub(integer),
    eventbus._stats_prune(integer[]),
    eventbus._stats_topics(),
    eventbus._stats_subscriptions(),
    eventbus._stats_info(),
    eventbus._stats_reset(),
    eventbus._worker_stats(),
    eventbus._pending(integer),
    eventbus._unread(eventbus.subscription, eventbus.cursor, integer[])
FROM PUBLIC;
-- The views call these as the reading role.
GRANT EXECUTE ON FUNCTION
    eventbus.prometheus(),
    eventbus._stats_topics(),
    eventbus._stats_subscriptions(),
    eventbus._stats_info(),
    eventbus._worker_stats(),
    eventbus._pending(integer)
TO pg_monitor;
-- eventbus install script, part 90: privileges.
--
-- PUBLIC may use the schema and the pure functions (topic_matches and the
-- validators, handy in CHECK constraints). Everything that changes state is
-- revoked from PUBLIC; grant it per role (docs/reference.md#privileges).
-- The tables are readable by the extension owner only.

GRANT USAGE ON SCHEMA eventbus TO PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA eventbus FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA eventbus FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION
    eventbus.publish(text, jsonb, text, jsonb, timestamptz, interval),
    eventbus.publish_batch(text[], jsonb[], text[], jsonb[], timestamptz, interval)
FROM PUBLIC;

-- Subscriptions and consuming: granted per role, never to PUBLIC.
REVOKE EXECUTE ON FUNCTION
    eventbus.subscribe(text, text[], integer, interval, interval, interval, boolean, text, jsonpath, bigint, text, regprocedure),
    eventbus.alter_subscription(text, text[], integer, interval, interval, interval, boolean, jsonpath, bigint, text, text[], regprocedure),
    eventbus.unsubscribe(text),
    eventbus.pause(text),
    eventbus.resume(text),
    eventbus.seek(text, timestamptz),
    eventbus.seek(text, bigint),
    eventbus.poll(text, integer, interval, interval),
    eventbus.ack(text, bigint[]),
    eventbus._ack_ids(integer, bigint[]),
    eventbus.nack(text, bigint, text, interval),
    eventbus.extend_lease(text, bigint[], interval),
    eventbus.redrive(text, bigint[]),
    eventbus.purge_dead_letters(text, interval),
    eventbus._snapshot(),
    eventbus._subscription(text),
    eventbus._backoff(interval, interval, integer),
    eventbus._seek(integer, timestamptz, bigint),
    eventbus._backlog(integer, bigint),
    eventbus._topic_names(integer[]),
    eventbus._subscriptions_changed(),
    eventbus._wake(integer),
    eventbus._wake_at_end(integer, timestamptz),
    eventbus._wake_count(),
    eventbus._wait(timestamptz, bigint)
FROM PUBLIC;

-- Workers and maintenance: the extension owner's, granted per role.
REVOKE EXECUTE ON FUNCTION
    eventbus.run_maintenance(),
    eventbus._tick(pg_snapshot, timestamptz, integer[], boolean),
    eventbus._notify_needed(integer),
    eventbus._maintain(),
    eventbus._chunk_pins(regclass),
    eventbus._chunks_changed(),
    eventbus._worker_start(),
    eventbus.schedule(text, text, text, jsonb),
    eventbus.unschedule(text)
FROM PUBLIC;
