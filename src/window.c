/*-------------------------------------------------------------------------
 *
 * window.c
 *	  Reading the event log in commit order: the events committed between
 *	  two snapshots, read once, in C, without the planner.
 *
 * Why no gaps: event ids are handed out when publish runs, but
 * transactions commit in another order, so no position in terms of ids
 * can say "everything before this was read". As in PgQ, the log is cut
 * with snapshots instead. A snapshot (pg_current_snapshot()) is xmin, xmax
 * and the list xip of transactions in progress; a transaction is visible
 * in it when it committed before it was taken. The events committed after
 * snapshot lo and by snapshot hi (a "window") are those whose top-level
 * publishing xid is
 *
 *	   not visible in lo:  xid >= xmax(lo), or xid in xip(lo)
 *	   and visible in hi:  xid < xmax(hi), and xid not in xip(hi)
 *
 * (xids below xmin(lo), and between xmin(lo) and xmax(lo) but not in
 * xip(lo), committed or aborted before lo). Successive windows (s0, s1],
 * (s1, s2], ... therefore hold every committed event exactly once,
 * however late its transaction commits: a transaction running at s1 is in
 * xip(s1) and is picked up by the first window whose end sees it, and one
 * that is still running holds back nothing that committed after it
 * started. Rolled-back transactions are visible in no snapshot.
 *
 * Both halves are ranges of the (txid, id) index of each chunk: one range
 * per xid of xip(lo) (all below xmax(lo)), then [xmax(lo), xmax(hi)). A
 * window is walked in (txid, id) order, merging the chunks, so a reader
 * can stop anywhere and resume after the last (txid, id) it took
 * (EbWindowBegin's "after"). Rows of an xid that is in progress in hi are
 * skipped without a heap fetch (the xid is in the index tuple).
 *
 * Every reader of the log goes through here: cutting batches (batch.c),
 * fetching the events of a batch or a delivery (consume.c), the tick's
 * topics and the backlog counts.
 *
 * Locking: the chunk tables and their indexes are opened with
 * AccessShareLock for the caller's transaction; rows are read with the
 * active snapshot when a walk begins, which must see every transaction
 * that hi sees (any snapshot taken after hi).
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "window.h"

#include "access/genam.h"
#include "access/itup.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/xact.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

/* The on-disk layout of a pg_snapshot value (utils/adt/xid8funcs.c). */
typedef struct PgSnapshotData
{
	int32		vl_len_;
	uint32		nxip;
	FullTransactionId xmin;
	FullTransactionId xmax;
	FullTransactionId xip[FLEXIBLE_ARRAY_MEMBER];
} PgSnapshotData;

/* ---- snapshots ---- */

/* Takes a pg_snapshot Datum apart (palloc'd copy). */
EbSnap *
EbSnapFromDatum(Datum d)
{
	PgSnapshotData *s = (PgSnapshotData *) PG_DETOAST_DATUM(d);
	EbSnap	   *snap = palloc(sizeof(EbSnap));

	snap->xmin = U64FromFullTransactionId(s->xmin);
	snap->xmax = U64FromFullTransactionId(s->xmax);
	snap->nxip = s->nxip;
	snap->xip = palloc(sizeof(uint64) * Max(s->nxip, 1));
	for (uint32 i = 0; i < s->nxip; i++)
		snap->xip[i] = U64FromFullTransactionId(s->xip[i]);
	return snap;
}

/* Makes a pg_snapshot Datum of an EbSnap. */
Datum
EbSnapToDatum(const EbSnap *snap)
{
	Size		size = offsetof(PgSnapshotData, xip) + sizeof(FullTransactionId) * snap->nxip;
	PgSnapshotData *s = palloc(size);

	SET_VARSIZE(s, size);
	s->nxip = snap->nxip;
	s->xmin = FullTransactionIdFromU64(snap->xmin);
	s->xmax = FullTransactionIdFromU64(snap->xmax);
	for (int i = 0; i < snap->nxip; i++)
		s->xip[i] = FullTransactionIdFromU64(snap->xip[i]);
	return PointerGetDatum(s);
}

/*
 * The current snapshot (pg_current_snapshot()), with this transaction's
 * own xid, if it has one, counted as still in progress: a reader must
 * neither receive nor step over the events its own transaction publishes
 * (they belong to the window in which its commit becomes visible).
 */
