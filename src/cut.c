/*-------------------------------------------------------------------------
 *
 * cut.c
 *	  Cutting a subscription's stream into batches.
 *
 * A subscription's position is a window of two snapshots in
 * eventbus.cursor (window.c explains windows). EbCut reads on from it, in
 * commit order, the events the subscription has not read yet and sorts
 * each into one of:
 *
 *	 - a batch (eventbus.batch): up to batch_size events, one row holding
 *	   their ids, where they lie in the log, and a bitmap of those done.
 *	   This is where nearly every event goes: nothing per event is written.
 *	 - a delivery row of its own (eventbus.delivery, state 'waiting'):
 *	   an event delayed past now (deliver_at), or a keyed event of an
 *	   ordered subscription (its key's queue is ordered by "ord").
 *	 - nothing: another topic, the filter says no, a schema rejected it
 *	   (rejected_by), it expired (counted), or a replay after seek skips it.
 *
 * and moves the position on. The background worker cuts, in a transaction
 * of its own that commits at once, for every subscription that consumers
 * poll; pollers then claim batches inside their own transactions
 * (poll.c), so that they never wait for each other. Without the worker
 * poll cuts itself, serialised by the cursor row (the degraded mode of
 * docs/consuming.md).
 *
 * Locking: the cursor row is locked FOR UPDATE SKIP LOCKED: whoever holds
 * it cuts, the others cut nothing and never wait. Batch and delivery rows
 * are inserted under RowExclusiveLock.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "batch.h"
#include "cut.h"
#include "stats.h"
#include "sub.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonpath.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

/* The cursor row of a subscription, as the cut reads and writes it. */
typedef struct Cursor
{
	EbSnap	   *win_lo;
	EbSnap	   *win_hi;			/* NULL: no window open */
	bool		has_pos;
	EbPos		pos;
	bool		has_start_time;
	TimestampTz start_time;
	bool		has_start_id;
	int64		start_id;
	int64		expired;
} Cursor;

static SPIPlanPtr LockCursorPlan = NULL;
static SPIPlanPtr ReadCursorPlan = NULL;
static SPIPlanPtr SaveCursorPlan = NULL;
static SPIPlanPtr InFlightPlan = NULL;
static SPIPlanPtr DeadPlan = NULL;
static SPIPlanPtr DropDeadPlan = NULL;

/*
 * Reads a subscription's cursor row, locked (lock: FOR UPDATE SKIP
 * LOCKED) or not; false when another transaction holds it (or it is gone).
 */
static bool
ReadCursor(int32 sub_id, Cursor *c, bool lock)
{
	Oid			types[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(sub_id)};
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;

	if (lock)
		EbKeepPlan(&LockCursorPlan,
				   "SELECT win_lo, win_hi, pos_txid, pos_id, start_time, start_id, expired "
				   "FROM eventbus.cursor WHERE sub_id OPERATOR(pg_catalog.=) $1 FOR UPDATE SKIP LOCKED",
				   1, types);
	else
		EbKeepPlan(&ReadCursorPlan,
				   "SELECT win_lo, win_hi, pos_txid, pos_id, start_time, start_id, expired "
				   "FROM eventbus.cursor WHERE sub_id OPERATOR(pg_catalog.=) $1",
				   1, types);
	if (SPI_execute_plan(lock ? LockCursorPlan : ReadCursorPlan, args, NULL, !lock, 1) != SPI_OK_SELECT)
		elog(ERROR, "eventbus: could not read the cursor");
	if (SPI_processed == 0)
		return false;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	c->win_lo = EbSnapFromDatum(SPI_getbinval(tup, desc, 1, &isnull));
	d = SPI_getbinval(tup, desc, 2, &isnull);
	c->win_hi = isnull ? NULL : EbSnapFromDatum(d);
	d = SPI_getbinval(tup, desc, 3, &isnull);
	c->has_pos = !isnull;
	if (!isnull)
	{
		c->pos.txid = U64FromFullTransactionId(DatumGetFullTransactionId(d));
		c->pos.id = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
	}
	d = SPI_getbinval(tup, desc, 5, &isnull);
	c->has_start_time = !isnull;
	c->start_time = isnull ? 0 : DatumGetTimestampTz(d);
	d = SPI_getbinval(tup, desc, 6, &isnull);
	c->has_start_id = !isnull;
	c->start_id = isnull ? 0 : DatumGetInt64(d);
	c->expired = DatumGetInt64(SPI_getbinval(tup, desc, 7, &isnull));
	return true;
}

