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
