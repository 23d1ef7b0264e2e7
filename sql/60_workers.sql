-- eventbus install script, part 60: background workers and maintenance.
--
-- The background worker (src/worker.c) ticks after publishing commits (and
-- at least every eventbus.tick_interval): it notifies, with at most one
-- NOTIFY each, the subscriptions that have something new (src/tick.c). It
-- calls _maintain every eventbus.maintenance_interval: the event log moves on to
-- the next chunk and chunks nobody needs are truncated. run_maintenance()
-- does one round of both by hand (e.g. from pg_cron, without the worker).
-- See docs/workers.md and docs/notifications.md.

CREATE FUNCTION eventbus._worker_start()
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_worker_start'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus._worker_start() IS
    'eventbus (internal): start this database''s background worker when the transaction commits';

CREATE FUNCTION eventbus._chunks_changed()
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_chunks_changed'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus._chunks_changed() IS
    'eventbus (internal): make every backend re-read the current chunk';

-- One tick: what became pollable since the previous tick (snapshot prev,
-- time prev_at), and one NOTIFY per subscription concerned:
--   * events committed between the two snapshots (prev and snap), on
--     topics the subscription's patterns match (its filter is not applied:
--     a notification means "poll now", and the poll may find nothing).
--     The worker reads the topics of those events in C (src/window.c) and
--     passes them: "topics";
--   * deliveries whose retry, delay or lease ended since prev_at, and
--     batches whose lease ended since prev_at;
--   * subscriptions named by committed transactions (kicked): a nack with
--     an immediate retry, a redrive, resume, seek, an ack of an ordered
--     event, a poll that stopped at max_events.
-- The first tick of a worker (prev NULL) notifies every subscription.
-- The payload of each notification is the subscription's name.
CREATE FUNCTION eventbus._notify_needed(sub_id integer)
RETURNS boolean
AS 'MODULE_PATHNAME', 'eventbus_notify_needed'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus._notify_needed(integer) IS
    'eventbus (internal): whether to NOTIFY a subscription again (it was polled since, or 1 s passed)';


