/*-------------------------------------------------------------------------
 *
 * consume.c
 *	  The consuming hot path in C: acking a batch of leased events.
 *
 * eventbus.ack (sql/40_consume.sql) resolves the subscription and calls
 * eventbus._ack_ids, which finds the subscription's leased deliveries of
 * the given events with one scan of the delivery primary key and deletes
 * each through the table AM. The ids of one poll are usually close
 * together: when they span at most EB_ACK_RANGE_FACTOR times their number,
 * one range scan reads the leaf pages once and keeps the ids it was given
 * (a binary search in the sorted ids); otherwise an array search key has
 * the btree descend once per id. In SQL the same delete was planned as a
 * scan of all the subscription's deliveries with the array as a filter,
 * linear in the array per row.
 *
 * A delivery changed by a concurrent transaction after this statement's
 * snapshot is handled as a DELETE under READ COMMITTED handles it: its
 * newest version is locked and deleted if it is still leased (a late ack
 * finishes an event another poller leased meanwhile, as documented in
 * docs/consuming.md); gone, it is skipped. Under REPEATABLE READ or
 * SERIALIZABLE that is a serialization failure, as for a DELETE.
 *
 * Locking: eventbus.delivery and its primary key under RowExclusiveLock for
 * the call; each delivery acked is tuple-locked (LockTupleExclusive) and
 * deleted, waiting for a concurrent holder as a DELETE would.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "stats.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

/* eventbus.delivery.event_id, the primary key's second column. */
#define EB_DELIVERY_EVENT_ID	2

/* A range scan when the ids span at most this many times their number. */
#define EB_ACK_RANGE_FACTOR	4

/* Columns of eventbus.delivery the ack reads (checked by name once). */
typedef struct DeliveryColumns
{
	AttrNumber	state;
	AttrNumber	leased_at;
} DeliveryColumns;

/* Looks a column of eventbus.delivery up, or raises 55000. */
static AttrNumber
DeliveryColumn(Oid relid, const char *name)
{
	AttrNumber	attno = get_attnum(relid, name);

	if (attno == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("eventbus.delivery has no column \"%s\"", name),
				 errhint("Reinstall the extension: DROP EXTENSION eventbus; CREATE EXTENSION eventbus.")));
	return attno;
}

/* Sorts int64 ids. */
static int
CompareIds(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return (x > y) - (x < y);
}

/* The non-NULL ids of the array, sorted and without duplicates. */
static int64 *
SortedIds(ArrayType *arr, int *count)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			m = 0;
	int64	   *ids;

	deconstruct_array(arr, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &elems, &nulls, &n);
	ids = palloc(sizeof(int64) * Max(n, 1));
	for (int i = 0; i < n; i++)
		if (!nulls[i])
			ids[m++] = DatumGetInt64(elems[i]);
	if (m > 1)
	{
		int			k = 1;

		qsort(ids, m, sizeof(int64), CompareIds);
		for (int i = 1; i < m; i++)
			if (ids[i] != ids[k - 1])
				ids[k++] = ids[i];
		m = k;
	}
	*count = m;
	return ids;
}

PG_FUNCTION_INFO_V1(eventbus_ack_ids);

/*
 * SQL eventbus._ack_ids(sub_id, event_ids): deletes the subscription's
 * leased deliveries of these events, counts them (and their lease-to-ack
 * latency) for the stats, and returns how many there were.
 */
