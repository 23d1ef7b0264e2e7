/*-------------------------------------------------------------------------
 *
 * ack.c
 *	  eventbus.ack, nack and extend_lease: ending or extending leases, of
 *	  batches and of deliveries of their own, under a lease token or not.
 *
 * Locking: the rows are tuple-locked before they change, waiting for a
 * holder as an UPDATE would; under REPEATABLE READ a row changed by a
 * transaction that committed after the snapshot raises 40001.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "batch.h"
#include "consume.h"
#include "stats.h"
#include "sub.h"
#include "window.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

/* ---- ack ---- */

/*
 * Acks the subscription's leased deliveries of the ids (all leased under
 * the token when ids is NULL). Returns how many.
 */
int
EbAckDeliveries(EbSub *sub, const int64 *ids, int nids, bool has_token, int64 token)
{
	Relation	rel;
	Relation	index;
	IndexScanDesc scan;
	ScanKeyData keys[3];
	int			nkeys = 1;
	TupleTableSlot *slot;
	Snapshot	snapshot = GetActiveSnapshot();
	CommandId	cid = GetCurrentCommandId(true);
	TimestampTz now = GetCurrentTimestamp();
	int			n = 0;

	if (ids != NULL && nids == 0)
		return 0;
	rel = EbTableOpen(EbRelid("delivery"), RowExclusiveLock);
	index = index_open(EbRelid("delivery_pkey"), RowExclusiveLock);
	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(sub->id));
	if (ids != NULL)
	{
		ScanKeyInit(&keys[1], 2, BTGreaterEqualStrategyNumber, F_INT8GE, Int64GetDatum(ids[0]));
		ScanKeyInit(&keys[2], 2, BTLessEqualStrategyNumber, F_INT8LE, Int64GetDatum(ids[nids - 1]));
		nkeys = 3;
	}
	slot = table_slot_create(rel, NULL);
	scan = index_beginscan(rel, index, snapshot, nkeys, 0);
	index_rescan(scan, keys, nkeys, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		ItemPointerData tid = slot->tts_tid;
		bool		isnull;

		if (ids != NULL &&
			!EbHasId(ids, nids, DatumGetInt64(slot_getattr(slot, EB_DLV_EVENT_ID, &isnull))))
			continue;
		/* Until deleted, or found gone or no longer leased (under the token). */
		for (;;)
		{
			Datum		state = slot_getattr(slot, EB_DLV_STATE, &isnull);
			Datum		leased_at;
			Datum		tok;
			bool		tok_null;
			TM_FailureData tmfd;
			TM_Result	result;

			if (isnull || strcmp(TextDatumGetCString(state), "leased") != 0)
				break;
			tok = slot_getattr(slot, EB_DLV_TOKEN, &tok_null);
			if (has_token && (tok_null || DatumGetInt64(tok) != token))
				break;
			leased_at = slot_getattr(slot, EB_DLV_LEASED_AT, &isnull);
			result = table_tuple_delete(rel, &tid, cid, snapshot, InvalidSnapshot,
										true, &tmfd, false);
			if (result == TM_Ok)
			{
				n++;
				EbStatsCountSub(sub->id, EB_SUB_ACKED, 1);
				if (!isnull)
					EbStatsObserve(sub->id, EB_HIST_ACK,
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
	return n;
}

/* Whether a batch row (as seen) is leased, under the token if one is given. */
static bool
LeasedUnder(TupleTableSlot *slot, bool has_token, int64 token)
{
	bool		isnull;
	Datum		d;

	if (!DatumGetBool(slot_getattr(slot, EB_BATCH_LEASED, &isnull)))
		return false;
	if (!has_token)
		return true;
	d = slot_getattr(slot, EB_BATCH_TOKEN, &isnull);
	return !isnull && DatumGetInt64(d) == token;
}

/*
 * Applies fn to the events of the subscription's leased batches that are
 * among ids (every open event when ids is NULL), batch by batch, with the
 * batch locked. fn returns how many it changed; the batch row is then
 * written back (deleted when every event of it is done).
 */
typedef int (*BatchEventsFn) (EbBatch *b, const int *offsets, int n, void *arg);

/* What ForLeasedBatches is doing. */
typedef struct LeasedWalk
{
	EbSub	   *sub;
	const int64 *ids;			/* NULL: every open event */
	int			nids;
	bool	   *found;			/* ids found in a batch */
	int			nfound;
	bool		has_token;
	int64		token;
	BatchEventsFn fn;
	void	   *arg;
	int			total;
	int64	   *done_batches;	/* batch ids already looked at */
	int			ndone_batches;
	int			maxdone_batches;
} LeasedWalk;

/* Whether a batch id was looked at already. */
static bool
LookedAt(LeasedWalk *w, int64 batch_id)
{
	for (int i = 0; i < w->ndone_batches; i++)
		if (w->done_batches[i] == batch_id)
			return true;
	return false;
}

/* Looks at the batch row a scan stands on: fn on its events among the ids. */
static void
VisitBatch(LeasedWalk *w, EbBatchRel *br)
{
	EbBatch		b;
	int		   *offsets;
	int			n = 0;
	bool		isnull;
	int64		batch_id = DatumGetInt64(slot_getattr(br->slot, EB_BATCH_BATCH_ID, &isnull));

	if (LookedAt(w, batch_id) || !LeasedUnder(br->slot, w->has_token, w->token))
		return;
	if (w->ndone_batches == w->maxdone_batches)
	{
		w->maxdone_batches = Max(16, w->maxdone_batches * 2);
		w->done_batches = w->done_batches ? repalloc(w->done_batches, sizeof(int64) * w->maxdone_batches) :
			palloc(sizeof(int64) * w->maxdone_batches);
	}
	w->done_batches[w->ndone_batches++] = batch_id;
	if (w->ids != NULL)
	{
		bool		any = false;

		EbBatchRead(br->slot, &b);
		for (int i = 0; i < w->nids && !any; i++)
			any = EbBatchFind(&b, w->ids[i]) >= 0;
		if (!any)
			return;
	}
	if (!EbBatchLock(br, &br->slot->tts_tid, true) || !LeasedUnder(br->locked, w->has_token, w->token))
		return;
	EbBatchRead(br->locked, &b);
	offsets = palloc(sizeof(int) * Max(b.n, 1));
	for (int i = 0; i < b.n; i++)
	{
		int64	   *at = NULL;

		if (w->ids != NULL)
		{
			at = bsearch(&b.ids[i], w->ids, w->nids, sizeof(int64), EbCompareIds);
			if (at == NULL)
				continue;
			if (!w->found[at - w->ids])
			{
				w->found[at - w->ids] = true;
				w->nfound++;
			}
		}
		if (!EbBatchIsDone(&b, i))
			offsets[n++] = i;
	}
	if (n == 0)
		return;
	w->total += w->fn(&b, offsets, n, w->arg);
	if (b.ndone >= b.n)
		EbRowDelete(br->writer, &b.tid);
	else
		EbBatchWrite(br->writer, &b, true);
}


static int
ForLeasedBatches(EbSub *sub, const int64 *ids, int nids, bool has_token, int64 token,
				 BatchEventsFn fn, void *arg)
{
	EbBatchRel	br;
	IndexScanDesc scan;
	LeasedWalk	w = {0};
	ScanKeyData keys[2];
	int64	   *recent = palloc(sizeof(int64) * EB_CLAIM_CACHE);
	int			nrecent;

	if (ids != NULL && nids == 0)
		return 0;
	w.sub = sub;
	w.ids = ids;
	w.nids = nids;
	w.found = ids ? palloc0(sizeof(bool) * nids) : NULL;
	w.has_token = has_token;
	w.token = token;
	w.fn = fn;
	w.arg = arg;
	EbBatchOpen(&br);

	/* The batches this backend claimed lately, newest first, by primary key. */
	nrecent = EbRecentClaims(sub->id, has_token, token, recent, EB_CLAIM_CACHE);
	for (int k = 0; k < nrecent; k++)
	{
		if (LookedAt(&w, recent[k]))
			continue;
		if (ids != NULL && w.nfound == nids)
			break;
		ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(sub->id));
		ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(recent[k]));
		scan = index_beginscan(br.rel, br.index, GetActiveSnapshot(), 2, 0);
		index_rescan(scan, keys, 2, NULL, 0);
		if (index_getnext_slot(scan, ForwardScanDirection, br.slot))
			VisitBatch(&w, &br);
		index_endscan(scan);
	}

	/* The rest: every batch of the subscription. */
	if (ids != NULL ? w.nfound < nids : !(has_token && EbClaimsComplete(token)))
	{
		scan = EbBatchScan(&br, sub->id);
		while ((ids == NULL || w.nfound < nids) &&
			   index_getnext_slot(scan, ForwardScanDirection, br.slot))
			VisitBatch(&w, &br);
		index_endscan(scan);
	}
	EbBatchClose(&br);
	return w.total;
}

/* Marks events of a batch acked, counting them and their lease-to-ack time. */
static int
AckEvents(EbBatch *b, const int *offsets, int n, void *arg)
{
	TimestampTz now = GetCurrentTimestamp();

	for (int i = 0; i < n; i++)
		EbBatchSetDone(b, offsets[i]);
	if (b->leased_at != 0)
		EbStatsObserveN(b->sub_id, EB_HIST_ACK, (double) (now - b->leased_at) / USECS_PER_SEC, n);
	EbStatsCountSub(b->sub_id, EB_SUB_ACKED, n);
	return n;
}

/* Acks events of the subscription's leased batches; returns how many. */
int
EbAckBatches(EbSub *sub, const int64 *ids, int nids, bool has_token, int64 token)
{
	return ForLeasedBatches(sub, ids, nids, has_token, token, AckEvents, NULL);
}

PG_FUNCTION_INFO_V1(eventbus_ack);

/*
 * SQL eventbus.ack(subscription, event_ids, lease_token): finishes leased
 * events (every event of the lease when event_ids is NULL and a token is
 * given). Returns how many were leased and are now done.
 */
Datum
eventbus_ack(PG_FUNCTION_ARGS)
{
	EbSub	   *sub;
	int64	   *ids = NULL;
	int			nids = 0;
	bool		has_token = !PG_ARGISNULL(2);
	int64		token = has_token ? PG_GETARG_INT64(2) : 0;
	int			n;
	EbUserSave	save;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("subscription \"%s\" does not exist", "(null)")));
	sub = EbConsumeBegin(text_to_cstring(PG_GETARG_TEXT_PP(0)), &save);
	if (PG_ARGISNULL(1) && !has_token)
	{
		EbConsumeEnd(&save);
		PG_RETURN_INT32(0);
	}
	if (!PG_ARGISNULL(1))
		ids = EbSortedIds(PG_GETARG_ARRAYTYPE_P(1), &nids);
	n = EbAckDeliveries(sub, ids, nids, has_token, token);
	n += EbAckBatches(sub, ids, nids, has_token, token);
	if (sub->ordered && n > 0)
		EbWakeSub(sub->id);		/* the next event of each key is pollable now */
	EbConsumeEnd(&save);
	PG_RETURN_INT32(n);
}

