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

CREATE FUNCTION eventbus._stats_move_topics("from" integer[], "to" integer[])
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_stats_move_topics'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus._stats_move_topics(integer[], integer[]) IS
    'eventbus (internal): move the counts of dropped topic ids to the topic''s live id (NULL: forget them)';

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

CREATE FUNCTION eventbus._worker_stats_reset()
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_worker_stats_reset'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus._worker_stats_reset() IS
    'eventbus (internal): zero this database''s worker counters';

-- What a subscription has pending, read from the tables: unread events of
-- the log not cut into batches yet (those expired apart), waiting
-- deliveries plus leases that ran out, leases held, dead letters, the
-- publication time of the oldest pending event and of the newest matching
-- one, and the events of batches not handed out yet (ready). Unread events are counted up to one
-- million, so that a scrape stays cheap whatever the backlog.
CREATE FUNCTION eventbus._pending(sub_id integer,
    OUT unread bigint, OUT unread_expired bigint, OUT waiting bigint, OUT in_flight bigint,
    OUT dead_letters bigint, OUT oldest_pending timestamptz, OUT newest timestamptz,
    OUT ready bigint)
RETURNS record
LANGUAGE plpgsql STABLE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s eventbus.subscription;
    c eventbus.cursor;
    v_now timestamptz := clock_timestamp();
    v_oldest timestamptz;
BEGIN
    SELECT * INTO s FROM eventbus.subscription sb WHERE sb.id = _pending.sub_id;
    SELECT * INTO c FROM eventbus.cursor cu WHERE cu.sub_id = _pending.sub_id;
    IF s.id IS NULL OR c.sub_id IS NULL THEN
        RETURN;
    END IF;
    SELECT count(*) FILTER (WHERE NOT u.gone), count(*) FILTER (WHERE u.gone),
           min(u.published_at) FILTER (WHERE NOT u.gone), max(u.published_at)
      INTO unread, unread_expired, oldest_pending, newest
      FROM (SELECT x.published_at, coalesce(x.expires_at <= v_now, false) AS gone
              FROM eventbus._unread(s.id, 1000000) x) u;
    SELECT count(*) FILTER (WHERE d.state = 'waiting' OR (d.state = 'leased' AND d.available_at <= v_now)),
           count(*) FILTER (WHERE d.state = 'leased' AND d.available_at > v_now),
           count(*) FILTER (WHERE d.state = 'dead'),
           min(e.published_at) FILTER (WHERE d.state <> 'dead' AND NOT (d.state = 'leased' AND d.available_at > v_now))
      INTO waiting, in_flight, dead_letters, v_oldest
      FROM eventbus.delivery d
      LEFT JOIN eventbus.event_log e ON e.txid = d.txid AND e.id = d.event_id AND d.state <> 'dead'
     WHERE d.sub_id = s.id;
    oldest_pending := least(oldest_pending, v_oldest);
    -- Batches: never handed out (ready); handed out before and free again,
    -- or their lease over (waiting); leased (in flight).
    SELECT coalesce(sum(cardinality(b.ids) - b.ndone) FILTER (WHERE NOT b.leased AND b.attempt = 0), 0),
           waiting + coalesce(sum(cardinality(b.ids) - b.ndone)
                              FILTER (WHERE (NOT b.leased AND b.attempt > 0) OR b.lease_until <= v_now), 0),
           in_flight + coalesce(sum(cardinality(b.ids) - b.ndone) FILTER (WHERE b.leased AND b.lease_until > v_now), 0)
      INTO ready, waiting, in_flight
      FROM eventbus.batch b WHERE b.sub_id = s.id;
    SELECT least(oldest_pending, min(e.published_at)) INTO oldest_pending
      FROM (SELECT b.first_txid, b.last_txid, b.ids FROM eventbus.batch b
             WHERE b.sub_id = s.id AND (NOT b.leased OR b.lease_until <= v_now)
             ORDER BY b.batch_id LIMIT 1) ob
      JOIN eventbus.event_log e ON e.txid >= ob.first_txid AND e.txid <= ob.last_txid AND e.id = ANY (ob.ids);
    IF newest IS NULL AND oldest_pending IS NOT NULL THEN
        -- Nothing unread: the newest matching event was read already. Its
        -- topic's last commit (shared memory), else a bounded look back.
        -- Topics are matched among those the counters, or the events
        -- looked at, name: never the whole dictionary.
        SELECT max(st.last_published_at) INTO newest
          FROM eventbus._stats_topics() st
          JOIN eventbus.topic tp ON tp.id = st.topic_id
         WHERE EXISTS (SELECT 1 FROM unnest(s.patterns) p WHERE eventbus.topic_matches(tp.topic, p));
        IF newest IS NULL THEN
            WITH q AS (SELECT ev.published_at, ev.topic_id, ev.rejected_by
                         FROM eventbus.event_log ev
                        ORDER BY ev.txid DESC, ev.id DESC
                        LIMIT 100000),
                 m AS (SELECT tp.id FROM eventbus.topic tp
                        WHERE tp.id IN (SELECT DISTINCT q.topic_id FROM q)
                          AND EXISTS (SELECT 1 FROM unnest(s.patterns) p
                                       WHERE eventbus.topic_matches(tp.topic, p)))
            SELECT max(q.published_at) INTO newest
              FROM q WHERE q.topic_id IN (SELECT m.id FROM m) AND q.rejected_by IS NULL;
        END IF;
    END IF;
