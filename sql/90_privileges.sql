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
    eventbus.publish_batch(text[], jsonb[], text[], jsonb[], timestamptz, interval),
    eventbus.publish_cloudevent(jsonb),
    eventbus.set_context(bigint)
FROM PUBLIC;
-- to_cloudevent and instance_id only read: to_cloudevent shows an event
-- only to a role that could read it in eventbus.events (SELECT on the
-- view, the topic ACL), else 42501.

-- Subscriptions and consuming: granted per role, never to PUBLIC. A role
-- that may call them still needs a right on the subscription (owner,
-- consume or manage: docs/security.md).
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

-- What the public management functions call with the caller as first
-- argument (access.c): only the extension's owner may call them directly,
-- or anyone could name someone else as the caller.
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

-- Workers and maintenance: the extension owner's, granted per role.
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

-- The chunks of the log, for operators: the extension owner and pg_monitor.
REVOKE ALL ON eventbus.chunks FROM PUBLIC;
GRANT SELECT ON eventbus.chunks TO pg_monitor;
GRANT EXECUTE ON FUNCTION eventbus._chunk_pins(regclass) TO pg_monitor;