/* ---- nack ---- */

/* What a nack of a batch event does. */
typedef struct NackArg
{
	EbSub	   *sub;
	EbLog	   *log;
	const char *error;
	Interval   *retry_in;
	bool		force_dead;		/* dead => true */
	bool		dead;
	TimestampTz at;
} NackArg;

/* Moves a nacked event out of its batch into a delivery row: retry or dead. */
static int
NackEvent(EbBatch *b, const int *offsets, int n, void *arg)
{
	NackArg    *na = arg;
	EbDelivery proto = {0};
	TimestampTz now = GetCurrentTimestamp();
	int64		id = b->ids[offsets[0]];

	proto.sub_id = b->sub_id;
	proto.attempt = b->attempt;
	proto.last_error = na->error;
	na->dead = na->force_dead || b->attempt >= na->sub->max_attempts;
	if (na->dead)
	{
		proto.state = "dead";
		proto.reason = "failed";
		proto.dead_at = now;
		proto.available_at = now;
	}
	else
	{
		proto.state = "waiting";
		proto.available_at = na->retry_in ? EbAddInterval(now, na->retry_in) :
			now + EbBackoff(na->sub, b->attempt);
		na->at = proto.available_at;
	}
	EbBatchSpill(na->log, b, &id, 1, &proto);
	EbBatchSetDone(b, offsets[0]);
	return 1;
}