EbSnap *
EbSnapCurrent(void)
{
	EbSnap	   *snap = EbSnapFromDatum(DirectFunctionCall1(pg_current_snapshot, (Datum) 0));
	FullTransactionId own = GetTopFullTransactionIdIfAny();
	uint64		x;
	int			i;

	if (!FullTransactionIdIsValid(own))
		return snap;
	x = U64FromFullTransactionId(own);
	if (x >= snap->xmax)
		return snap;
	for (i = 0; i < snap->nxip && snap->xip[i] < x; i++)
		;
	if (i < snap->nxip && snap->xip[i] == x)
		return snap;
	snap->xip = repalloc(snap->xip, sizeof(uint64) * (snap->nxip + 1));
	memmove(&snap->xip[i + 1], &snap->xip[i], sizeof(uint64) * (snap->nxip - i));
	snap->xip[i] = x;
	snap->nxip++;
	snap->xmin = Min(snap->xmin, x);
	return snap;
}

/* Whether transaction xid had committed (or aborted) when snap was taken. */
bool
EbSnapVisible(const EbSnap *snap, uint64 xid)
{
	int			lo = 0;
	int			hi = snap->nxip - 1;

	if (xid < snap->xmin)
		return true;
	if (xid >= snap->xmax)
		return false;
	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;

		if (snap->xip[mid] == xid)
			return false;
		if (snap->xip[mid] < xid)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return true;
}

/*
 * Whether "newer" sees everything "older" saw: positions only move
 * forward, and a snapshot taken earlier (REPEATABLE READ) reads nothing.
 */
bool
EbSnapBefore(const EbSnap *older, const EbSnap *newer)
{
	if (newer->xmax < older->xmax)
		return false;
	for (int i = 0; i < newer->nxip; i++)
		if (EbSnapVisible(older, newer->xip[i]))
			return false;
	return true;
}

/* ---- the chunks ---- */

struct EbLog
{
	int			nchunks;
	Relation	heap[EB_NUM_CHUNKS];
	Relation	index[EB_NUM_CHUNKS];
	TupleTableSlot *slot[EB_NUM_CHUNKS];
};

/* Opens every chunk and its (txid, id) index for reading. */
EbLog *
EbLogOpen(void)
{
	EbLog	   *log = palloc0(sizeof(EbLog));

	for (int i = 0; i < EB_NUM_CHUNKS; i++)
	{
		char		name[NAMEDATALEN];

		snprintf(name, sizeof(name), "event_log_%d", i);
		log->heap[i] = EbTableOpen(EbRelid(name), AccessShareLock);
		snprintf(name, sizeof(name), "event_log_%d_txid_idx", i);
		log->index[i] = index_open(EbRelid(name), AccessShareLock);
		log->slot[i] = table_slot_create(log->heap[i], NULL);
	}
	log->nchunks = EB_NUM_CHUNKS;
	return log;
}

/* Opens one chunk (a table inheriting from eventbus.event_log) and its index. */
EbLog *
EbLogOpenChunk(Oid relid)
{
	EbLog	   *log = palloc0(sizeof(EbLog));
	List	   *indexes;

	log->heap[0] = EbTableOpen(relid, AccessShareLock);
	indexes = RelationGetIndexList(log->heap[0]);
	if (indexes == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("\"%s\" is not a chunk of the eventbus log", RelationGetRelationName(log->heap[0])),
				 errhint("Pass one of eventbus.event_log_0, _1, _2.")));
	log->index[0] = index_open(linitial_oid(indexes), AccessShareLock);
	log->slot[0] = table_slot_create(log->heap[0], NULL);
	log->nchunks = 1;
	return log;
}

/* Closes what EbLogOpen opened (the locks stay until the transaction ends). */
void
EbLogClose(EbLog *log)
{
	for (int i = 0; i < log->nchunks; i++)
	{
		ExecDropSingleTupleTableSlot(log->slot[i]);
		index_close(log->index[i], NoLock);
		table_close(log->heap[i], NoLock);
	}
	pfree(log);
}