-- The subscriptions that still need an event stored in a chunk: one of
-- their deliveries (leased, waiting or dead) refers to it, one of their
-- batches may hold one of its events (the batch's xid range meets the
-- chunk's), or their position is before one of its events on a topic
-- they match.
CREATE FUNCTION eventbus._chunk_pins(chunk regclass)
RETURNS text[]
LANGUAGE plpgsql STABLE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_pins text[];
BEGIN
    -- Only a chunk of the log: the query below reads it as one.
    IF NOT EXISTS (SELECT 1 FROM eventbus.chunk c
                    WHERE to_regclass(format('eventbus.%I', c.relname)) = chunk) THEN
        RAISE EXCEPTION '% is not a chunk of the eventbus log', chunk
            USING ERRCODE = 'invalid_parameter_value', HINT = 'eventbus.chunks lists them.';
    END IF;
    EXECUTE format($q$
        SELECT array_agg(s.name ORDER BY s.name)
          FROM eventbus.subscription s JOIN eventbus.cursor cu ON cu.sub_id = s.id
         WHERE EXISTS (SELECT 1 FROM eventbus.delivery d JOIN %1$s ev
                                  ON ev.txid = d.txid AND ev.id = d.event_id
                        WHERE d.sub_id = s.id)
            OR EXISTS (SELECT 1 FROM eventbus.batch b
                        WHERE b.sub_id = s.id
                          AND EXISTS (SELECT 1 FROM %1$s ev
                                       WHERE ev.txid >= b.first_txid AND ev.txid <= b.last_txid))
            OR EXISTS (SELECT 1 FROM eventbus._unread(s.id, 1, %1$L::regclass))$q$, chunk)
      INTO v_pins;
    RETURN coalesce(v_pins, '{}');
END
$$;
COMMENT ON FUNCTION eventbus._chunk_pins(regclass) IS
    'eventbus (internal): names of the subscriptions that still need events of a chunk';

-- One step of the topic dictionary's upkeep (src/topicdict.c says why it
-- is safe): fold the uses publishers recorded into used_gen, retire topics
-- used in no chunk generation still stored, and drop retired ones that no
-- stored chunk can hold any more (their counts go to the topic's new id).
-- At most so many rows each, so that a step stays short; returns whether
-- more is left. Holds eventbus.chunk's lock (taken without waiting), so
-- that no rotation changes the generations meanwhile; does nothing while
-- restored data is not adopted.
CREATE FUNCTION eventbus._maintain_topics(OUT more boolean)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_min_gen bigint;
    v_cur_gen bigint;
    v_from    integer[];
    v_to      integer[];
    v_n       bigint;
BEGIN
    more := false;
    BEGIN
        LOCK TABLE eventbus.chunk IN EXCLUSIVE MODE NOWAIT;
    EXCEPTION WHEN lock_not_available THEN
        more := true;                       -- a maintenance round is running
        RETURN;
    END;
    IF (SELECT count(*) <> 1 OR bool_or(o.system_identifier <> (SELECT system_identifier FROM pg_control_system()))
          FROM eventbus.origin o) THEN
        RETURN;                             -- restored data not adopted yet
    END IF;
    SELECT min(ch.generation), max(ch.generation) INTO v_min_gen, v_cur_gen
      FROM eventbus.chunk ch WHERE ch.generation IS NOT NULL;
    IF v_min_gen IS NULL THEN
        RETURN;
    END IF;
    -- EXECUTE: planned each time for the dictionary's current size (a
    -- plan cached while it was small would scan it once per row).
    EXECUTE $q$
        WITH u AS (DELETE FROM eventbus.topic_use x
                    WHERE x.ctid = ANY (ARRAY(SELECT y.ctid FROM eventbus.topic_use y LIMIT 20000))
                   RETURNING x.topic_id, x.generation),
             f AS (UPDATE eventbus.topic t SET used_gen = q.g
                     FROM (SELECT u.topic_id, max(u.generation) AS g FROM u GROUP BY u.topic_id) q
                    WHERE t.id = q.topic_id AND t.used_gen < q.g)
        SELECT count(*) FROM u$q$ INTO v_n;
    more := more OR v_n >= 20000;
    EXECUTE $q$
        UPDATE eventbus.topic t SET retired_gen = $1
         WHERE t.id = ANY (ARRAY(SELECT r.id FROM eventbus.topic r
                                  WHERE r.retired_gen IS NULL AND r.used_gen < $2
                                  LIMIT 2000))$q$ USING v_cur_gen, v_min_gen;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    more := more OR v_n >= 2000;
    EXECUTE $q$
        WITH d AS (DELETE FROM eventbus.topic t
                    WHERE t.id = ANY (ARRAY(SELECT r.id FROM eventbus.topic r
                                             WHERE r.retired_gen < $1
                                             LIMIT 2000))
                   RETURNING t.id, t.topic)
        -- The topic alone in WHERE: found through its index, never by a
        -- scan of another index once per row.
        SELECT array_agg(d.id),
               array_agg((SELECT max(CASE WHEN l.retired_gen IS NULL OR l.retired_gen >= $1 THEN l.id END)
                            FROM eventbus.topic l
                           WHERE l.topic = d.topic))
          FROM d$q$ INTO v_from, v_to USING v_min_gen;
    more := more OR coalesce(cardinality(v_from), 0) >= 2000;
    PERFORM eventbus._stats_move_topics(v_from, v_to) WHERE v_from IS NOT NULL;
END
$$;
COMMENT ON FUNCTION eventbus._maintain_topics() IS
    'eventbus (internal): one bounded step of dropping unused topics from the dictionary';

-- One round of chunk maintenance:
--   1. reclaim: a chunk that is not current, sealed more than
--      eventbus.retention ago and needed by no subscription is truncated.
--      It is checked under a SHARE lock taken without waiting (NOWAIT):
--      holding it proves that no transaction that wrote to it is still
--      open, and readers go on; only the TRUNCATE takes (again without
--      waiting) the ACCESS EXCLUSIVE lock.
--   2. rotate: when the current chunk holds events and is older than
--      eventbus.chunk_interval or larger than eventbus.chunk_size, and the
--      next chunk of the ring is empty, publishing moves on to it.
-- Nothing is reclaimed while restored data is not adopted yet (eventbus.
-- origin not settled: a restore may still be loading subscriptions), nor a
-- chunk that was never sealed here (restored rows; _adopt_restored seals).
-- READ COMMITTED only: each check must see what committed before its lock.
-- Returns what it did. Two rounds never run at once (the second skips).
CREATE FUNCTION eventbus._maintain(OUT reclaimed integer, OUT rotated boolean)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_retention interval := current_setting('eventbus.retention')::interval;
    v_interval  interval := current_setting('eventbus.chunk_interval')::interval;
    v_size      bigint   := pg_size_bytes(current_setting('eventbus.chunk_size'));
    v_now       timestamptz := clock_timestamp();
    v_rel       regclass;
    v_any       boolean;
    c           eventbus.chunk;
    n           eventbus.chunk;