static SPIPlanPtr NackRowPlan = NULL;
static SPIPlanPtr NackSetPlan = NULL;

PG_FUNCTION_INFO_V1(eventbus_nack);

/*
 * SQL eventbus.nack(subscription, event_id, error, retry_in, lease_token,
 * dead): gives a leased event back: 'retry' after the backoff (or
 * retry_in), or 'dead' at max_attempts (at once with dead => true).
 */
Datum
eventbus_nack(PG_FUNCTION_ARGS)
{
	EbSub	   *sub;
	int64		id;
	char	   *error = PG_ARGISNULL(2) ? NULL : EbClipError(text_to_cstring(PG_GETARG_TEXT_PP(2)));
	Interval   *retry_in = PG_ARGISNULL(3) ? NULL : PG_GETARG_INTERVAL_P(3);
	bool		has_token = !PG_ARGISNULL(4);
	int64		token = has_token ? PG_GETARG_INT64(4) : 0;
	bool		force_dead = PG_NARGS() > 5 && !PG_ARGISNULL(5) && PG_GETARG_BOOL(5);
	Oid			types[3] = {INT4OID, INT8OID, INT8OID};
	Datum		args[3];
	char		nulls[3] = {' ', ' ', ' '};
	NackArg		na = {0};
	char	   *result;
	EbUserSave	save;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("subscription \"%s\" does not exist", "(null)")));
	sub = EbConsumeBegin(text_to_cstring(PG_GETARG_TEXT_PP(0)), &save);
	if (retry_in != NULL)
	{
		Interval	zero = {0};
		Interval	month = {0};

		month.day = 30;
		if (DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(retry_in), IntervalPGetDatum(&zero))) < 0 ||
			DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(retry_in), IntervalPGetDatum(&month))) > 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("retry_in must be between 0 and 30 days: \"%s\"",
							DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(retry_in)))),
					 errhint("Pass e.g. interval '10 seconds', or NULL for the backoff.")));
	}
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("event NULL is not leased by subscription \"%s\"", sub->name),
				 errhint("Only events returned by eventbus.poll and not yet acked can be nacked.")));
	id = PG_GETARG_INT64(1);

	/* A delivery row of its own, leased (under the token)? */
	EbKeepPlan(&NackRowPlan,
		 "SELECT attempt FROM eventbus.delivery "
		 "WHERE sub_id OPERATOR(pg_catalog.=) $1 AND event_id OPERATOR(pg_catalog.=) $2 "
		 "AND state OPERATOR(pg_catalog.=) 'leased' AND ($3 IS NULL OR token OPERATOR(pg_catalog.=) $3) "
		 "FOR UPDATE",
		 3, types);
	args[0] = Int32GetDatum(sub->id);
	args[1] = Int64GetDatum(id);
	args[2] = Int64GetDatum(token);
	nulls[2] = has_token ? ' ' : 'n';
	if (SPI_execute_plan(NackRowPlan, args, nulls, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "eventbus: could not read the delivery");
	if (SPI_processed == 1)
	{
		bool		isnull;
		int32		attempt = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		Oid			stypes[5] = {INT4OID, INT8OID, TEXTOID, BOOLOID, TIMESTAMPTZOID};
		Datum		sargs[5];
		char		snulls[5] = {' ', ' ', ' ', ' ', ' '};
		TimestampTz now = GetCurrentTimestamp();

		na.dead = force_dead || attempt >= sub->max_attempts;
		na.at = na.dead ? now : retry_in ? EbAddInterval(now, retry_in) : now + EbBackoff(sub, attempt);
		EbKeepPlan(&NackSetPlan,
			 "UPDATE eventbus.delivery SET last_error = $3, "
			 "state = CASE WHEN $4 THEN 'dead' ELSE 'waiting' END, "
			 "reason = CASE WHEN $4 THEN 'failed' ELSE reason END, "
			 "dead_at = CASE WHEN $4 THEN $5 END, available_at = $5 "
			 "WHERE sub_id OPERATOR(pg_catalog.=) $1 AND event_id OPERATOR(pg_catalog.=) $2",
			 5, stypes);
		sargs[0] = Int32GetDatum(sub->id);
		sargs[1] = Int64GetDatum(id);
		sargs[2] = error ? CStringGetTextDatum(error) : (Datum) 0;
		snulls[2] = error ? ' ' : 'n';
		sargs[3] = BoolGetDatum(na.dead);
		sargs[4] = TimestampTzGetDatum(na.at);
		if (SPI_execute_plan(NackSetPlan, sargs, snulls, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "eventbus: could not nack the delivery");
	}
	else
	{
		na.sub = sub;
		na.log = EbLogOpen();
		na.error = error;
		na.retry_in = retry_in;
		na.force_dead = force_dead;
		if (ForLeasedBatches(sub, &id, 1, has_token, token, NackEvent, &na) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("event " INT64_FORMAT " is not leased by subscription \"%s\"", id, sub->name),
					 errhint("Only events returned by eventbus.poll and not yet acked can be nacked%s.",
							 has_token ? ", under the lease_token poll returned with them" : "")));
		EbLogClose(na.log);
	}
	EbStatsCountSub(sub->id, EB_SUB_NACKED, 1);
	if (na.dead)
	{
		EbStatsCountSub(sub->id, EB_SUB_DEAD, 1);
		if (sub->ordered)
			EbWakeSub(sub->id); /* the next event of its key is pollable now */
		result = "dead";
	}
	else
	{
		EbWakeAtCommit();		/* waiting pollers and the worker look at the new retry */
		EbWakeDueAt(sub->id, na.at);	/* due by commit (retry_in => 0): notify then */
		result = "retry";
	}
	EbConsumeEnd(&save);
	PG_RETURN_TEXT_P(cstring_to_text(result));
}