END
$$;
COMMENT ON FUNCTION eventbus._pending(integer) IS
    'eventbus (internal): a subscription''s pending events, read from the tables';

-- The checks behind GET /health of the metrics endpoint, also for probes
-- that use SQL: one row per check, whether it passes, what was seen and
-- the threshold (settings eventbus.health_*; 0 or -1: reported only).
--   worker        this database's worker runs
--   ticking       its last tick is at most health_tick_age old
--   lag           the oldest pending event of any subscription that is
--                 not paused is at most health_max_lag old
--   dead_letters  at most health_max_new_dead_letters events became dead
--                 letters in the last health_dead_letter_window
-- Without the library preloaded there is no worker: "worker" fails.
CREATE FUNCTION eventbus.health(OUT check_name text, OUT ok boolean, OUT value text, OUT threshold text)
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- The settings show with a unit ('1min'), which interval reads.
    v_tick     interval := coalesce(current_setting('eventbus.health_tick_age', true), '60s')::interval;
    v_lag      interval := coalesce(current_setting('eventbus.health_max_lag', true), '0')::interval;
    v_window   interval := coalesce(current_setting('eventbus.health_dead_letter_window', true), '300s')::interval;
    v_max_dead bigint := coalesce(current_setting('eventbus.health_max_new_dead_letters', true), '-1')::bigint;
    v_now      timestamptz := clock_timestamp();
    w          record;
    v_worst    record;
    v_new      bigint;
BEGIN
    SELECT ws.pid, ws.state, ws.last_tick_at INTO w
      FROM eventbus._worker_stats() ws WHERE ws.database = current_database();
    check_name := 'worker';
    ok := w.pid IS NOT NULL AND w.state = 'running';
    value := CASE WHEN w.pid IS NULL THEN coalesce(w.state, 'no worker') ELSE format('pid %s, %s', w.pid, w.state) END;
    threshold := 'running';
    RETURN NEXT;
    check_name := 'ticking';
    ok := w.last_tick_at IS NOT NULL AND v_now - w.last_tick_at <= v_tick;
    value := CASE WHEN w.last_tick_at IS NULL THEN 'never ticked'
                  ELSE format('last tick %s s ago', round(extract(epoch FROM v_now - w.last_tick_at)::numeric, 1)) END;
    threshold := format('%s s', extract(epoch FROM v_tick)::bigint);
    RETURN NEXT;
    SELECT s.name, v_now - p.oldest_pending AS age INTO v_worst
      FROM eventbus.subscription s CROSS JOIN LATERAL eventbus._pending(s.id) p
     WHERE NOT s.paused AND p.oldest_pending IS NOT NULL
     ORDER BY p.oldest_pending LIMIT 1;
    check_name := 'lag';
    ok := v_lag = interval '0' OR v_worst.age IS NULL OR v_worst.age <= v_lag;
    value := CASE WHEN v_worst.age IS NULL THEN 'nothing pending'
                  ELSE format('oldest pending event %s s old (subscription %s)',
                              round(extract(epoch FROM v_worst.age)::numeric, 1), v_worst.name) END;
    threshold := CASE WHEN v_lag = interval '0' THEN 'not checked' ELSE format('%s s', extract(epoch FROM v_lag)::bigint) END;
    RETURN NEXT;
    SELECT count(*) INTO v_new FROM eventbus.delivery d
     WHERE d.state = 'dead' AND d.dead_at > v_now - v_window;
    check_name := 'dead_letters';
    ok := v_max_dead < 0 OR v_new <= v_max_dead;
    value := format('%s new in the last %s s', v_new, extract(epoch FROM v_window)::bigint);
    threshold := CASE WHEN v_max_dead < 0 THEN 'not checked' ELSE v_max_dead::text END;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION eventbus.health() IS
    'eventbus: the checks of GET /health (worker running, ticking, lag, new dead letters), each with its threshold';

-- One row per topic, whatever number of dictionary ids it has (a race, or
-- a new id after the topic was retired: src/topicdict.c).
CREATE VIEW eventbus.topic_stats AS
SELECT t.topic,
       CASE WHEN i.enabled THEN coalesce(sum(st.published), 0)::bigint END AS published,
       CASE WHEN i.enabled THEN coalesce(sum(st.bytes), 0)::bigint END AS bytes,
       max(st.last_published_at) AS last_published_at,
       i.stats_reset
  FROM eventbus.topic t
 CROSS JOIN eventbus._stats_info() i
  LEFT JOIN eventbus._stats_topics() st ON st.topic_id = t.id
 GROUP BY t.topic, i.enabled, i.stats_reset;