/* Sets up the scan keys of a (txid, id) range: txid in [lo, hi), id > after_id. */
static int
RangeKeys(ScanKey keys, uint64 lo, uint64 hi, bool has_after, int64 after_id)
{
	int			n = 0;

	if (hi == lo + 1)
		ScanKeyInit(&keys[n++], 1, BTEqualStrategyNumber, F_XID8EQ,
					FullTransactionIdGetDatum(FullTransactionIdFromU64(lo)));
	else
	{
		ScanKeyInit(&keys[n++], 1, BTGreaterEqualStrategyNumber, F_XID8GE,
					FullTransactionIdGetDatum(FullTransactionIdFromU64(lo)));
		if (hi != PG_UINT64_MAX)
			ScanKeyInit(&keys[n++], 1, BTLessStrategyNumber, F_XID8LT,
						FullTransactionIdGetDatum(FullTransactionIdFromU64(hi)));
	}
	if (has_after)
		ScanKeyInit(&keys[n++], 2, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(after_id));
	return n;
}

/* The (txid, id) of the index tuple an index scan stands on. */
static void
IndexPos(IndexScanDesc scan, EbPos *pos)
{
	bool		isnull;
	TupleDesc	desc = RelationGetDescr(scan->indexRelation);

	pos->txid = U64FromFullTransactionId(DatumGetFullTransactionId(index_getattr(scan->xs_itup, 1, desc, &isnull)));
	pos->id = DatumGetInt64(index_getattr(scan->xs_itup, 2, desc, &isnull));
}

/* Compares two places in the log. */
static inline int
ComparePos(const EbPos *a, const EbPos *b)
{
	if (a->txid != b->txid)
		return a->txid < b->txid ? -1 : 1;
	if (a->id != b->id)
		return a->id < b->id ? -1 : 1;
	return 0;
}

/*
 * One range of the (txid, id) order, read from every chunk at once and
 * merged: each chunk's scan stands on its next index tuple.
 */
typedef struct MergedRange
{
	EbLog	   *log;
	IndexScanDesc scan[EB_NUM_CHUNKS];
	bool		has[EB_NUM_CHUNKS]; /* scan stands on a tuple */
	EbPos		head[EB_NUM_CHUNKS];
} MergedRange;

/* Moves one chunk's scan to its next index tuple accepted by "want". */
static void
Advance(MergedRange *m, int c, const EbSnap *hi)
{
	while (index_getnext_tid(m->scan[c], ForwardScanDirection) != NULL)
	{
		IndexPos(m->scan[c], &m->head[c]);
		/* In progress at hi (or later): not in this window, and no fetch. */
		if (hi != NULL && !EbSnapVisible(hi, m->head[c].txid))
			continue;
		m->has[c] = true;
		return;
	}
	m->has[c] = false;
}

/* Starts a merged walk of one range on every chunk. */
static void
MergedBegin(MergedRange *m, EbLog *log, ScanKey keys, int nkeys, const EbSnap *hi)
{
	m->log = log;
	for (int c = 0; c < log->nchunks; c++)
	{
		m->scan[c] = index_beginscan(log->heap[c], log->index[c], GetActiveSnapshot(), nkeys, 0);
		m->scan[c]->xs_want_itup = true;
		index_rescan(m->scan[c], keys, nkeys, NULL, 0);
		Advance(m, c, hi);
	}
}

/*
 * Returns the slot of the next visible row of the merged range, in
 * (txid, id) order, and its place; NULL at the end.
 */
static TupleTableSlot *
MergedNext(MergedRange *m, const EbSnap *hi, EbPos *pos)
{
	for (;;)
	{
		int			best = -1;

		for (int c = 0; c < m->log->nchunks; c++)
			if (m->has[c] && (best < 0 || ComparePos(&m->head[c], &m->head[best]) < 0))
				best = c;
		if (best < 0)
			return NULL;
		*pos = m->head[best];
		/* Invisible to our snapshot (rolled back, or not ours to see): skip. */
		if (index_fetch_heap(m->scan[best], m->log->slot[best]))
		{
			TupleTableSlot *slot = m->log->slot[best];

			Advance(m, best, hi);
			return slot;
		}
		Advance(m, best, hi);
	}
}

/* Ends a merged walk. */
static void
MergedEnd(MergedRange *m)
{
	for (int c = 0; c < m->log->nchunks; c++)
		if (m->scan[c] != NULL)
		{
			index_endscan(m->scan[c]);
			m->scan[c] = NULL;
		}
}