/* ---- extend_lease ---- */

/* What extend_lease does to a batch: its lease end, and the tokens it met. */
typedef struct ExtendArg
{
	TimestampTz until;
	int64	   *tokens;
	int			ntokens;
	int			maxtokens;
} ExtendArg;

/* Remembers a lease token (once). */
static void
AddToken(ExtendArg *ea, int64 token)
{
	for (int i = 0; i < ea->ntokens; i++)
		if (ea->tokens[i] == token)
			return;
	if (ea->ntokens == ea->maxtokens)
	{
		ea->maxtokens = Max(8, ea->maxtokens * 2);
		ea->tokens = ea->tokens ? repalloc(ea->tokens, sizeof(int64) * ea->maxtokens) :
			palloc(sizeof(int64) * ea->maxtokens);
	}
	ea->tokens[ea->ntokens++] = token;
}

/* Moves a batch's lease end. */
static int
ExtendEvents(EbBatch *b, const int *offsets, int n, void *arg)
{
	ExtendArg  *ea = arg;

	b->lease_until = ea->until;
	if (b->has_token)
		AddToken(ea, b->token);
	return n;
}

static SPIPlanPtr ExtendPlan = NULL;
static SPIPlanPtr ExtendTokenPlan = NULL;

PG_FUNCTION_INFO_V1(eventbus_extend_lease);

