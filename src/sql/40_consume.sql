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

CREATE FUNCTION eventbus.poll(
    subscription text,
    max_events   integer  DEFAULT 100,
    lease        interval DEFAULT NULL)
RETURNS TABLE (event_id bigint, topic text, key text, payload jsonb, headers jsonb,
               published_at timestamptz, attempt integer, lease_until timestamptz)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s       eventbus.subscription;
    c       eventbus.cursor;
    v_now   timestamptz;
    v_until timestamptz;
    v_left  integer;
    v_topics integer[];
    v_hi    pg_snapshot;
    v_seen  integer;
    v_limit integer;
    v_fresh boolean := false;
    v_ids   bigint[] := '{}';
    v_txids xid8[] := '{}';
    d       record;
    e       record;
BEGIN
    PERFORM eventbus._check_origin();          -- before reading the clock
    v_now := clock_timestamp();
    s := eventbus._subscription(subscription);
    IF max_events IS NULL OR max_events < 1 OR max_events > 10000 THEN
        RAISE EXCEPTION 'max_events must be between 1 and 10000: %', max_events
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass e.g. 100.';
    END IF;
    IF lease IS NOT NULL THEN
        PERFORM eventbus._check_interval('lease', lease, interval '1 day');
    END IF;
    IF s.paused THEN
        RETURN;
    END IF;
    v_until := v_now + coalesce(lease, s.lease);
    v_left := max_events;

    -- 1. Deliveries due again: waiting ones whose time has come, expired leases.
    FOR d IN
        SELECT dl.event_id, dl.txid, dl.state, dl.attempt
          FROM eventbus.delivery dl
         WHERE dl.sub_id = s.id AND dl.state <> 'dead' AND dl.available_at <= v_now
         ORDER BY dl.available_at, dl.event_id
         LIMIT max_events
           FOR UPDATE SKIP LOCKED
    LOOP
        IF d.state = 'leased' AND d.attempt >= s.max_attempts THEN
            UPDATE eventbus.delivery dl
               SET state = 'dead', reason = 'lease_expired', dead_at = v_now,
                   last_error = coalesce(dl.last_error, 'lease expired')
             WHERE dl.sub_id = s.id AND dl.event_id = d.event_id;
            CONTINUE;
        END IF;
        SELECT ev.id, t.topic, ev.key, ev.payload, ev.headers, ev.published_at, ev.expires_at
          INTO e
          FROM eventbus.event_log ev JOIN eventbus.topic t ON t.id = ev.topic_id
         WHERE ev.txid = d.txid AND ev.id = d.event_id;
        IF NOT FOUND OR e.expires_at <= v_now THEN
            -- expired (TTL): never handed out again
            DELETE FROM eventbus.delivery dl WHERE dl.sub_id = s.id AND dl.event_id = d.event_id;
            CONTINUE;
        END IF;
        UPDATE eventbus.delivery dl
           SET state = 'leased', attempt = dl.attempt + 1, available_at = v_until
         WHERE dl.sub_id = s.id AND dl.event_id = d.event_id;
        event_id := e.id; topic := e.topic; key := e.key; payload := e.payload;
        headers := e.headers; published_at := e.published_at;
        attempt := d.attempt + 1; lease_until := v_until;
        RETURN NEXT;
        v_left := v_left - 1;
    END LOOP;
    IF v_left <= 0 THEN
        RETURN;
    END IF;

    -- 2. New events, by whoever holds the cursor; the others skip this step.
    SELECT * INTO c FROM eventbus.cursor cu WHERE cu.sub_id = s.id FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    v_topics := ARRAY(SELECT t.id FROM eventbus.topic t
                       WHERE EXISTS (SELECT 1 FROM unnest(s.patterns) p
                                      WHERE eventbus.topic_matches(t.topic, p)));

    -- The rest of the current window, then at most one fresh window.
    LOOP
        IF c.win_hi IS NULL THEN
            EXIT WHEN v_fresh;
            v_hi := eventbus._snapshot();
            -- Snapshots only move forward: a snapshot older than the window's
            -- start (possible under REPEATABLE READ) reads nothing now.
            EXIT WHEN pg_snapshot_xmax(v_hi) < pg_snapshot_xmax(c.win_lo)
                   OR EXISTS (SELECT 1 FROM pg_snapshot_xip(v_hi) x
                               WHERE pg_visible_in_snapshot(x, c.win_lo));
            -- Every event of the window has txid >= xmin(win_lo): start
            -- there, so the position is always an index condition.
            c.win_hi := v_hi; c.pos_txid := pg_snapshot_xmin(c.win_lo); c.pos_id := 0;
            v_fresh := true;
        END IF;

        v_limit := v_left;
        v_seen := 0;
        FOR e IN
            -- Two ordered walks of the (txid, id) indexes from the position,
            -- each limited, on the log alone (an OR would make the planner
            -- sort the whole window); topics are joined to what they return.
            SELECT w.id, w.txid, t.topic, w.key, w.payload, w.headers, w.published_at,
                   w.deliver_at, w.expires_at
              FROM ((SELECT ev.id, ev.txid, ev.topic_id, ev.key, ev.payload, ev.headers,
                            ev.published_at, ev.deliver_at, ev.expires_at
                       FROM eventbus.event_log ev      -- in progress at win_lo
                      WHERE ev.txid = ANY (ARRAY(SELECT pg_snapshot_xip(c.win_lo)))
                        AND ev.topic_id = ANY (v_topics)
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
                        AND pg_visible_in_snapshot(ev.txid, c.win_hi)
                        AND (ev.txid, ev.id) > (c.pos_txid, c.pos_id)
                      ORDER BY ev.txid, ev.id
                      LIMIT v_limit)) w
              JOIN eventbus.topic t ON t.id = w.topic_id
             ORDER BY w.txid, w.id        -- every xip txid is below xmax(win_lo)
             LIMIT v_limit
        LOOP
            v_seen := v_seen + 1;
            c.pos_txid := e.txid; c.pos_id := e.id;
            CONTINUE WHEN c.start_time IS NOT NULL AND e.published_at < c.start_time;
            CONTINUE WHEN s.filter IS NOT NULL AND NOT coalesce(e.payload @@ s.filter, false);
            CONTINUE WHEN e.expires_at <= v_now;               -- expired (TTL)
            IF e.deliver_at > v_now THEN                        -- delayed: wait in a row
                INSERT INTO eventbus.delivery (sub_id, event_id, txid, state, attempt, available_at)
                VALUES (s.id, e.id, e.txid, 'waiting', 0, e.deliver_at);
                CONTINUE;
            END IF;
            v_ids := v_ids || e.id;
            v_txids := v_txids || e.txid;
            event_id := e.id; topic := e.topic; key := e.key; payload := e.payload;
            headers := e.headers; published_at := e.published_at;
            attempt := 1; lease_until := v_until;
            RETURN NEXT;
            v_left := v_left - 1;
        END LOOP;

        -- One insert for every event leased from this window.
        INSERT INTO eventbus.delivery (sub_id, event_id, txid, state, attempt, available_at)
        SELECT s.id, u.id, u.txid, 'leased', 1, v_until FROM unnest(v_ids, v_txids) AS u (id, txid);
        v_ids := '{}';
        v_txids := '{}';

        -- Fewer rows than the limit: the window is read to its end.
        IF v_seen < v_limit THEN
            c.win_lo := c.win_hi; c.win_hi := NULL; c.pos_txid := NULL; c.pos_id := NULL;
        END IF;
        EXIT WHEN v_left <= 0;
    END LOOP;

    UPDATE eventbus.cursor cu
       SET win_lo = c.win_lo, win_hi = c.win_hi, pos_txid = c.pos_txid, pos_id = c.pos_id
     WHERE cu.sub_id = s.id;
