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