/* Writes the cursor row back. */
static void
SaveCursor(int32 sub_id, const Cursor *c)
{
	Oid			types[8] = {INT4OID, TEXTOID, TEXTOID, XID8OID, INT8OID, TIMESTAMPTZOID, INT8OID, INT8OID};
	Datum		args[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};

	EbKeepPlan(&SaveCursorPlan,
			 "UPDATE eventbus.cursor SET win_lo = $2::pg_catalog.pg_snapshot, "
			 "win_hi = $3::pg_catalog.pg_snapshot, pos_txid = $4, pos_id = $5, "
			 "start_time = $6, start_id = $7, expired = $8 "
			 "WHERE sub_id OPERATOR(pg_catalog.=) $1",
			 8, types);
	args[0] = Int32GetDatum(sub_id);
	args[1] = DirectFunctionCall1(textin, DirectFunctionCall1(pg_snapshot_out, EbSnapToDatum(c->win_lo)));
	if (c->win_hi != NULL)
		args[2] = DirectFunctionCall1(textin, DirectFunctionCall1(pg_snapshot_out, EbSnapToDatum(c->win_hi)));
	else
		nulls[2] = 'n';
	if (c->has_pos)
	{
		args[3] = FullTransactionIdGetDatum(FullTransactionIdFromU64(c->pos.txid));
		args[4] = Int64GetDatum(c->pos.id);
	}
	else
		nulls[3] = nulls[4] = 'n';
	args[5] = TimestampTzGetDatum(c->start_time);
	nulls[5] = c->has_start_time ? ' ' : 'n';
	args[6] = Int64GetDatum(c->start_id);
	nulls[6] = c->has_start_id ? ' ' : 'n';
	args[7] = Int64GetDatum(c->expired);
	if (SPI_execute_plan(SaveCursorPlan, args, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "eventbus: could not save the cursor");
}

/*
 * The events of a subscription with a delivery row, or in a batch, for a
 * replay: dead ones (dead: true; the replay hands them out again) or the
 * others (dead: false; in flight, the replay skips them).
 */
static HTAB *
InFlight(int32 sub_id, bool dead)
{
	Oid			types[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(sub_id)};
	HASHCTL		ctl;
	HTAB	   *set;

	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(int64);
	ctl.hcxt = CurrentMemoryContext;
	set = hash_create("eventbus in flight", 256, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	EbKeepPlan(dead ? &DeadPlan : &InFlightPlan,
			 dead ?
			 "SELECT d.event_id FROM eventbus.delivery d "
			 "WHERE d.sub_id OPERATOR(pg_catalog.=) $1 AND d.state OPERATOR(pg_catalog.=) 'dead'" :
			 "SELECT d.event_id FROM eventbus.delivery d "
			 "WHERE d.sub_id OPERATOR(pg_catalog.=) $1 AND d.state OPERATOR(pg_catalog.<>) 'dead' "
			 "UNION ALL SELECT pg_catalog.unnest(b.ids) FROM eventbus.batch b "
			 "WHERE b.sub_id OPERATOR(pg_catalog.=) $1",
			 1, types);
	if (SPI_execute_plan(dead ? DeadPlan : InFlightPlan, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "eventbus: could not read the deliveries in flight");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));

		(void) hash_search(set, &id, HASH_ENTER, NULL);
	}
	return set;
}

/* A replayed event leaves the dead letters: it is handed out again. */
static void
DropDead(int32 sub_id, int64 event_id)
{
	Oid			types[2] = {INT4OID, INT8OID};
	Datum		args[2] = {Int32GetDatum(sub_id), Int64GetDatum(event_id)};

	EbKeepPlan(&DropDeadPlan,
			 "DELETE FROM eventbus.delivery WHERE sub_id OPERATOR(pg_catalog.=) $1 "
			 "AND event_id OPERATOR(pg_catalog.=) $2 AND state OPERATOR(pg_catalog.=) 'dead'",
			 2, types);
	if (SPI_execute_plan(DropDeadPlan, args, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "eventbus: could not drop a dead letter");
}

/* A batch being filled by a cut. */
typedef struct NewBatch
{
	EbBatch		b;
	int64		ids[EB_BATCH_MAX];
} NewBatch;

/* Sorts int64 ids. */
static int
CompareInt64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return (x > y) - (x < y);
}