END
$$;
COMMENT ON FUNCTION eventbus.poll(text, integer, interval) IS
    'eventbus: lease up to max_events events of a subscription: due retries first, then new events in commit order';

CREATE FUNCTION eventbus.ack(subscription text, event_ids bigint[])
RETURNS integer
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    DELETE FROM eventbus.delivery d
     WHERE d.sub_id = (eventbus._subscription(subscription)).id
       AND d.event_id = ANY (event_ids) AND d.state = 'leased';
    GET DIAGNOSTICS n = ROW_COUNT;
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
        RETURN 'dead';
    END IF;
    UPDATE eventbus.delivery dl
       SET state = 'waiting', last_error = error,
           available_at = clock_timestamp()
               + coalesce(retry_in, eventbus._backoff(s.backoff_initial, s.backoff_max, d.attempt))
     WHERE dl.sub_id = s.id AND dl.event_id = nack.event_id;
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
           reason = NULL, dead_at = NULL
     WHERE d.sub_id = (eventbus._subscription(subscription)).id AND d.state = 'dead'
       AND (event_ids IS NULL OR d.event_id = ANY (event_ids));
    GET DIAGNOSTICS n = ROW_COUNT;
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
    RETURN n;
END
$$;
COMMENT ON FUNCTION eventbus.purge_dead_letters(text, interval) IS
    'eventbus: discard dead letters for good (all, or those dead longer than older_than)';