BEGIN
    reclaimed := 0;
    rotated := false;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'eventbus maintenance must run in a READ COMMITTED transaction'
            USING ERRCODE = 'invalid_transaction_state',
                  HINT = 'Run SELECT eventbus.run_maintenance() on its own, or with SET TRANSACTION ISOLATION LEVEL READ COMMITTED.';
    END IF;
    -- Counters of subscriptions dropped meanwhile (src/stats.c).
    PERFORM eventbus._stats_prune(ARRAY(SELECT s.id FROM eventbus.subscription s));
    -- Expiry counts into the cursors whose row is free (none is waited for).
    WITH free AS (SELECT cu.sub_id FROM eventbus.cursor cu
                   WHERE cu.sub_id IN (SELECT DISTINCT x.sub_id FROM eventbus.expiry x)
                     FOR UPDATE SKIP LOCKED),
         folded AS (DELETE FROM eventbus.expiry x USING free f WHERE x.sub_id = f.sub_id
                    RETURNING x.sub_id, x.n)
    UPDATE eventbus.cursor cu SET expired = cu.expired + q.n
      FROM (SELECT folded.sub_id, sum(folded.n) AS n FROM folded GROUP BY folded.sub_id) q
     WHERE cu.sub_id = q.sub_id;
    BEGIN
        LOCK TABLE eventbus.chunk IN EXCLUSIVE MODE NOWAIT;
    EXCEPTION WHEN lock_not_available THEN
        RETURN;                             -- another round is running
    END;
    IF (SELECT count(*) <> 1 OR bool_or(o.system_identifier <> (SELECT system_identifier FROM pg_control_system()))
          FROM eventbus.origin o) THEN
        RETURN;                             -- restored data not adopted yet
    END IF;

    FOR c IN SELECT * FROM eventbus.chunk ch
              WHERE NOT ch.is_current AND ch.sealed_at IS NOT NULL
                AND ch.sealed_at <= v_now - v_retention
              ORDER BY ch.chunk_no LOOP
        v_rel := format('eventbus.%I', c.relname)::regclass;
        BEGIN
            EXECUTE format('LOCK TABLE %s IN SHARE MODE NOWAIT', v_rel);
        EXCEPTION WHEN lock_not_available THEN
            CONTINUE;                       -- a writer is still open: next round
        END;
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s)', v_rel) INTO v_any;
        IF NOT v_any THEN
            -- Empty, and no writer open (the lock): it holds no generation.
            UPDATE eventbus.chunk ch SET generation = NULL
             WHERE ch.chunk_no = c.chunk_no AND ch.generation IS NOT NULL;
            CONTINUE;
        END IF;
        CONTINUE WHEN cardinality(eventbus._chunk_pins(v_rel)) > 0;
        BEGIN
            EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE NOWAIT', v_rel);
        EXCEPTION WHEN lock_not_available THEN
            CONTINUE;                       -- being read right now: next round
        END;
        EXECUTE format('TRUNCATE %s', v_rel);
        UPDATE eventbus.chunk ch SET reclaimed_at = v_now, generation = NULL WHERE ch.chunk_no = c.chunk_no;
        reclaimed := reclaimed + 1;
    END LOOP;

    -- One step of the topic dictionary's upkeep (the worker takes the
    -- next ones between its ticks). Before the rotation, whose lock on
    -- the next chunk holds publishers until the commit.
    PERFORM eventbus._maintain_topics();

    SELECT * INTO c FROM eventbus.chunk ch WHERE ch.is_current;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM eventbus.%I)', c.relname) INTO v_any;
    IF v_any AND (c.opened_at <= v_now - v_interval
                  OR pg_relation_size(format('eventbus.%I', c.relname)::regclass) >= v_size) THEN
        SELECT * INTO n FROM eventbus.chunk ch WHERE ch.chunk_no = (c.chunk_no + 1) % 3;
        -- Empty, with no writer still open (a long transaction of its last
        -- turn would otherwise add events of that turn to the new one).
        BEGIN
            EXECUTE format('LOCK TABLE eventbus.%I IN SHARE MODE NOWAIT', n.relname);
            EXECUTE format('SELECT NOT EXISTS (SELECT 1 FROM eventbus.%I)', n.relname) INTO v_any;
        EXCEPTION WHEN lock_not_available THEN
            v_any := false;                 -- next round
        END;
        IF v_any THEN
            UPDATE eventbus.chunk ch SET is_current = false, sealed_at = v_now WHERE ch.chunk_no = c.chunk_no;
            UPDATE eventbus.chunk ch SET is_current = true, opened_at = v_now, sealed_at = NULL,
                                         generation = coalesce(c.generation, 0) + 1
             WHERE ch.chunk_no = n.chunk_no;
            PERFORM eventbus._chunks_changed();
            rotated := true;
        END IF;
    END IF;