COMMENT ON VIEW eventbus.topic_stats IS
    'eventbus: events and bytes published (committed) per topic since the last reset';

CREATE VIEW eventbus.subscription_stats AS
SELECT s.name AS subscription,
       CASE WHEN i.enabled THEN coalesce(st."read", 0) + p.unread + p.unread_expired + p.ready END AS routed,
       CASE WHEN i.enabled THEN coalesce(st."read", 0) END AS "read",
       CASE WHEN i.enabled THEN coalesce(st.delivered, 0) END AS delivered,
       CASE WHEN i.enabled THEN coalesce(st.acked, 0) END AS acked,
       CASE WHEN i.enabled THEN coalesce(st.nacked, 0) END AS nacked,
       CASE WHEN i.enabled THEN coalesce(st.retried, 0) END AS retried,
       CASE WHEN i.enabled THEN coalesce(st.dead, 0) END AS dead,
       CASE WHEN i.enabled THEN coalesce(st.expired, 0) END AS expired,
       CASE WHEN i.enabled THEN coalesce(st.redriven, 0) END AS redriven,
       CASE WHEN i.enabled THEN coalesce(st.discarded, 0) END AS discarded,
       p.unread + p.ready + p.waiting AS backlog,
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
    SELECT eventbus._worker_stats_reset();
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
            ('relay', 'eventbus_relay_up', 'gauge', '1 when the relay process is running and not waiting for the sink or retrying.', 'up'),
            ('relay', 'eventbus_relay_produced_events_total', 'counter', 'Events the relay sent and the sink acknowledged, since the server started.', 'produced'),
            ('relay', 'eventbus_relay_resent_events_total', 'counter', 'Events the relay sent again after a failure for now (each may reach the sink twice), since the server started.', 'resent'),
            ('relay', 'eventbus_relay_last_error_timestamp_seconds', 'gauge', 'When the relay last met an error of its sink (0: none since the server started).', 'last_error_at'),
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
        ELSIF m.source = 'relay' AND m.name = 'eventbus_relay_up' THEN
            -- The backlog and lag of a relay are its subscription's, above.
            SELECT array_agg(jsonb_build_object(
                       'l', 'relay="' || eventbus._prom_label(r.name) || '",sink="' || r.sink || '"',
                       'up', (r.state = 'running')::integer, 'produced', r.produced, 'resent', r.resent,
                       'last_error_at', coalesce(extract(epoch FROM r.last_error_at), 0))
                     ORDER BY r.name)
              INTO v_rows FROM eventbus.relays r;
        ELSIF m.source = 'worker' AND m.name = 'eventbus_worker_up' THEN
            SELECT array_agg(jsonb_build_object(
                       'l', 'database="' || eventbus._prom_label(w.database) || '"',
                       'up', (w.state = 'running')::integer, 'ticks', w.ticks,
                       'notifications', w.notifications, 'handler_calls', w.handler_calls,
                       'loop_seconds', w.total_loop_time / 1000,
                       'last_tick_at', extract(epoch FROM w.last_tick_at))
                     ORDER BY w.database)
              INTO v_rows FROM eventbus.worker_stats w
             WHERE w.database = current_database();   -- other databases are not this scrape's to name
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
SELECT eventbus._worker_stats_reset();

-- Reading statistics is for the extension owner and pg_monitor; nothing
-- here changes state except reset_stats.
REVOKE ALL ON eventbus.topic_stats, eventbus.subscription_stats, eventbus.latency_stats,
              eventbus.worker_stats FROM PUBLIC;
GRANT SELECT ON eventbus.topic_stats, eventbus.subscription_stats, eventbus.latency_stats,
                eventbus.worker_stats TO pg_monitor;
REVOKE EXECUTE ON FUNCTION
    eventbus.reset_stats(),
    eventbus.prometheus(),
    eventbus.health(),
    eventbus._stats_sub(integer, bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint, timestamptz[], timestamptz[], boolean),
    eventbus._stats_drop_sub(integer),
    eventbus._stats_prune(integer[]),
    eventbus._stats_move_topics(integer[], integer[]),
    eventbus._stats_topics(),
    eventbus._stats_subscriptions(),
    eventbus._stats_info(),
    eventbus._stats_reset(),
    eventbus._worker_stats(),
    eventbus._worker_stats_reset(),
    eventbus._pending(integer),
    eventbus._unread(integer, bigint, regclass, boolean)
FROM PUBLIC;
-- The views call these as the reading role.
GRANT EXECUTE ON FUNCTION
    eventbus.prometheus(),
    eventbus.health(),
    eventbus._stats_topics(),
    eventbus._stats_subscriptions(),
    eventbus._stats_info(),
    eventbus._worker_stats(),
    eventbus._pending(integer)
TO pg_monitor;