/* Inserts the batch being filled, if it holds anything, and empties it. */
static void
FlushBatch(EbRowWriter **w, NewBatch *nb, TimestampTz now)
{
	if (nb->b.n == 0)
		return;
	if (*w == NULL)
		*w = EbRowWriterOpen(EbRelid("batch"), EB_BATCH_NATTS);
	nb->b.batch_id = nextval_internal(EbRelid("batch_id_seq"), false);
	nb->b.ids = nb->ids;
	qsort(nb->ids, nb->b.n, sizeof(int64), CompareInt64);
	nb->b.done = NULL;
	nb->b.ndone = 0;
	nb->b.cut_at = now;
	EbBatchWrite(*w, &nb->b, false);
	nb->b.n = 0;
}

static SPIPlanPtr WaitingCountPlan = NULL;
static SPIPlanPtr DropWaitingPlan = NULL;

/*
 * on_overflow 'drop_oldest': while the subscription's backlog (waiting
 * deliveries and the open events of its ready batches) is over
 * max_backlog, its oldest unread events become dead letters, reason
 * 'overflow': first from the ready batches, in cut order, then the
 * delivery rows this cut just made (keys of ordered subscriptions,
 * delays: new_ids). Batches a poller holds, and rows queued by earlier
 * cuts, are left alone. Returns how many it dead-lettered.
 */