END
$$;
COMMENT ON FUNCTION eventbus._maintain() IS
    'eventbus (internal): reclaim chunks nobody needs, move publishing on to the next chunk';

-- What the background worker does, by hand: one round of chunk maintenance,
-- then one notification to every subscription that is not paused (without
-- the worker, nothing else tells LISTENing consumers about retries and
-- delays). Schedule it with pg_cron when the library is not preloaded.
CREATE FUNCTION eventbus.run_maintenance(OUT reclaimed integer, OUT rotated boolean,
                                         OUT notified integer)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    PERFORM eventbus._check_origin();
    SELECT m.reclaimed, m.rotated INTO reclaimed, rotated FROM eventbus._maintain() m;
    notified := 0;
    FOR r IN SELECT s.id, s.name FROM eventbus.subscription s WHERE NOT s.paused ORDER BY s.name LOOP
        IF eventbus._notify_needed(r.id) THEN
            PERFORM pg_notify('eventbus_' || r.name, r.name);
            notified := notified + 1;
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION eventbus.run_maintenance() IS
    'eventbus: one round of what the background worker does: reclaim and rotate chunks, notify subscriptions';

CREATE VIEW eventbus.chunks AS
SELECT c.chunk_no, c.relname, c.is_current, c.opened_at, c.sealed_at, c.reclaimed_at,
       pg_total_relation_size(format('eventbus.%I', c.relname)::regclass) AS bytes,
       eventbus._chunk_pins(format('eventbus.%I', c.relname)::regclass) AS pinned_by
  FROM eventbus.chunk c;
COMMENT ON VIEW eventbus.chunks IS
    'eventbus: the chunks of the event log, their size, and the subscriptions that keep each from being reclaimed';

-- Recurring events through pg_cron: the job publishes the payload on the
-- topic in this database, as the role that scheduled it.
CREATE FUNCTION eventbus.schedule(job text, cron text, topic text, payload jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_cmd text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'eventbus.schedule needs the extension pg_cron in this database'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('pg_cron runs jobs of one database (cron.database_name, now %L): add pg_cron to shared_preload_libraries, set cron.database_name = %L and run CREATE EXTENSION pg_cron here.',
                                -- pg_settings, not current_setting(): a role that may not read it gets NULL, not 42501
                                (SELECT s.setting FROM pg_settings s WHERE s.name = 'cron.database_name'),
                                current_database());
    END IF;
    IF job IS NULL OR job = '' OR cron IS NULL OR payload IS NULL THEN
        RAISE EXCEPTION 'job, cron and payload must not be NULL or empty'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass e.g. eventbus.schedule(''nightly'', ''0 3 * * *'', ''reports.nightly'', ''{}'').';
    END IF;
    IF topic IS NULL OR NOT eventbus.is_valid_topic(topic) THEN
        RAISE EXCEPTION 'invalid topic "%"', coalesce(topic, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A topic is dot-separated words, e.g. ''reports.nightly''.';
    END IF;
    v_cmd := format('SELECT eventbus.publish(%L, %L::jsonb)', topic, payload);
    RETURN cron.schedule(job, cron, v_cmd);
END
$$;
COMMENT ON FUNCTION eventbus.schedule(text, text, text, jsonb) IS
    'eventbus: publish an event on a cron schedule (needs pg_cron); returns the pg_cron job id';

CREATE FUNCTION eventbus.unschedule(job text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'eventbus.unschedule needs the extension pg_cron'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Jobs are kept by pg_cron; without it there is nothing to unschedule.';
    END IF;
    -- Only the caller's jobs that eventbus.schedule made: the others are
    -- pg_cron's business (cron.unschedule).
    IF NOT EXISTS (SELECT 1 FROM cron.job j
                    WHERE j.jobname = unschedule.job AND j.username = current_user
                      AND j.command LIKE 'SELECT eventbus.publish(%') THEN
        RAISE EXCEPTION 'no eventbus job "%" of role %', job, current_user
            USING ERRCODE = 'undefined_object',
                  HINT = 'eventbus.unschedule removes the jobs eventbus.schedule made; remove other pg_cron jobs with cron.unschedule().';
    END IF;
    RETURN cron.unschedule(job);
END
$$;
COMMENT ON FUNCTION eventbus.unschedule(text) IS
    'eventbus: remove a job made by eventbus.schedule (needs pg_cron)';

-- This database's worker starts when CREATE EXTENSION commits.
SELECT eventbus._worker_start();