Datum
eventbus_ack_ids(PG_FUNCTION_ARGS)
{
	int32		sub_id;
	ArrayType  *ids;
	Oid			relid;
	Oid			indexid;
	Relation	rel;
	Relation	index;
	IndexScanDesc scan;
	ScanKeyData keys[3];
	int			nkeys;
	int64	   *sorted;
	int			nsorted;
	bool		range;
	TupleTableSlot *slot;
	Snapshot	snapshot;
	CommandId	cid;
	DeliveryColumns cols;
	TimestampTz now;
	int32		n = 0;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_INT32(0);
	sub_id = PG_GETARG_INT32(0);
	ids = PG_GETARG_ARRAYTYPE_P(1);
	if (ARR_NDIM(ids) == 0 || ArrayGetNItems(ARR_NDIM(ids), ARR_DIMS(ids)) == 0)
		PG_RETURN_INT32(0);
	if (ARR_NDIM(ids) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("event_ids must be a one-dimensional array"),
				 errhint("Pass e.g. array_agg(event_id) of the events poll returned.")));

	sorted = SortedIds(ids, &nsorted);
	if (nsorted == 0)
		PG_RETURN_INT32(0);
	range = (double) sorted[nsorted - 1] - (double) sorted[0] + 1 <=
		(double) nsorted * EB_ACK_RANGE_FACTOR;

	relid = EbRelid("delivery");
	indexid = EbRelid("delivery_pkey");
	cols.state = DeliveryColumn(relid, "state");
	cols.leased_at = DeliveryColumn(relid, "leased_at");
	if (DeliveryColumn(relid, "event_id") != EB_DELIVERY_EVENT_ID)
		elog(ERROR, "eventbus.delivery.event_id is not its second column");

	rel = table_open(relid, RowExclusiveLock);
	index = index_open(indexid, RowExclusiveLock);
	snapshot = GetActiveSnapshot();
	cid = GetCurrentCommandId(true);
	now = GetCurrentTimestamp();

	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(sub_id));
	if (range)
	{
		/* sub_id = $1 AND event_id BETWEEN the lowest and the highest id */
		ScanKeyInit(&keys[1], 2, BTGreaterEqualStrategyNumber, F_INT8GE, Int64GetDatum(sorted[0]));
		ScanKeyInit(&keys[2], 2, BTLessEqualStrategyNumber, F_INT8LE, Int64GetDatum(sorted[nsorted - 1]));
		nkeys = 3;
	}
	else
	{
		/* sub_id = $1 AND event_id = ANY ($2): the btree walks the ids in order */
		ScanKeyEntryInitialize(&keys[1], SK_SEARCHARRAY, 2, BTEqualStrategyNumber,
							   InvalidOid, InvalidOid, F_INT8EQ, PointerGetDatum(ids));
		nkeys = 2;
	}
	slot = table_slot_create(rel, NULL);
	scan = index_beginscan(rel, index, snapshot, nkeys, 0);
	index_rescan(scan, keys, nkeys, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		ItemPointerData tid = slot->tts_tid;

		if (range)
		{
			bool		isnull;
			int64		id = DatumGetInt64(slot_getattr(slot, EB_DELIVERY_EVENT_ID, &isnull));

			if (bsearch(&id, sorted, nsorted, sizeof(int64), CompareIds) == NULL)
				continue;		/* in the range, not asked for */
		}

		/* Until deleted, or found gone or no longer leased. */
		for (;;)
		{
			bool		isnull;
			Datum		state = slot_getattr(slot, cols.state, &isnull);
			Datum		leased_at;
			TM_FailureData tmfd;
			TM_Result	result;

			if (isnull || strcmp(TextDatumGetCString(state), "leased") != 0)
				break;
			leased_at = slot_getattr(slot, cols.leased_at, &isnull);
			result = table_tuple_delete(rel, &tid, cid, snapshot, InvalidSnapshot,
										true, &tmfd, false);
			if (result == TM_Ok)
			{
				n++;
				EbStatsCountSub(sub_id, EB_SUB_ACKED, 1);
				if (!isnull)
					EbStatsObserve(sub_id, EB_HIST_ACK,
								   (double) (now - DatumGetTimestampTz(leased_at)) / USECS_PER_SEC);
				break;
			}
			if (result == TM_SelfModified || result == TM_Deleted)
			{
				if (result == TM_Deleted && IsolationUsesXactSnapshot())
					ereport(ERROR,
							(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
							 errmsg("could not serialize access due to concurrent delete")));
				break;			/* gone already: acked by us or another */
			}
			if (result != TM_Updated)
				elog(ERROR, "unexpected result %d deleting a delivery", (int) result);
			if (IsolationUsesXactSnapshot())
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("could not serialize access due to concurrent update")));
			/* Updated meanwhile (leased again): lock its newest version, look again. */
			result = table_tuple_lock(rel, &tid, snapshot, slot, cid, LockTupleExclusive,
									  LockWaitBlock, TUPLE_LOCK_FLAG_FIND_LAST_VERSION, &tmfd);
			if (result != TM_Ok)
				break;			/* deleted meanwhile */
			tid = slot->tts_tid;
		}
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, NoLock);
	table_close(rel, NoLock);
	PG_RETURN_INT32(n);
}
