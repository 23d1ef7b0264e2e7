/*-------------------------------------------------------------------------
 *
 * batch.c
 *	  Cutting a subscription's stream into batches, and the rows that
 *	  hold consuming state: batches and deliveries.
 *
 * A subscription's position is a window of two snapshots in
 * eventbus.cursor (window.c explains windows). EbCut reads on from it, in
 * commit order, the events the subscription has not read yet and sorts
 * each into one of:
 *
 *	 - a batch (eventbus.batch): up to batch_size events, one row holding
 *	   their ids, the range of their xids, and a bitmap of those done. This
 *	   is where nearly every event goes: nothing per event is written.
 *	 - a delivery row of its own (eventbus.delivery, state 'waiting'):
 *	   an event delayed past now (deliver_at), or a keyed event of an
 *	   ordered subscription (its key's queue is ordered by "ord").
 *	 - nothing: another topic, the filter says no, a schema rejected it
 *	   (rejected_by), it expired (counted), or a replay after seek skips it.
 *
 * and moves the position on. The background worker cuts, in a transaction
 * of its own that commits at once, for every subscription that consumers
 * poll; pollers then claim batches inside their own transactions
 * (consume.c), so that they never wait for each other. Without the worker
 * poll cuts itself, serialised by the cursor row (the degraded mode of
 * docs/consuming.md).
 *
 * Locking: the cursor row is locked FOR UPDATE SKIP LOCKED: whoever holds
 * it cuts, the others cut nothing and never wait. Batch and delivery rows
 * are inserted under RowExclusiveLock. Rows a transaction changes that
 * already exist are tuple-locked first by the caller.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "batch.h"
#include "stats.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "miscadmin.h"
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

/* Columns of eventbus.subscription (sql/30_subscriptions.sql), 1-based. */
enum
{
	SUB_ID = 1,
	SUB_NAME,
	SUB_PATTERNS,
	SUB_MAX_ATTEMPTS,
	SUB_BACKOFF_INITIAL,
	SUB_BACKOFF_MAX,
	SUB_LEASE,
	SUB_ORDERED,
	SUB_FILTER,
	SUB_MAX_BACKLOG,
	SUB_ON_OVERFLOW,
	SUB_PAUSED
};

/* An interval in microseconds (a month counted as 30 days). */
static int64
IntervalUsecs(const Interval *iv)
{
	return iv->time + (int64) iv->day * USECS_PER_DAY +
		(int64) iv->month * DAYS_PER_MONTH * USECS_PER_DAY;
}

/* Takes a subscription row apart. */
static EbSub *
SubFromTuple(HeapTuple tuple, TupleDesc desc)
{
	EbSub	   *sub = palloc0(sizeof(EbSub));
	bool		isnull;
	Datum		d;
	ArrayType  *patterns;
	Datum	   *elems;
	bool	   *enulls;
	int			n;

	sub->id = DatumGetInt32(heap_getattr(tuple, SUB_ID, desc, &isnull));
	sub->name = TextDatumGetCString(heap_getattr(tuple, SUB_NAME, desc, &isnull));
	patterns = DatumGetArrayTypeP(heap_getattr(tuple, SUB_PATTERNS, desc, &isnull));
	deconstruct_array(patterns, TEXTOID, -1, false, TYPALIGN_INT, &elems, &enulls, &n);
	sub->patterns = palloc(sizeof(EbPattern) * Max(n, 1));
	for (int i = 0; i < n; i++)
		if (!enulls[i])
		{
			text	   *p = DatumGetTextPP(elems[i]);

			EbCompilePattern(VARDATA_ANY(p), VARSIZE_ANY_EXHDR(p), &sub->patterns[sub->npatterns++]);
		}
	sub->max_attempts = DatumGetInt32(heap_getattr(tuple, SUB_MAX_ATTEMPTS, desc, &isnull));
	sub->backoff_initial = IntervalUsecs(DatumGetIntervalP(heap_getattr(tuple, SUB_BACKOFF_INITIAL, desc, &isnull)));
	sub->backoff_max = IntervalUsecs(DatumGetIntervalP(heap_getattr(tuple, SUB_BACKOFF_MAX, desc, &isnull)));
	sub->lease = *DatumGetIntervalP(heap_getattr(tuple, SUB_LEASE, desc, &isnull));
	sub->ordered = DatumGetBool(heap_getattr(tuple, SUB_ORDERED, desc, &isnull));
	d = heap_getattr(tuple, SUB_FILTER, desc, &isnull);
	sub->has_filter = !isnull;
	if (!isnull)
		sub->filter = PointerGetDatum(PG_DETOAST_DATUM_COPY(d));
	d = heap_getattr(tuple, SUB_MAX_BACKLOG, desc, &isnull);
	sub->max_backlog = isnull ? 0 : DatumGetInt64(d);
	d = heap_getattr(tuple, SUB_ON_OVERFLOW, desc, &isnull);
	sub->drop_oldest = !isnull && strcmp(TextDatumGetCString(d), "drop_oldest") == 0;
	sub->paused = DatumGetBool(heap_getattr(tuple, SUB_PAUSED, desc, &isnull));
	return sub;
}

