-- eventbus install script, part 50: data restored from another cluster.
--
-- Events and cursors store transaction ids and snapshots, which mean
-- something only in the cluster that wrote them. After pg_dump/pg_restore
-- into another cluster (another xid history), the first publish, subscribe
-- or poll adopts the restored data once: every subscription's undelivered
-- events become due deliveries, restored events are re-stamped as committed
-- long ago (xid 2), and cursors restart after them. eventbus.origin names
-- the cluster the data belongs to; CREATE EXTENSION records this one, and
-- a restore adds the dumped cluster's row.

CREATE TABLE eventbus.origin (
    system_identifier bigint NOT NULL
);
INSERT INTO eventbus.origin SELECT system_identifier FROM pg_catalog.pg_control_system();
SELECT pg_catalog.pg_extension_config_dump('eventbus.origin', '');
COMMENT ON TABLE eventbus.origin IS 'eventbus: the cluster whose transaction ids the stored data uses';

CREATE FUNCTION eventbus._adopt_restored()
RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cur      bigint := (SELECT system_identifier FROM pg_control_system());
    s        record;
BEGIN
    -- One adopter at a time; the others find the work done.
    LOCK TABLE eventbus.origin IN EXCLUSIVE MODE;
    -- Restored chunks were never sealed here: from now on maintenance may
    -- reclaim them, once no subscription needs them (sql/60_workers.sql).
    UPDATE eventbus.chunk ch SET sealed_at = now()
     WHERE NOT ch.is_current AND ch.sealed_at IS NULL;
    -- Restored chunks may hold events of every restored topic: they count
    -- as of the current generation until they are truncated, and the
    -- restored topics as not retired (src/topicdict.c).
    UPDATE eventbus.chunk ch SET generation = (SELECT cc.generation FROM eventbus.chunk cc WHERE cc.is_current)
     WHERE ch.generation IS NULL;
    UPDATE eventbus.topic t SET used_gen = 0, retired_gen = NULL
     WHERE t.used_gen <> 0 OR t.retired_gen IS NOT NULL;
    IF NOT EXISTS (SELECT 1 FROM eventbus.origin o WHERE o.system_identifier <> cur) THEN
        -- Restored into this same cluster: the xids are ours; one row is enough.
        IF (SELECT count(*) FROM eventbus.origin) > 1 THEN
            DELETE FROM eventbus.origin;
            INSERT INTO eventbus.origin VALUES (cur);
        END IF;
        RETURN false;
    END IF;

    -- Batches (ready or leased): their open events become due deliveries.
    INSERT INTO eventbus.delivery (sub_id, event_id, txid, state, attempt, available_at)
    SELECT b.sub_id, ev.id, ev.txid, 'waiting', b.attempt, now()
      FROM eventbus.batch b
      JOIN eventbus.event_log ev ON ev.txid >= b.first_txid AND ev.txid <= b.last_txid
                                AND ev.id = ANY (b.ids)
     WHERE b.done IS NULL OR get_bit(b.done, array_position(b.ids, ev.id) - 1) = 0
    ON CONFLICT DO NOTHING;
    DELETE FROM eventbus.batch;

    -- Snapshots and xids still agree with each other here: both come from
    -- the dumped cluster, so each cursor says exactly what is undelivered
    -- (eventbus._unread reads the log as a cut would, in commit order, so
    -- that keys of ordered subscriptions queue in it).
    FOR s IN SELECT sb.id, sb.ordered FROM eventbus.subscription sb LOOP
        INSERT INTO eventbus.delivery (sub_id, event_id, txid, state, attempt, available_at, key, ord)
        SELECT s.id, q.event_id, q.txid, 'waiting', 0, coalesce(q.deliver_at, now()),
               CASE WHEN s.ordered THEN q.key END,
               CASE WHEN s.ordered AND q.key IS NOT NULL THEN nextval('eventbus.delivery_ord_seq') END
          FROM eventbus._unread(s.id, restored => true) q
        ON CONFLICT DO NOTHING;
    END LOOP;

    -- Everything restored counts as committed before any snapshot here.
    UPDATE eventbus.event_log SET txid = '2';
    UPDATE eventbus.delivery SET txid = '2';
    UPDATE eventbus.cursor
       SET win_lo = '3:3:', win_hi = NULL, pos_txid = NULL, pos_id = NULL,
           start_time = NULL, start_id = NULL;
    DELETE FROM eventbus.origin;
    INSERT INTO eventbus.origin VALUES (cur);
    RETURN true;
END
$$;
COMMENT ON FUNCTION eventbus._adopt_restored() IS
    'eventbus (internal): adopt events and cursors restored from another cluster';

CREATE FUNCTION eventbus._check_origin()
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_check_origin'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus._check_origin() IS
    'eventbus (internal): adopt restored data if it comes from another cluster (cached per backend)';

REVOKE EXECUTE ON FUNCTION eventbus._adopt_restored(), eventbus._check_origin() FROM PUBLIC;
