/*-------------------------------------------------------------------------
 *
 * batch.c
 *	  The rows that hold consuming state: batches (eventbus.batch) and
 *	  deliveries of their own (eventbus.delivery).
 *
 * A batch is a slice of a subscription's stream, cut in commit order
 * (cut.c): one row holding its events' ids, where they lie in the log,
 * and a bitmap of those done. Pollers claim batches (poll.c) and finish
 * them (ack.c); events that need state of their own (a retry, a delay, a
 * key's queue, a dead letter) move to delivery rows.
 *
 * Locking: batch rows are tuple-locked before they change, without
 * waiting when claimed (EbBatchLock(wait = false): another holder's batch
 * is skipped), waiting otherwise; under REPEATABLE READ a row changed by
 * a transaction that committed after the snapshot raises 40001. Rows are
 * written under RowExclusiveLock.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "batch.h"

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