/* Looks a subscription up through one of its unique indexes; NULL when absent. */
static EbSub *
SubLookup(const char *indexname, ScanKey key)
{
	Relation	rel = table_open(EbRelid("subscription"), AccessShareLock);
	SysScanDesc scan;
	HeapTuple	tuple;
	EbSub	   *sub = NULL;

	scan = systable_beginscan(rel, EbRelid(indexname), true, GetActiveSnapshot(), 1, key);
	if (HeapTupleIsValid(tuple = systable_getnext(scan)))
		sub = SubFromTuple(tuple, RelationGetDescr(rel));
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return sub;
}

/* Returns the subscription of that name, or raises 42704 naming it. */
EbSub *
EbSubByName(const char *name)
{
	ScanKeyData key;
	EbSub	   *sub;

	ScanKeyInit(&key, SUB_NAME, BTEqualStrategyNumber, F_TEXTEQ, CStringGetTextDatum(name));
	key.sk_collation = DEFAULT_COLLATION_OID;
	sub = SubLookup("subscription_name_key", &key);
	if (sub == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("subscription \"%s\" does not exist", name),
				 errhint("Create it with eventbus.subscribe(name, patterns); list them in eventbus.subscriptions.")));
	return sub;
}

/* Returns the subscription with that id, or NULL. */
EbSub *
EbSubById(int32 id)
{
	ScanKeyData key;

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(id));
	return SubLookup("subscription_pkey", &key);
}