/* Fetches one event by its place in the log; NULL when no visible row is there. */
TupleTableSlot *
EbLogFetch(EbLog *log, uint64 txid, int64 id)
{
	ScanKeyData keys[2];
	TupleTableSlot *found = NULL;

	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_XID8EQ,
				FullTransactionIdGetDatum(FullTransactionIdFromU64(txid)));
	ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(id));
	for (int c = 0; c < log->nchunks && found == NULL; c++)
	{
		IndexScanDesc scan = index_beginscan(log->heap[c], log->index[c], GetActiveSnapshot(), 2, 0);

		index_rescan(scan, keys, 2, NULL, 0);
		if (index_getnext_slot(scan, ForwardScanDirection, log->slot[c]))
			found = log->slot[c];
		index_endscan(scan);
	}
	return found;
}

/* ---- windows ---- */

/* One range of a window: txids in [lo, hi). */
typedef struct WindowPart
{
	uint64		lo;
	uint64		hi;
} WindowPart;

struct EbWindowScan
{
	EbLog	   *log;
	EbSnap		hi;
	WindowPart *parts;
	int			nparts;
	int			part;			/* the range being walked */
	bool		open;			/* merged walk of parts[part] started */
	MergedRange merged;
	EbPos		after;			/* resume after this place */
	bool		has_after;
};

/*
 * Starts a walk over the events committed after lo and by hi, in (txid,
 * id) order, after the place "after" (NULL: from the start).
 */
EbWindowScan *
EbWindowBegin(EbLog *log, const EbSnap *lo, const EbSnap *hi, const EbPos *after)
{
	EbWindowScan *ws = palloc0(sizeof(EbWindowScan));

	ws->log = log;
	ws->hi = *hi;
	ws->parts = palloc(sizeof(WindowPart) * (lo->nxip + 1));
	/* In progress at lo: one range per xid, each below xmax(lo). */
	for (int i = 0; i < lo->nxip; i++)
		if (lo->xip[i] < hi->xmax && (after == NULL || lo->xip[i] >= after->txid))
		{
			ws->parts[ws->nparts].lo = lo->xip[i];
			ws->parts[ws->nparts++].hi = lo->xip[i] + 1;
		}
	/* Started after lo. */
	if (lo->xmax < hi->xmax && (after == NULL || after->txid < hi->xmax))
	{
		ws->parts[ws->nparts].lo = after == NULL ? lo->xmax : Max(lo->xmax, after->txid);
		ws->parts[ws->nparts++].hi = hi->xmax;
	}
	if (after != NULL)
	{
		ws->after = *after;
		ws->has_after = true;
	}
	return ws;
}

/*
 * Returns the next event of the window (its slot, valid until the next
 * call) and its place; NULL at the end of the window.
 */
TupleTableSlot *
EbWindowNext(EbWindowScan *ws, EbPos *pos)
{
	while (ws->part < ws->nparts)
	{
		WindowPart *p = &ws->parts[ws->part];
		TupleTableSlot *slot;

		if (!ws->open)
		{
			ScanKeyData keys[3];
			int			nkeys;

			/*
			 * Resuming inside a range: the rest of the xid of "after" (ids
			 * above it), then the xids above it, as two ranges.
			 */
			if (ws->has_after && ws->after.txid >= p->lo && ws->after.txid < p->hi)
			{
				nkeys = RangeKeys(keys, ws->after.txid, ws->after.txid + 1, true, ws->after.id);
				if (ws->after.txid + 1 < p->hi)
				{
					/* Split: this part continues after the xid of "after". */
					ws->parts = repalloc(ws->parts, sizeof(WindowPart) * (ws->nparts + 1));
					p = &ws->parts[ws->part];
					memmove(&ws->parts[ws->part + 2], &ws->parts[ws->part + 1],
							sizeof(WindowPart) * (ws->nparts - ws->part - 1));
					ws->parts[ws->part + 1].lo = ws->after.txid + 1;
					ws->parts[ws->part + 1].hi = p->hi;
					ws->nparts++;
					p->lo = ws->after.txid;
					p->hi = ws->after.txid + 1;
				}
				ws->has_after = false;
			}
			else
				nkeys = RangeKeys(keys, p->lo, p->hi, false, 0);
			MergedBegin(&ws->merged, ws->log, keys, nkeys, &ws->hi);
			ws->open = true;
		}
		slot = MergedNext(&ws->merged, &ws->hi, pos);
		if (slot != NULL)
			return slot;
		MergedEnd(&ws->merged);
		ws->open = false;
		ws->part++;
	}
	return NULL;
}

/* Ends a window walk. */
void
EbWindowEnd(EbWindowScan *ws)
{
	if (ws->open)
		MergedEnd(&ws->merged);
	pfree(ws->parts);
	pfree(ws);
}