/*
 * SQL eventbus.extend_lease(subscription, event_ids, lease, lease_token):
 * the leases of these events (still leased) end "lease" from now. A lease
 * is what one poll handed out: extending one of its events extends all of
 * them. Returns how many of the events were leased.
 */
Datum
eventbus_extend_lease(PG_FUNCTION_ARGS)
{
	EbSub	   *sub;
	int64	   *ids;
	int			nids;
	Interval   *lease;
	bool		has_token = !PG_ARGISNULL(3);
	int64		token = has_token ? PG_GETARG_INT64(3) : 0;
	Oid			types[4] = {INT4OID, INT8ARRAYOID, TIMESTAMPTZOID, INT8OID};
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	ExtendArg	ea = {0};
	int			n;
	EbUserSave	save;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("subscription \"%s\" does not exist", "(null)")));
	lease = PG_ARGISNULL(2) ? NULL : PG_GETARG_INTERVAL_P(2);
	EbCheckLease("lease", lease);
	sub = EbConsumeBegin(text_to_cstring(PG_GETARG_TEXT_PP(0)), &save);
	if (PG_ARGISNULL(1))
	{
		EbConsumeEnd(&save);
		PG_RETURN_INT32(0);
	}
	ids = EbSortedIds(PG_GETARG_ARRAYTYPE_P(1), &nids);
	ea.until = EbAddInterval(GetCurrentTimestamp(), lease);

	/* The events named: deliveries of their own, then batches. */
	EbKeepPlan(&ExtendPlan,
			   "UPDATE eventbus.delivery SET available_at = $3 "
			   "WHERE sub_id OPERATOR(pg_catalog.=) $1 AND event_id OPERATOR(pg_catalog.=) ANY ($2) "
			   "AND state OPERATOR(pg_catalog.=) 'leased' AND ($4 IS NULL OR token OPERATOR(pg_catalog.=) $4) "
			   "RETURNING token",
			   4, types);
	args[0] = Int32GetDatum(sub->id);
	args[1] = EbIdArray(ids, nids);
	args[2] = TimestampTzGetDatum(ea.until);
	args[3] = Int64GetDatum(token);
	nulls[3] = has_token ? ' ' : 'n';
	if (SPI_execute_plan(ExtendPlan, args, nulls, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "eventbus: could not extend leases");
	n = (int) SPI_processed;
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			AddToken(&ea, DatumGetInt64(d));
	}
	n += ForLeasedBatches(sub, ids, nids, has_token, token, ExtendEvents, &ea);

	/* Then the rest of their leases: everything the same polls handed out. */
	EbNewSnapshot(true);
	for (int i = 0; i < ea.ntokens; i++)
	{
		Oid			ttypes[3] = {INT4OID, INT8OID, TIMESTAMPTZOID};
		Datum		targs[3] = {Int32GetDatum(sub->id), Int64GetDatum(ea.tokens[i]), TimestampTzGetDatum(ea.until)};
		int64		tok = ea.tokens[i];

		EbKeepPlan(&ExtendTokenPlan,
				   "UPDATE eventbus.delivery SET available_at = $3 "
				   "WHERE sub_id OPERATOR(pg_catalog.=) $1 AND token OPERATOR(pg_catalog.=) $2 "
				   "AND state OPERATOR(pg_catalog.=) 'leased'",
				   3, ttypes);
		if (SPI_execute_plan(ExtendTokenPlan, targs, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "eventbus: could not extend leases");
		(void) ForLeasedBatches(sub, NULL, 0, true, tok, ExtendEvents, &ea);
	}
	EbConsumeEnd(&save);
	PG_RETURN_INT32(n);
}

PG_FUNCTION_INFO_V1(eventbus_ack_ids);

/*
 * SQL eventbus._ack_ids(sub_id, event_ids) of version 0.1.0, kept so that
 * its install script still loads with this library (the upgrade test, a
 * database not updated yet): deletes the leased deliveries of the events.
 * ALTER EXTENSION eventbus UPDATE drops the SQL function.
 */
Datum
eventbus_ack_ids(PG_FUNCTION_ARGS)
{
	Oid			types[2] = {INT4OID, INT8ARRAYOID};
	Datum		args[2];
	int			n;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_INT32(0);
	args[0] = PG_GETARG_DATUM(0);
	args[1] = PG_GETARG_DATUM(1);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("DELETE FROM eventbus.delivery "
							  "WHERE sub_id OPERATOR(pg_catalog.=) $1 "
							  "AND event_id OPERATOR(pg_catalog.=) ANY ($2) "
							  "AND state OPERATOR(pg_catalog.=) 'leased'",
							  2, types, args, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "eventbus: could not ack deliveries");
	n = (int) SPI_processed;
	SPI_finish();
	PG_RETURN_INT32(n);
}