/* Whether the subscription's patterns match a topic id (matched once per id). */
bool
EbSubMatchesTopic(EbSub *sub, int32 topic_id)
{
	struct
	{
		int32		id;
		bool		matches;
	}		   *entry;
	bool		found;

	if (sub->topics == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(int32);
		ctl.entrysize = sizeof(*entry);
		ctl.hcxt = CurrentMemoryContext;
		sub->topics = hash_create("eventbus subscription topics", 64, &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	entry = hash_search(sub->topics, &topic_id, HASH_ENTER, &found);
	if (!found)
	{
		const char *topic = EbTopicName(topic_id);

		entry->matches = false;
		for (int i = 0; topic != NULL && i < sub->npatterns && !entry->matches; i++)
			entry->matches = EbPatternMatches(&sub->patterns[i], topic, strlen(topic));
	}
	return entry->matches;
}

/*
 * The delay before retry number attempt + 1, in microseconds:
 * backoff_initial * 2^(attempt-1), capped at backoff_max before it can
 * overflow, then a random 50-100% of it (jitter).
 */
int64
EbBackoff(const EbSub *sub, int attempt)
{
	int64		d = sub->backoff_initial;

	for (int i = 1; i < attempt && d < sub->backoff_max; i++)
		d = d > sub->backoff_max / 2 ? sub->backoff_max : d * 2;
	d = Min(d, sub->backoff_max);
	return (int64) (d * (0.5 + pg_prng_double(&pg_global_prng_state) * 0.5));
}

/* ---- batch rows ---- */

/* Takes a batch row apart (its slot stays valid). */
void
EbBatchRead(TupleTableSlot *slot, EbBatch *b)
{
	bool		isnull;
	Datum		d;
	Datum	   *elems;
	bool	   *enulls;

	slot_getallattrs(slot);
	b->tid = slot->tts_tid;
	b->sub_id = DatumGetInt32(slot->tts_values[EB_BATCH_SUB_ID - 1]);
	b->batch_id = DatumGetInt64(slot->tts_values[EB_BATCH_BATCH_ID - 1]);
	b->leased = DatumGetBool(slot->tts_values[EB_BATCH_LEASED - 1]);
	b->attempt = DatumGetInt32(slot->tts_values[EB_BATCH_ATTEMPT - 1]);
	b->lease_until = slot->tts_isnull[EB_BATCH_LEASE_UNTIL - 1] ? 0 :
		DatumGetTimestampTz(slot->tts_values[EB_BATCH_LEASE_UNTIL - 1]);
	b->leased_at = slot->tts_isnull[EB_BATCH_LEASED_AT - 1] ? 0 :
		DatumGetTimestampTz(slot->tts_values[EB_BATCH_LEASED_AT - 1]);
	b->has_token = !slot->tts_isnull[EB_BATCH_TOKEN - 1];
	b->token = b->has_token ? DatumGetInt64(slot->tts_values[EB_BATCH_TOKEN - 1]) : 0;
	b->first.txid = U64FromFullTransactionId(DatumGetFullTransactionId(slot->tts_values[EB_BATCH_FIRST_TXID - 1]));
	b->first.id = DatumGetInt64(slot->tts_values[EB_BATCH_FIRST_ID - 1]);
	b->last.txid = U64FromFullTransactionId(DatumGetFullTransactionId(slot->tts_values[EB_BATCH_LAST_TXID - 1]));
	b->last.id = DatumGetInt64(slot->tts_values[EB_BATCH_LAST_ID - 1]);
	deconstruct_array(DatumGetArrayTypeP(slot->tts_values[EB_BATCH_IDS - 1]), INT8OID, 8,
					  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &elems, &enulls, &b->n);
	b->ids = palloc(sizeof(int64) * Max(b->n, 1));
	for (int i = 0; i < b->n; i++)
		b->ids[i] = DatumGetInt64(elems[i]);
	b->done = palloc0((b->n + 7) / 8 + 1);
	d = slot_getattr(slot, EB_BATCH_DONE, &isnull);
	if (!isnull)
	{
		bytea	   *bits = DatumGetByteaPP(d);

		memcpy(b->done, VARDATA_ANY(bits), Min(VARSIZE_ANY_EXHDR(bits), (b->n + 7) / 8));
	}
	b->ndone = DatumGetInt32(slot->tts_values[EB_BATCH_NDONE - 1]);
	b->cut_at = DatumGetTimestampTz(slot->tts_values[EB_BATCH_CUT_AT - 1]);
}

/* Inserts a batch row, or (update) replaces the locked row at b->tid. */
void
EbBatchWrite(EbRowWriter *w, const EbBatch *b, bool update)
{
	Datum		values[EB_BATCH_NATTS];
	bool		nulls[EB_BATCH_NATTS] = {0};
	Datum	   *elems = palloc(sizeof(Datum) * Max(b->n, 1));

	for (int i = 0; i < b->n; i++)
		elems[i] = Int64GetDatum(b->ids[i]);
	values[EB_BATCH_SUB_ID - 1] = Int32GetDatum(b->sub_id);
	values[EB_BATCH_BATCH_ID - 1] = Int64GetDatum(b->batch_id);
	values[EB_BATCH_LEASED - 1] = BoolGetDatum(b->leased);
	values[EB_BATCH_ATTEMPT - 1] = Int32GetDatum(b->attempt);
	values[EB_BATCH_LEASE_UNTIL - 1] = TimestampTzGetDatum(b->lease_until);
	nulls[EB_BATCH_LEASE_UNTIL - 1] = b->lease_until == 0;
	values[EB_BATCH_LEASED_AT - 1] = TimestampTzGetDatum(b->leased_at);
	nulls[EB_BATCH_LEASED_AT - 1] = b->leased_at == 0;
	values[EB_BATCH_TOKEN - 1] = Int64GetDatum(b->token);
	nulls[EB_BATCH_TOKEN - 1] = !b->has_token;
	values[EB_BATCH_FIRST_TXID - 1] = FullTransactionIdGetDatum(FullTransactionIdFromU64(b->first.txid));
	values[EB_BATCH_FIRST_ID - 1] = Int64GetDatum(b->first.id);
	values[EB_BATCH_LAST_TXID - 1] = FullTransactionIdGetDatum(FullTransactionIdFromU64(b->last.txid));
	values[EB_BATCH_LAST_ID - 1] = Int64GetDatum(b->last.id);
	values[EB_BATCH_IDS - 1] = PointerGetDatum(construct_array(elems, b->n, INT8OID, 8,
															   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	if (b->ndone > 0)
	{
		int			len = (b->n + 7) / 8;
		bytea	   *bits = palloc(VARHDRSZ + len);

		SET_VARSIZE(bits, VARHDRSZ + len);
		memcpy(VARDATA(bits), b->done, len);
		values[EB_BATCH_DONE - 1] = PointerGetDatum(bits);
	}
	else
		nulls[EB_BATCH_DONE - 1] = true;
	values[EB_BATCH_NDONE - 1] = Int32GetDatum(b->ndone);
	values[EB_BATCH_CUT_AT - 1] = TimestampTzGetDatum(b->cut_at);
	if (update)
		EbRowUpdate(w, (ItemPointer) &b->tid, values, nulls);
	else
		EbRowWrite(w, values, nulls);
	pfree(elems);
}

/* Whether event i of the batch is done. */
bool
EbBatchIsDone(const EbBatch *b, int i)
{
	return (b->done[i / 8] & (1 << (i % 8))) != 0;
}

/* Marks event i of the batch done. */
void
EbBatchSetDone(EbBatch *b, int i)
{
	if (!EbBatchIsDone(b, i))
	{
		b->done[i / 8] |= (uint8) (1 << (i % 8));
		b->ndone++;
	}
}

/* The offset of an event id in the batch, or -1. */
int
EbBatchFind(const EbBatch *b, int64 id)
{
	int			lo = 0;
	int			hi = b->n - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;

		if (b->ids[mid] == id)
			return mid;
		if (b->ids[mid] < id)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

/* ---- batch rows in place ---- */

/* eventbus.batch and its primary key, opened for changes. */
/* Opens eventbus.batch for scanning and changing rows. */
void
EbBatchOpen(EbBatchRel *br)
{
	br->writer = EbRowWriterOpen(EbRelid("batch"), EB_BATCH_NATTS);
	br->rel = EbRowWriterRelation(br->writer);
	br->index = index_open(EbRelid("batch_pkey"), RowExclusiveLock);
	br->slot = table_slot_create(br->rel, NULL);
	br->locked = table_slot_create(br->rel, NULL);
}

/* Closes what BatchOpen opened. */
void
EbBatchClose(EbBatchRel *br)
{
	ExecDropSingleTupleTableSlot(br->slot);
	ExecDropSingleTupleTableSlot(br->locked);
	index_close(br->index, NoLock);
	EbRowWriterClose(br->writer);
}

/* Starts a scan of a subscription's batches, in batch order. */
IndexScanDesc
EbBatchScan(EbBatchRel *br, int32 sub_id)
{
	ScanKeyData key;
	IndexScanDesc scan;

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(sub_id));
	scan = index_beginscan(br->rel, br->index, GetActiveSnapshot(), 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	return scan;
}

/*
 * Locks the newest version of the batch row the scan stands on, into
 * br->locked. wait: wait for another holder (else skip it). Returns false
 * when it is gone or (not waiting) held by another. Under REPEATABLE READ,
 * a row changed by a transaction that committed after the snapshot
 * raises 40001.
 */
bool
EbBatchLock(EbBatchRel *br, ItemPointer tid, bool wait)
{
	TM_FailureData tmfd;
	TM_Result	result;
	Snapshot	snapshot = GetActiveSnapshot();
	CommandId	cid = GetCurrentCommandId(false);

	result = table_tuple_lock(br->rel, tid, snapshot, br->locked, cid, LockTupleExclusive,
							  wait ? LockWaitBlock : LockWaitSkip, 0, &tmfd);
	if (result == TM_Ok)
		return true;
	if (result == TM_WouldBlock || result == TM_Invisible || result == TM_SelfModified)
		return false;
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to concurrent %s",
						result == TM_Deleted ? "delete" : "update")));
	if (result == TM_Deleted)
		return false;
	/* Updated meanwhile: lock its newest version. */
	result = table_tuple_lock(br->rel, tid, snapshot, br->locked, cid, LockTupleExclusive,
							  wait ? LockWaitBlock : LockWaitSkip,
							  TUPLE_LOCK_FLAG_FIND_LAST_VERSION, &tmfd);
	return result == TM_Ok;
}

/*
 * The places in the log (txid) of some events of a batch, found by
 * walking its xid range: txids[i] for ids[i]; 0 when not found.
 */
uint64 *
EbBatchTxids(EbLog *log, const EbBatch *b, const int64 *ids, int n)
{
	uint64	   *txids = palloc0(sizeof(uint64) * Max(n, 1));
	EbRangeScan *rs = EbRangeBegin(log, &b->first, &b->last, ids, n);
	TupleTableSlot *slot;
	int			off;

	while ((slot = EbRangeNext(rs, &off)) != NULL)
	{
		bool		isnull;

		txids[off] = U64FromFullTransactionId(DatumGetFullTransactionId(slot_getattr(slot, EB_LOG_TXID, &isnull)));
	}
	EbRangeEnd(rs);
	return txids;
}

/*
 * Moves events of a batch into delivery rows of their own (nack, lease
 * expiry at the last attempt, overflow): ids[0..n-1], all in the batch.
 */
void
EbBatchSpill(EbLog *log, const EbBatch *b, const int64 *ids, int n, EbDelivery *proto)
{
	uint64	   *txids = EbBatchTxids(log, b, ids, n);
	EbRowWriter *w = EbRowWriterOpen(EbRelid("delivery"), EB_DLV_NATTS);

	for (int i = 0; i < n; i++)
	{
		EbDelivery d = *proto;

		if (txids[i] == 0)
			continue;			/* its chunk is gone: nothing to deliver */
		d.event_id = ids[i];
		d.txid = txids[i];
		EbDeliveryInsert(w, &d);
	}
	EbRowWriterClose(w);
}

/* The ids of a batch that are not done, ascending. */
int64 *
EbBatchOpenIds(const EbBatch *b, int *n)
{
	int64	   *ids = palloc(sizeof(int64) * Max(b->n, 1));

	*n = 0;
	for (int i = 0; i < b->n; i++)
		if (!EbBatchIsDone(b, i))
			ids[(*n)++] = b->ids[i];
	return ids;
}

/* ---- delivery rows ---- */

/* Inserts a delivery row. */
void
EbDeliveryInsert(EbRowWriter *w, const EbDelivery *d)
{
	Datum		values[EB_DLV_NATTS];
	bool		nulls[EB_DLV_NATTS] = {0};

	values[EB_DLV_SUB_ID - 1] = Int32GetDatum(d->sub_id);
	values[EB_DLV_EVENT_ID - 1] = Int64GetDatum(d->event_id);
	values[EB_DLV_TXID - 1] = FullTransactionIdGetDatum(FullTransactionIdFromU64(d->txid));
	values[EB_DLV_STATE - 1] = CStringGetTextDatum(d->state);
	values[EB_DLV_ATTEMPT - 1] = Int32GetDatum(d->attempt);
	values[EB_DLV_AVAILABLE_AT - 1] = TimestampTzGetDatum(d->available_at);
	nulls[EB_DLV_LAST_ERROR - 1] = d->last_error == NULL;
	if (d->last_error)
		values[EB_DLV_LAST_ERROR - 1] = CStringGetTextDatum(d->last_error);
	nulls[EB_DLV_REASON - 1] = d->reason == NULL;
	if (d->reason)
		values[EB_DLV_REASON - 1] = CStringGetTextDatum(d->reason);
	nulls[EB_DLV_DEAD_AT - 1] = d->dead_at == 0;
	values[EB_DLV_DEAD_AT - 1] = TimestampTzGetDatum(d->dead_at);
	nulls[EB_DLV_KEY - 1] = d->key == NULL;
	values[EB_DLV_KEY - 1] = PointerGetDatum(d->key);
	nulls[EB_DLV_ORD - 1] = !d->has_ord;
	values[EB_DLV_ORD - 1] = Int64GetDatum(d->ord);
	nulls[EB_DLV_LEASED_AT - 1] = true;
	nulls[EB_DLV_TOKEN - 1] = true;
	EbRowWrite(w, values, nulls);
}

/* The next place in a key's queue (eventbus.delivery_ord_seq). */
int64
EbNextOrd(void)
{
	return nextval_internal(EbRelid("delivery_ord_seq"), false);
}

/* ---- cutting ---- */

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
static SPIPlanPtr SaveCursorPlan = NULL;
static SPIPlanPtr InFlightPlan = NULL;
static SPIPlanPtr DeadPlan = NULL;
static SPIPlanPtr DropDeadPlan = NULL;

/* Prepares (once per backend) and keeps an SPI plan. */
SPIPlanPtr
EbKeepPlan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, types);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "eventbus: could not prepare \"%s\": %s", sql,
				 SPI_result_code_string(SPI_result));
		*plan = p;
	}
	return *plan;
}

