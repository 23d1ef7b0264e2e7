-- eventbus install script, part 75: CloudEvents and context propagation.
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
