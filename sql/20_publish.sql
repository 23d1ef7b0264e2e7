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