/* ---- the events of a batch ---- */

struct EbRangeScan
{
	EbLog	   *log;
	MergedRange merged;
	bool		open;
	int			part;			/* 0: first txid, 1: txids between, 2: last txid */
	EbPos		first;
	EbPos		last;
	const int64 *ids;
	int			nids;
};

/*
 * Starts a walk over the events between places first and last (both
 * included) of the log whose id is one of "ids" (ascending): the events
 * of a batch (batch.c), in (txid, id) order. Other rows of the range are
 * passed over on their index tuple, without a heap fetch.
 */
EbRangeScan *
EbRangeBegin(EbLog *log, const EbPos *first, const EbPos *last, const int64 *ids, int nids)
{
	EbRangeScan *rs = palloc0(sizeof(EbRangeScan));

	rs->log = log;
	rs->first = *first;
	rs->last = *last;
	rs->ids = ids;
	rs->nids = nids;
	return rs;
}

/* Opens the merged walk of the next part of a batch's range; false when none is left. */
static bool
RangeNextPart(EbRangeScan *rs)
{
	ScanKeyData keys[3];
	int			n = 0;
	FullTransactionId ft = FullTransactionIdFromU64(rs->first.txid);
	FullTransactionId lt = FullTransactionIdFromU64(rs->last.txid);

	for (; rs->part < 3; rs->part++)
	{
		n = 0;
		if (rs->part == 0)
		{
			/* The first txid, from first.id (to last.id when it is the only one). */
			ScanKeyInit(&keys[n++], 1, BTEqualStrategyNumber, F_XID8EQ, FullTransactionIdGetDatum(ft));
			ScanKeyInit(&keys[n++], 2, BTGreaterEqualStrategyNumber, F_INT8GE, Int64GetDatum(rs->first.id));
			if (rs->first.txid == rs->last.txid)
				ScanKeyInit(&keys[n++], 2, BTLessEqualStrategyNumber, F_INT8LE, Int64GetDatum(rs->last.id));
		}
		else if (rs->part == 1)
		{
			if (rs->last.txid <= rs->first.txid + 1)
				continue;
			ScanKeyInit(&keys[n++], 1, BTGreaterStrategyNumber, F_XID8GT, FullTransactionIdGetDatum(ft));
			ScanKeyInit(&keys[n++], 1, BTLessStrategyNumber, F_XID8LT, FullTransactionIdGetDatum(lt));
		}
		else
		{
			if (rs->last.txid == rs->first.txid)
				continue;
			ScanKeyInit(&keys[n++], 1, BTEqualStrategyNumber, F_XID8EQ, FullTransactionIdGetDatum(lt));
			ScanKeyInit(&keys[n++], 2, BTLessEqualStrategyNumber, F_INT8LE, Int64GetDatum(rs->last.id));
		}
		MergedBegin(&rs->merged, rs->log, keys, n, NULL);
		rs->open = true;
		rs->part++;
		return true;
	}
	return false;
}

/* Finds an id in the sorted ids; -1 when absent. */
static int
FindId(const int64 *ids, int n, int64 id)
{
	int			lo = 0;
	int			hi = n - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;

		if (ids[mid] == id)
			return mid;
		if (ids[mid] < id)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

/*
 * Returns the next event of the set (its slot) and, in *offset, the
 * position of its id in the sorted ids; NULL at the end.
 */
TupleTableSlot *
EbRangeNext(EbRangeScan *rs, int *offset)
{
	for (;;)
	{
		MergedRange *m = &rs->merged;
		int			best = -1;
		int			off;

		if (!rs->open && !RangeNextPart(rs))
			return NULL;
		for (int c = 0; c < m->log->nchunks; c++)
			if (m->has[c] && (best < 0 || ComparePos(&m->head[c], &m->head[best]) < 0))
				best = c;
		if (best < 0)
		{
			MergedEnd(m);
			rs->open = false;
			continue;
		}
		off = FindId(rs->ids, rs->nids, m->head[best].id);
		if (off >= 0 && index_fetch_heap(m->scan[best], m->log->slot[best]))
		{
			Advance(m, best, NULL);
			*offset = off;
			return m->log->slot[best];
		}
		Advance(m, best, NULL);
	}
}

/* Ends a batch walk. */
void
EbRangeEnd(EbRangeScan *rs)
{
	if (rs->open)
		MergedEnd(&rs->merged);
	pfree(rs);
}
