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
    eventbus.subscribe(text, text[], integer, interval, interval, interval, boolean, text, jsonpath, bigint, text, regprocedure, integer),
    eventbus.alter_subscription(text, text[], integer, interval, interval, interval, boolean, jsonpath, bigint, text, text[], regprocedure, integer),
    eventbus.unsubscribe(text),
    eventbus.pause(text),
    eventbus.resume(text),
    eventbus.seek(text, timestamptz),
    eventbus.seek(text, bigint),
    eventbus.poll(text, integer, interval, interval, bigint),
    eventbus.ack(text, bigint[], bigint),
    eventbus.nack(text, bigint, text, interval, bigint),
    eventbus.extend_lease(text, bigint[], interval, bigint),
    eventbus.redrive(text, bigint[]),
    eventbus.purge_dead_letters(text, interval),
    eventbus._snapshot(),
    eventbus._subscription(text),
    eventbus._seek(integer, timestamptz, bigint),
    eventbus._backlog(integer, bigint),
    eventbus._subscriptions_changed(),
    eventbus._wake(integer),
    eventbus._wake_at_end(integer, timestamptz),
    eventbus._wake_count(),
    eventbus._wait(timestamptz, bigint)
FROM PUBLIC;

-- Workers and maintenance: the extension owner's, granted per role.
REVOKE EXECUTE ON FUNCTION
    eventbus.run_maintenance(),
    eventbus._notify_needed(integer),
    eventbus._maintain(),
    eventbus._chunk_pins(regclass),
    eventbus._chunks_changed(),
    eventbus._worker_start(),
    eventbus.schedule(text, text, text, jsonb),
    eventbus.unschedule(text)
FROM PUBLIC;