/* Locks and reads a subscription's cursor row; false when another holds it. */
static bool
LockCursor(int32 sub_id, Cursor *c)
{
	Oid			types[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(sub_id)};
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;

	EbKeepPlan(&LockCursorPlan,
			 "SELECT win_lo, win_hi, pos_txid, pos_id, start_time, start_id, expired "
			 "FROM eventbus.cursor WHERE sub_id OPERATOR(pg_catalog.=) $1 FOR UPDATE SKIP LOCKED",
			 1, types);
	if (SPI_execute_plan(LockCursorPlan, args, NULL, false, 1) != SPI_OK_SELECT)
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

/* Whether a payload passes the subscription's jsonpath filter (payload @@ filter). */
static bool
PassesFilter(EbSub *sub, Datum payload)
{
	LOCAL_FCINFO(fcinfo, 2);
	Datum		result;

	InitFunctionCallInfoData(*fcinfo, NULL, 2, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = payload;
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = sub->filter;
	fcinfo->args[1].isnull = false;
	result = jsonb_path_match_opr(fcinfo);
	return !fcinfo->isnull && DatumGetBool(result);
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
	if (!LockCursor(sub->id, &c))
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
		if (sub->has_filter && !PassesFilter(sub, slot_getattr(slot, EB_LOG_PAYLOAD, &isnull)))
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
