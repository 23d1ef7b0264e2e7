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
CREATE FUNCTION eventbus._unread(sub_id integer, lim bigint DEFAULT NULL, chunk regclass DEFAULT NULL,
                                 restored boolean DEFAULT false)
RETURNS TABLE (event_id bigint, txid xid8, published_at timestamptz, expires_at timestamptz,
               key text, deliver_at timestamptz)
AS 'MODULE_PATHNAME', 'eventbus_unread'
LANGUAGE C STABLE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus._unread(integer, bigint, regclass, boolean) IS
    'eventbus (internal): events of the log a subscription has not cut into batches yet';

-- A subscription's backlog: events waiting for a retry or a delay, the
-- open events of its batches not handed out yet, plus the matching events
-- in the log it has not cut yet (after its filter, not expired), counted
-- up to "lim". Publish (on_overflow 'reject') and the cut (on_overflow
-- 'drop_oldest') compare it with max_backlog.
CREATE FUNCTION eventbus._backlog(sub_id integer, lim bigint)
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
COMMENT ON FUNCTION eventbus._backlog(integer, bigint) IS
    'eventbus (internal): pending events of a subscription (waiting, in ready batches, uncut), counted up to lim';

CREATE FUNCTION eventbus.poll(
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
COMMENT ON FUNCTION eventbus.poll(text, integer, interval, interval, bigint) IS
    'eventbus: lease up to max_events events of a subscription: due retries first, then new events in commit order; wait for them up to "wait"; first ack what is still leased under ack_lease';

CREATE FUNCTION eventbus.ack(subscription text, event_ids bigint[], lease_token bigint DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'eventbus_ack'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION eventbus.ack(text, bigint[], bigint) IS
    'eventbus: finish leased events (under lease_token, if given; all of that lease when event_ids is NULL); returns how many are now done';

CREATE FUNCTION eventbus.nack(subscription text, event_id bigint, error text DEFAULT NULL,
                              retry_in interval DEFAULT NULL, lease_token bigint DEFAULT NULL,
                              dead boolean DEFAULT false)
RETURNS text
AS 'MODULE_PATHNAME', 'eventbus_nack'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION eventbus.nack(text, bigint, text, interval, bigint, boolean) IS
    'eventbus: give a leased event back: retried after backoff (or retry_in), dead after max_attempts or at once with dead => true';

CREATE FUNCTION eventbus.extend_lease(subscription text, event_ids bigint[], lease interval,
                                      lease_token bigint DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'eventbus_extend_lease'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION eventbus.extend_lease(text, bigint[], interval, bigint) IS
    'eventbus: make leases of events still being worked on end "lease" from now';

CREATE VIEW eventbus.dead_letters WITH (security_barrier) AS
SELECT s.name AS subscription, d.event_id, t.topic, e.key, e.payload,
       d.attempt AS attempts, d.last_error, d.reason, d.dead_at
  FROM eventbus.delivery d
  JOIN eventbus.subscription s ON s.id = d.sub_id
  LEFT JOIN eventbus.event_log e ON e.txid = d.txid AND e.id = d.event_id
  LEFT JOIN eventbus.topic t ON t.id = e.topic_id
 WHERE d.state = 'dead' AND eventbus._visible(s.owner, s.consumers, s.managers);
COMMENT ON VIEW eventbus.dead_letters IS
    'eventbus: events a subscription gave up on, with the last error, until redriven or purged';

-- Every event a subscription holds state for: in a batch (ready: cut, not
-- handed out yet; leased) or in a delivery row of its own (leased,
-- waiting, dead). Acked events and events not cut yet have no row here.
-- The rows of both tables first, then the subscriptions the role may see:
-- the filter stays a barrier (a UNION ALL at the top of the view would be
-- flattened, and a reader's function pushed into its branches).
CREATE VIEW eventbus.deliveries WITH (security_barrier) AS
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
COMMENT ON VIEW eventbus.deliveries IS
    'eventbus: every event a subscription holds state for: ready or leased in a batch, leased, waiting or dead on its own';

CREATE FUNCTION eventbus._redrive(caller regrole, subscription text, event_ids bigint[])
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
COMMENT ON FUNCTION eventbus._redrive(regrole, text, bigint[]) IS
    'eventbus (internal): redrive for the role that called eventbus.redrive (access.c)';

CREATE FUNCTION eventbus.redrive(subscription text, event_ids bigint[] DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'eventbus_gate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.redrive(text, bigint[]) IS
    'eventbus: put dead letters back, with fresh attempts (all of them when event_ids is NULL)';

CREATE FUNCTION eventbus._purge_dead_letters(caller regrole, subscription text, older_than interval)
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
COMMENT ON FUNCTION eventbus._purge_dead_letters(regrole, text, interval) IS
    'eventbus (internal): purge_dead_letters for the role that called eventbus.purge_dead_letters (access.c)';

CREATE FUNCTION eventbus.purge_dead_letters(subscription text, older_than interval DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'eventbus_gate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.purge_dead_letters(text, interval) IS
    'eventbus: discard dead letters for good (all, or those dead longer than older_than)';
