-- eventbus install script, part 65: relays (docs/relay.md).
--
-- A relay is a subscription whose consumer is a relay process (src/relay.c)
-- and whose events go to a sink: Kafka. Its sink, server, topic and options
-- are columns of eventbus.subscription. The broker addresses and producer
-- properties live in a FOREIGN SERVER of the wrapper eventbus_kafka, the
-- credentials in a USER MAPPING for the relay's owner (or PUBLIC), as
-- postgres_fdw and dblink keep theirs: pg_user_mappings shows their options
-- only to the mapped user and the server's owner.

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