static int64
DropOldest(EbSub *sub, EbLog *log, TimestampTz now, const int64 *new_ids, int nnew)
{
	Oid			types[4] = {INT4OID, INT8OID, TIMESTAMPTZOID, INT8ARRAYOID};
	Datum		args[4];
	EbBatchRel	br;
	IndexScanDesc scan;
	bool		isnull;
	int64		backlog;
	int64		excess;
	int64		dropped = 0;
	EbDelivery	proto = {0};

	args[0] = Int32GetDatum(sub->id);
	EbKeepPlan(&WaitingCountPlan,
			   "SELECT count(*) FROM eventbus.delivery "
			   "WHERE sub_id OPERATOR(pg_catalog.=) $1 AND state OPERATOR(pg_catalog.=) 'waiting'",
			   1, types);
	if (SPI_execute_plan(WaitingCountPlan, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "eventbus: could not count waiting deliveries");
	backlog = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	EbBatchOpen(&br);
	scan = EbBatchScan(&br, sub->id);
	while (index_getnext_slot(scan, ForwardScanDirection, br.slot))
		if (!DatumGetBool(slot_getattr(br.slot, EB_BATCH_LEASED, &isnull)))
			backlog += ArrayGetNItems(1, ARR_DIMS(DatumGetArrayTypeP(slot_getattr(br.slot, EB_BATCH_IDS, &isnull)))) -
				DatumGetInt32(slot_getattr(br.slot, EB_BATCH_NDONE, &isnull));
	index_endscan(scan);
	excess = backlog - sub->max_backlog;

	proto.sub_id = sub->id;
	proto.state = "dead";
	proto.available_at = now;
	proto.last_error = "over max_backlog";
	proto.reason = "overflow";
	proto.dead_at = now;
	scan = EbBatchScan(&br, sub->id);
	while (excess > 0 && index_getnext_slot(scan, ForwardScanDirection, br.slot))
	{
		EbBatch		b;
		int			nopen;
		int64	   *open;
		int			take;

		if (DatumGetBool(slot_getattr(br.slot, EB_BATCH_LEASED, &isnull)) ||
			!EbBatchLock(&br, &br.slot->tts_tid, false))
			continue;
		EbBatchRead(br.locked, &b);
		if (b.leased || b.attempt > 0)
			continue;
		open = EbBatchOpenIds(&b, &nopen);
		take = (int) Min((int64) nopen, excess);
		EbBatchSpill(log, &b, open, take, &proto);
		for (int i = 0; i < take; i++)
			EbBatchSetDone(&b, EbBatchFind(&b, open[i]));
		EbStatsCountSub(sub->id, EB_SUB_READ, take);	/* never claimed: read now */
		if (b.ndone >= b.n)
			EbRowDelete(br.writer, &b.tid);
		else
			EbBatchWrite(br.writer, &b, true);
		excess -= take;
		dropped += take;
	}
	index_endscan(scan);
	EbBatchClose(&br);

	if (excess > 0 && nnew > 0)
	{
		Datum	   *d = palloc(sizeof(Datum) * nnew);

		for (int i = 0; i < nnew; i++)
			d[i] = Int64GetDatum(new_ids[i]);
		EbKeepPlan(&DropWaitingPlan,
				   "UPDATE eventbus.delivery d SET state = 'dead', reason = 'overflow', dead_at = $3, "
				   "last_error = 'over max_backlog' "
				   "WHERE d.sub_id OPERATOR(pg_catalog.=) $1 AND d.event_id IN ("
				   "  SELECT w.event_id FROM eventbus.delivery w "
				   "   WHERE w.sub_id OPERATOR(pg_catalog.=) $1 AND w.state OPERATOR(pg_catalog.=) 'waiting' "
				   "     AND w.event_id OPERATOR(pg_catalog.=) ANY ($4) "
				   "   ORDER BY w.event_id LIMIT $2 FOR UPDATE SKIP LOCKED)",
				   4, types);
		args[1] = Int64GetDatum(excess);
		args[2] = TimestampTzGetDatum(now);
		args[3] = PointerGetDatum(construct_array(d, nnew, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		if (SPI_execute_plan(DropWaitingPlan, args, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "eventbus: could not dead-letter the overflow");
		dropped += SPI_processed;
	}
	EbStatsCountSub(sub->id, EB_SUB_DEAD, dropped);
	return dropped;
}

/*
 * Cuts what the subscription has not read yet, walking at most max_events
 * rows of the log, into batches of at most batch_size events (and
 * delivery rows for the events that need their own). Returns how many
 * events it took for the subscription, or -1 when another transaction
 * holds the cursor; *caught_up tells whether it reached the end of what
 * was committed. Runs inside SPI (the caller connected).
 */
int64
EbCut(EbSub *sub, EbLog *log, int batch_size, int64 max_events, bool *caught_up)
{
	Cursor		c;
	EbSnap	   *hi;
	EbWindowScan *ws;
	TupleTableSlot *slot;
	EbPos		pos;
	EbRowWriter *batches = NULL;
	EbRowWriter *deliveries = NULL;
	NewBatch   *nb;
	HTAB	   *inflight = NULL;
	HTAB	   *dead = NULL;
	TimestampTz now = GetCurrentTimestamp();
	bool		replay;
	bool		ended = false;
	int64	   *new_rows = NULL;	/* delivery rows made, for drop_oldest */
	int			nnew_rows = 0;
	int			maxnew_rows = 0;
	int64		read = 0;		/* left the log for good: rows, expired */
	int64		batched = 0;
	int64		taken = 0;
	int64		expired = 0;

	*caught_up = false;
	if (!ReadCursor(sub->id, &c, true))
		return -1;
	batch_size = Max(1, Min(batch_size, EB_BATCH_MAX));
	if (c.win_hi != NULL)
		hi = c.win_hi;
	else
	{
		hi = EbSnapCurrent();
		/* Snapshots only move forward: an older one (REPEATABLE READ) reads nothing. */
		if (!EbSnapBefore(c.win_lo, hi))
			return 0;
		/* Nothing committed since the window's start: nothing to write either. */
		if (hi->xmax == c.win_lo->xmax && hi->nxip == c.win_lo->nxip &&
			memcmp(hi->xip, c.win_lo->xip, sizeof(uint64) * hi->nxip) == 0)
		{
			*caught_up = true;
			return 0;
		}
		c.has_pos = false;
	}
	replay = c.has_start_time || c.has_start_id;
	if (replay)
	{
		inflight = InFlight(sub->id, false);
		dead = InFlight(sub->id, true);
	}

	nb = palloc0(sizeof(NewBatch));
	nb->b.sub_id = sub->id;
	ws = EbWindowBegin(log, c.win_lo, hi, c.has_pos ? &c.pos : NULL);
	for (;;)
	{
		bool		isnull;
		int32		topic_id;
		int64		id;
		Datum		d;
		TimestampTz deliver_at = 0;

		if (taken >= max_events)
			break;
		slot = EbWindowNext(ws, &pos);
		if (slot == NULL)
		{
			ended = true;
			break;
		}
		c.has_pos = true;
		c.pos = pos;
		taken++;
		CHECK_FOR_INTERRUPTS();

		topic_id = DatumGetInt32(slot_getattr(slot, EB_LOG_TOPIC_ID, &isnull));
		if (!EbSubMatchesTopic(sub, topic_id))
			continue;
		(void) slot_getattr(slot, EB_LOG_REJECTED_BY, &isnull);
		if (!isnull)
			continue;			/* dead-lettered by a schema at publish */
		id = pos.id;
		if (c.has_start_time &&
			DatumGetTimestampTz(slot_getattr(slot, EB_LOG_PUBLISHED_AT, &isnull)) < c.start_time)
			continue;
		if (c.has_start_id && id < c.start_id)
			continue;
		if (sub->has_filter && !EbSubPassesFilter(sub, slot_getattr(slot, EB_LOG_PAYLOAD, &isnull)))
			continue;
		d = slot_getattr(slot, EB_LOG_EXPIRES_AT, &isnull);
		if (!isnull && DatumGetTimestampTz(d) <= now)
		{
			expired++;
			read++;
			continue;
		}
		if (replay)
		{
			if (hash_search(inflight, &id, HASH_FIND, NULL) != NULL)
				continue;		/* leased or waiting: its own retry hands it out */
			if (hash_search(dead, &id, HASH_FIND, NULL) != NULL)
				DropDead(sub->id, id);
		}
		d = slot_getattr(slot, EB_LOG_DELIVER_AT, &isnull);
		if (!isnull && DatumGetTimestampTz(d) > now)
			deliver_at = DatumGetTimestampTz(d);
		(void) slot_getattr(slot, EB_LOG_KEY, &isnull);
		if (deliver_at != 0 || (sub->ordered && !isnull))
		{
			EbDelivery dl = {0};

			/* Delayed, or keyed in an ordered subscription: a row of its own. */
			read++;
			dl.sub_id = sub->id;
			dl.event_id = id;
			dl.txid = pos.txid;
			dl.state = "waiting";
			dl.available_at = deliver_at != 0 ? deliver_at : now;
			if (sub->ordered && !isnull)
			{
				dl.key = DatumGetTextPCopy(slot_getattr(slot, EB_LOG_KEY, &isnull));
				dl.has_ord = true;
				dl.ord = EbNextOrd();
			}
			if (deliveries == NULL)
				deliveries = EbRowWriterOpen(EbRelid("delivery"), EB_DLV_NATTS);
			EbDeliveryInsert(deliveries, &dl);
			if (sub->drop_oldest)
			{
				if (nnew_rows == maxnew_rows)
				{
					maxnew_rows = Max(16, maxnew_rows * 2);
					new_rows = new_rows ? repalloc(new_rows, sizeof(int64) * maxnew_rows) :
						palloc(sizeof(int64) * maxnew_rows);
				}
				new_rows[nnew_rows++] = id;
			}
			continue;
		}
		/* The walk is in (txid, id) order: the first and the last are the bounds. */
		if (nb->b.n == 0)
			nb->b.first = pos;
		nb->b.last = pos;
		nb->ids[nb->b.n++] = id;
		batched++;				/* "read" when first claimed (consume.c) */
		if (nb->b.n >= batch_size)
			FlushBatch(&batches, nb, now);
	}
	EbWindowEnd(ws);
	FlushBatch(&batches, nb, now);
	if (batches != NULL)
		EbRowWriterClose(batches);
	if (deliveries != NULL)
		EbRowWriterClose(deliveries);

	if (ended)
	{
		/* The window is read: the next one starts at its end. */
		c.win_lo = hi;
		c.win_hi = NULL;
		c.has_pos = false;
		/* A replay (seek) is over once a window started after it ends. */
		c.has_start_id = false;
		if (c.has_start_time && c.start_time <= now)
			c.has_start_time = false;
	}
	else
		c.win_hi = hi;
	if (sub->max_backlog > 0 && sub->drop_oldest)
	{
		CommandCounterIncrement();	/* the batches and rows just written */
		PushActiveSnapshot(GetTransactionSnapshot());
		UpdateActiveSnapshotCommandId();
		DropOldest(sub, log, now, new_rows, nnew_rows);
		PopActiveSnapshot();
	}
	*caught_up = ended;
	c.expired += expired;
	SaveCursor(sub->id, &c);
	EbStatsCountSub(sub->id, EB_SUB_READ, read);
	EbStatsCountSub(sub->id, EB_SUB_EXPIRED, expired);
	return read + batched;
}

/*
 * Whether an event of the log is one the subscription reads (its topic,
 * not rejected by a schema, within a replay's start, its filter): the
 * tests of a cut, for _unread.
 */
static bool
Wanted(EbSub *sub, const Cursor *c, TupleTableSlot *slot, int64 id)
{
	bool		isnull;

	if (!EbSubMatchesTopic(sub, DatumGetInt32(slot_getattr(slot, EB_LOG_TOPIC_ID, &isnull))))
		return false;
	(void) slot_getattr(slot, EB_LOG_REJECTED_BY, &isnull);
	if (!isnull)
		return false;
	if (c->has_start_time &&
		DatumGetTimestampTz(slot_getattr(slot, EB_LOG_PUBLISHED_AT, &isnull)) < c->start_time)
		return false;
	if (c->has_start_id && id < c->start_id)
		return false;
	return !sub->has_filter || EbSubPassesFilter(sub, slot_getattr(slot, EB_LOG_PAYLOAD, &isnull));
}

PG_FUNCTION_INFO_V1(eventbus_unread);

/*
 * SQL eventbus._unread(sub_id, lim, chunk, restored): the events of the log the
 * subscription has not cut into batches yet, in commit order, as a cut
 * would take them: until lim of them not expired (NULL: all), from one
 * chunk table only when chunk is given. For the backlog counts, the stats
 * views, the chunks a subscription pins and the adoption of restored data;
 * it reads the cursor without locking it.
 */
Datum
eventbus_unread(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int32		sub_id;
	int64		lim = PG_ARGISNULL(1) ? PG_INT64_MAX : PG_GETARG_INT64(1);
	EbSub	   *sub;
	Cursor		c;
	EbLog	   *log;
	EbSnap	   *now_snap;
	TimestampTz now = GetCurrentTimestamp();
	int64		live = 0;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	if (PG_ARGISNULL(0) || lim <= 0)
		return (Datum) 0;
	sub_id = PG_GETARG_INT32(0);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	sub = EbSubById(sub_id);
	if (sub == NULL || !ReadCursor(sub_id, &c, false))
	{
		SPI_finish();
		return (Datum) 0;
	}
	log = PG_ARGISNULL(2) ? EbLogOpen() : EbLogOpenChunk(PG_GETARG_OID(2));
	if (!PG_ARGISNULL(3) && PG_GETARG_BOOL(3))
	{
		/* Restored data: every stored event counts as committed. */
		now_snap = palloc0(sizeof(EbSnap));
		now_snap->xmin = now_snap->xmax = PG_UINT64_MAX - 1;
	}
	else
		now_snap = EbSnapCurrent();
	/* The rest of an open window, then the window up to now. */
	for (int w = 0; w < 2 && live < lim; w++)
	{
		EbSnap	   *lo = w == 0 ? c.win_lo : (c.win_hi ? c.win_hi : c.win_lo);
		EbSnap	   *hi = w == 0 ? c.win_hi : now_snap;
		EbWindowScan *ws;
		TupleTableSlot *slot;
		EbPos		pos;

		if (hi == NULL || (w == 1 && !EbSnapBefore(lo, hi)))
			continue;
		ws = EbWindowBegin(log, lo, hi, w == 0 && c.has_pos ? &c.pos : NULL);
		while (live < lim && (slot = EbWindowNext(ws, &pos)) != NULL)
		{
			Datum		values[6];
			bool		nulls[6] = {0};

			CHECK_FOR_INTERRUPTS();
			if (!Wanted(sub, &c, slot, pos.id))
				continue;
			values[0] = Int64GetDatum(pos.id);
			values[1] = FullTransactionIdGetDatum(FullTransactionIdFromU64(pos.txid));
			values[2] = slot_getattr(slot, EB_LOG_PUBLISHED_AT, &nulls[2]);
			values[3] = slot_getattr(slot, EB_LOG_EXPIRES_AT, &nulls[3]);
			values[4] = slot_getattr(slot, EB_LOG_KEY, &nulls[4]);
			values[5] = slot_getattr(slot, EB_LOG_DELIVER_AT, &nulls[5]);
			if (nulls[3] || DatumGetTimestampTz(values[3]) > now)
				live++;
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
		EbWindowEnd(ws);
	}
	EbLogClose(log);
	SPI_finish();
	return (Datum) 0;
}
