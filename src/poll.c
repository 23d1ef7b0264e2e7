/*-------------------------------------------------------------------------
 *
 * poll.c
 *	  eventbus.poll: due deliveries first, then batches claimed without
 *	  waiting (consume.c says how the pieces fit).
 *
 * Locking: due deliveries and batches are claimed with the equivalent of
 * FOR UPDATE SKIP LOCKED: another transaction's are skipped, never waited
 * for. Without the worker, the cut (cut.c) holds the cursor row.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "batch.h"
#include "consume.h"
#include "cut.h"
#include "launcher.h"
#include "notify.h"
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

/* How long a poll waits for the worker's cut before it cuts itself. */
#define EB_CUT_WAIT_MS		2000

/* Events a poll without the worker reads from the log per cut, at most. */
#define EB_SELF_CUT_MAX		20000

/* The columns poll returns. */
#define POLL_NCOLS			9

/* What one call of poll is doing. */
typedef struct Poll
{
	EbSub	   *sub;
	ReturnSetInfo *rsinfo;
	EbLog	   *log;			/* opened when first needed */
	int			room;			/* events it may still hand out */
	int			got;
	bool		more;			/* more events are cut (or being cut) than it took */
	TimestampTz now;
	TimestampTz until;			/* lease end */
	int64		token;
	int64		expired;		/* not handed out: ttl ran out */
	int64		delivered;		/* counted for the stats at the end */
	int64		retried;
	EbHistAcc	first;			/* deliverable -> first handed out */
	int32		topic_id;		/* the last topic emitted, and its name */
	Datum		topic;
} Poll;

/* A new lease token: random, never 0. */
static int64
NewToken(void)
{
	int64		t;

	do
		t = (int64) (pg_prng_uint64(&pg_global_prng_state) >> 1);
	while (t == 0);
	return t;
}

/* The log, opened once per call. */
static EbLog *
PollLog(Poll *p)
{
	if (p->log == NULL)
		p->log = EbLogOpen();
	return p->log;
}

/* Records events that expired before they were handed out (eventbus.expiry). */
static void
CountExpired(int32 sub_id, int64 n)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {INT4OID, INT8OID};
	Datum		args[2] = {Int32GetDatum(sub_id), Int64GetDatum(n)};

	if (n <= 0)
		return;
	EbKeepPlan(&plan, "INSERT INTO eventbus.expiry (sub_id, n) VALUES ($1, $2)", 2, types);
	if (SPI_execute_plan(plan, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "eventbus: could not count expired events");
	EbStatsCountSub(sub_id, EB_SUB_EXPIRED, n);
}

/* Emits one event as a row of poll's result. */
static void
EmitEvent(Poll *p, TupleTableSlot *slot, int32 attempt)
{
	Datum		values[POLL_NCOLS];
	bool		nulls[POLL_NCOLS] = {0};
	bool		isnull;
	const char *topic;

	int32		topic_id;

	values[0] = slot_getattr(slot, EB_LOG_ID, &isnull);
	topic_id = DatumGetInt32(slot_getattr(slot, EB_LOG_TOPIC_ID, &isnull));
	/* Events of one batch mostly share a topic: its text is made once. */
	if (p->topic == (Datum) 0 || topic_id != p->topic_id)
	{
		topic = EbTopicName(topic_id);
		p->topic_id = topic_id;
		p->topic = topic ? CStringGetTextDatum(topic) : (Datum) 0;
	}
	values[1] = p->topic;
	nulls[1] = p->topic == (Datum) 0;
	values[2] = slot_getattr(slot, EB_LOG_KEY, &nulls[2]);
	values[3] = slot_getattr(slot, EB_LOG_PAYLOAD, &nulls[3]);
	values[4] = slot_getattr(slot, EB_LOG_HEADERS, &nulls[4]);
	values[5] = slot_getattr(slot, EB_LOG_PUBLISHED_AT, &nulls[5]);
	values[6] = Int32GetDatum(attempt);
	values[7] = TimestampTzGetDatum(p->until);
	values[8] = Int64GetDatum(p->token);
	tuplestore_putvalues(p->rsinfo->setResult, p->rsinfo->setDesc, values, nulls);
	p->got++;
	p->room--;
}

/* Whether an event's ttl ran out. */
static bool
Expired(TupleTableSlot *slot, TimestampTz now)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, EB_LOG_EXPIRES_AT, &isnull);

	return !isnull && DatumGetTimestampTz(d) <= now;
}

/* When an event could first be handed out: published, or deliver_at. */
static TimestampTz
Deliverable(TupleTableSlot *slot)
{
	bool		isnull;
	TimestampTz t = DatumGetTimestampTz(slot_getattr(slot, EB_LOG_PUBLISHED_AT, &isnull));
	Datum		d = slot_getattr(slot, EB_LOG_DELIVER_AT, &isnull);

	return isnull ? t : Max(t, DatumGetTimestampTz(d));
}

/* Counts one event handed out for the stats (not a retry: its first delivery). */
static void
CountDelivered(Poll *p, TupleTableSlot *slot, int32 attempt, bool retry)
{
	p->delivered++;
	if (retry)
		p->retried++;
	else
		EbHistAdd(&p->first, (double) (p->now - Deliverable(slot)) / USECS_PER_SEC);
}

/* ---- deliveries: events with state of their own ---- */

static SPIPlanPtr DuePlan = NULL;
static SPIPlanPtr LeaseDuePlan = NULL;
static SPIPlanPtr DeadDuePlan = NULL;
static SPIPlanPtr DropDuePlan = NULL;

/*
 * Whether the subscription may have a delivery due now: a look at the
 * index of due deliveries, so that the common case (none) costs no query.
 */
static bool
AnyDue(Poll *p)
{
	Relation	rel = EbTableOpen(EbRelid("delivery"), AccessShareLock);
	Relation	index = index_open(EbRelid("delivery_due_idx"), AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	ScanKeyData keys[2];
	IndexScanDesc scan;
	bool		any;

	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(p->sub->id));
	ScanKeyInit(&keys[1], 2, BTLessEqualStrategyNumber, F_TIMESTAMPTZ_LE, TimestampTzGetDatum(p->now));
	scan = index_beginscan(rel, index, GetActiveSnapshot(), 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);
	any = index_getnext_slot(scan, ForwardScanDirection, slot);
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	table_close(rel, AccessShareLock);
	return any;
}

/*
 * Hands out the due deliveries: waiting ones whose time has come and
 * expired leases; of an ordered subscription only the first of each key.
 */
static void
TakeDue(Poll *p)
{
	Oid			types[5] = {INT4OID, TIMESTAMPTZOID, BOOLOID, INT4OID};
	Datum		args[5];
	uint64		n;
	SPITupleTable *tt;
	int64	   *lease_ids,
			   *dead_ids,
			   *drop_ids;
	int			nlease = 0,
				ndead = 0,
				ndrop = 0;

	if (!AnyDue(p))
		return;
	EbKeepPlan(&DuePlan,
		 "SELECT dl.event_id, dl.txid, dl.state, dl.attempt, dl.reason "
		 "  FROM eventbus.delivery dl "
		 " WHERE dl.sub_id OPERATOR(pg_catalog.=) $1 AND dl.state OPERATOR(pg_catalog.<>) 'dead' "
		 "   AND dl.available_at OPERATOR(pg_catalog.<=) $2 "
		 "   AND (NOT $3 OR dl.key IS NULL "
		 "        OR NOT EXISTS (SELECT 1 FROM eventbus.delivery k "
		 "                        WHERE k.sub_id OPERATOR(pg_catalog.=) dl.sub_id "
		 "                          AND k.key OPERATOR(pg_catalog.=) dl.key "
		 "                          AND k.state OPERATOR(pg_catalog.<>) 'dead' "
		 "                          AND k.event_id OPERATOR(pg_catalog.<>) dl.event_id "
		 "                          AND (k.ord OPERATOR(pg_catalog.<) dl.ord "
		 "                               OR k.state OPERATOR(pg_catalog.=) 'leased'))) "
		 " ORDER BY dl.available_at, dl.event_id LIMIT $4 "
		 "   FOR UPDATE OF dl SKIP LOCKED",
		 4, types);
	args[0] = Int32GetDatum(p->sub->id);
	args[1] = TimestampTzGetDatum(p->now);
	args[2] = BoolGetDatum(p->sub->ordered);
	args[3] = Int32GetDatum(p->room);
	if (SPI_execute_plan(DuePlan, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "eventbus: could not read the due deliveries");
	n = SPI_processed;
	if (n == 0)
		return;
	tt = SPI_tuptable;
	lease_ids = palloc(sizeof(int64) * n);
	dead_ids = palloc(sizeof(int64) * n);
	drop_ids = palloc(sizeof(int64) * n);
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull));
		uint64		txid = U64FromFullTransactionId(DatumGetFullTransactionId(SPI_getbinval(tt->vals[i], tt->tupdesc, 2, &isnull)));
		char	   *state = TextDatumGetCString(SPI_getbinval(tt->vals[i], tt->tupdesc, 3, &isnull));
		int32		attempt = DatumGetInt32(SPI_getbinval(tt->vals[i], tt->tupdesc, 4, &isnull));
		Datum		reason = SPI_getbinval(tt->vals[i], tt->tupdesc, 5, &isnull);
		bool		redriven = !isnull && strcmp(TextDatumGetCString(reason), "redriven") == 0;
		TupleTableSlot *slot;

		if (strcmp(state, "leased") == 0 && attempt >= p->sub->max_attempts)
		{
			dead_ids[ndead++] = id; /* its last lease ran out */
			continue;
		}
		slot = EbLogFetch(PollLog(p), txid, id);
		if (slot == NULL || Expired(slot, p->now))
		{
			drop_ids[ndrop++] = id;
			continue;
		}
		lease_ids[nlease++] = id;
		EmitEvent(p, slot, attempt + 1);
		CountDelivered(p, slot, attempt + 1, attempt > 0 || redriven);
	}
	if (nlease > 0)
	{
		Oid			ltypes[5] = {INT4OID, INT8ARRAYOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID};

		EbKeepPlan(&LeaseDuePlan,
			 "UPDATE eventbus.delivery SET state = 'leased', attempt = attempt OPERATOR(pg_catalog.+) 1, "
			 "available_at = $3, leased_at = $4, token = $5 "
			 "WHERE sub_id OPERATOR(pg_catalog.=) $1 AND event_id OPERATOR(pg_catalog.=) ANY ($2)",
			 5, ltypes);
		args[0] = Int32GetDatum(p->sub->id);
		args[1] = EbIdArray(lease_ids, nlease);
		args[2] = TimestampTzGetDatum(p->until);
		args[3] = TimestampTzGetDatum(p->now);
		args[4] = Int64GetDatum(p->token);
		if (SPI_execute_plan(LeaseDuePlan, args, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "eventbus: could not lease deliveries");
	}
	if (ndead > 0)
	{
		Oid			dtypes[3] = {INT4OID, INT8ARRAYOID, TIMESTAMPTZOID};

		EbKeepPlan(&DeadDuePlan,
			 "UPDATE eventbus.delivery SET state = 'dead', reason = 'lease_expired', dead_at = $3, "
			 "last_error = pg_catalog.coalesce(last_error, 'lease expired') "
			 "WHERE sub_id OPERATOR(pg_catalog.=) $1 AND event_id OPERATOR(pg_catalog.=) ANY ($2)",
			 3, dtypes);
		args[0] = Int32GetDatum(p->sub->id);
		args[1] = EbIdArray(dead_ids, ndead);
		args[2] = TimestampTzGetDatum(p->now);
		if (SPI_execute_plan(DeadDuePlan, args, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "eventbus: could not dead-letter deliveries");
		EbStatsCountSub(p->sub->id, EB_SUB_DEAD, ndead);
	}
	if (ndrop > 0)
	{
		Oid			xtypes[2] = {INT4OID, INT8ARRAYOID};

		EbKeepPlan(&DropDuePlan,
			 "DELETE FROM eventbus.delivery "
			 "WHERE sub_id OPERATOR(pg_catalog.=) $1 AND event_id OPERATOR(pg_catalog.=) ANY ($2)",
			 2, xtypes);
		args[0] = Int32GetDatum(p->sub->id);
		args[1] = EbIdArray(drop_ids, ndrop);
		if (SPI_execute_plan(DropDuePlan, args, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "eventbus: could not drop expired deliveries");
		p->expired += ndrop;
	}
	/* The next event of a key whose head is done is pollable now. */
	if (p->sub->ordered && (ndead > 0 || ndrop > 0))
		EbWakeSub(p->sub->id);
}

/* ---- batches ---- */

/* A lease ran out at the last attempt: the batch's open events become dead letters. */
static void
BatchToDead(Poll *p, EbBatchRel *br, EbBatch *b)
{
	int			n;
	int64	   *ids = EbBatchOpenIds(b, &n);
	EbDelivery proto = {0};

	proto.sub_id = b->sub_id;
	proto.state = "dead";
	proto.attempt = b->attempt;
	proto.available_at = p->now;
	proto.last_error = "lease expired";
	proto.reason = "lease_expired";
	proto.dead_at = p->now;
	EbBatchSpill(PollLog(p), b, ids, n, &proto);
	EbRowDelete(br->writer, &b->tid);
	EbStatsCountSub(b->sub_id, EB_SUB_DEAD, n);
}

/*
 * Claims one batch the caller locked: hands out its open events (at most
 * p->room of them; the rest split off into a ready batch) and marks it
 * leased.
 */
static void
ClaimBatch(Poll *p, EbBatchRel *br, EbBatch *b)
{
	int			nopen;
	int64	   *open = EbBatchOpenIds(b, &nopen);
	int			take = Min(nopen, p->room);
	EbBatch		claimed = *b;
	EbRangeScan *rs;
	TupleTableSlot *slot;
	int			off;
	bool		retry = b->attempt > 0;

	/* Events cut into a batch are "read" when first handed out. */
	if (b->attempt == 0)
		EbStatsCountSub(p->sub->id, EB_SUB_READ, take);

	if (take < nopen)
	{
		/* Split: the rest is a ready batch of its own (claimable at commit). */
		EbBatch		rest = *b;

		rest.batch_id = nextval_internal(EbRelid("batch_id_seq"), false);
		rest.ids = open + take;
		rest.n = nopen - take;
		rest.done = palloc0((rest.n + 7) / 8 + 1);
		rest.ndone = 0;
		rest.leased = false;
		rest.lease_until = rest.leased_at = 0;
		rest.has_token = false;
		EbBatchWrite(br->writer, &rest, false);
	}
	claimed.ids = open;
	claimed.n = take;
	claimed.done = palloc0((take + 7) / 8 + 1);
	claimed.ndone = 0;
	claimed.leased = true;
	claimed.attempt = b->attempt + 1;
	claimed.lease_until = p->until;
	claimed.leased_at = p->now;
	claimed.has_token = true;
	claimed.token = p->token;

	rs = EbRangeBegin(PollLog(p), &b->first, &b->last, open, take);
	while ((slot = EbRangeNext(rs, &off)) != NULL)
	{
		if (Expired(slot, p->now))
		{
			EbBatchSetDone(&claimed, off);
			p->expired++;
			continue;
		}
		EmitEvent(p, slot, claimed.attempt);
		CountDelivered(p, slot, claimed.attempt, retry);
	}
	EbRangeEnd(rs);
	/* Events whose chunk is gone cannot be delivered: they count as done. */
	if (claimed.ndone == claimed.n)
		EbRowDelete(br->writer, &b->tid);
	else
		EbBatchWrite(br->writer, &claimed, true);
}

/*
 * Claims batches of the subscription, in batch order (the order they were
 * cut in, so the oldest first), until the poll is full: ready ones, and
 * those whose lease ran out (then attempt + 1). Batches other
 * transactions hold are skipped, never waited for; leased ones are passed
 * over on the way (they are few: the ones consumers work on).
 */
static void
ClaimBatches(Poll *p)
{
	EbBatchRel	br;
	IndexScanDesc scan;

	EbBatchOpen(&br);
	scan = EbBatchScan(&br, p->sub->id);
	while (p->room > 0 && index_getnext_slot(scan, ForwardScanDirection, br.slot))
	{
		bool		isnull;
		bool		leased = DatumGetBool(slot_getattr(br.slot, EB_BATCH_LEASED, &isnull));
		Datum		until = slot_getattr(br.slot, EB_BATCH_LEASE_UNTIL, &isnull);
		int32		n,
					ndone;
		EbBatch		b;

		if (leased && (isnull || DatumGetTimestampTz(until) > p->now))
			continue;			/* someone works on it */
		n = ArrayGetNItems(1, ARR_DIMS(DatumGetArrayTypeP(slot_getattr(br.slot, EB_BATCH_IDS, &isnull))));
		ndone = DatumGetInt32(slot_getattr(br.slot, EB_BATCH_NDONE, &isnull));
		/* Too big for what is left: only the first claim splits a batch. */
		if (p->got > 0 && n - ndone > p->room)
			break;
		if (!EbBatchLock(&br, &br.slot->tts_tid, false))
			continue;
		EbBatchRead(br.locked, &b);
		if (b.leased && b.lease_until > p->now)
			continue;			/* claimed again meanwhile */
		if (b.leased && b.attempt >= p->sub->max_attempts)
		{
			BatchToDead(p, &br, &b);
			continue;
		}
		ClaimBatch(p, &br, &b);
		EbRememberClaim(b.sub_id, b.batch_id, p->token);
	}
	index_endscan(scan);
	EbBatchClose(&br);
}

/* ---- poll ---- */

/*
 * Makes sure what was committed before the poll started is cut into
 * batches. With the worker: when the log moved on (the cut epoch) since
 * the worker last cut this subscription to its end, asks it to cut now
 * and waits for that cut to commit. Without a worker (or when it does not
 * answer in time), cuts in this transaction. Returns whether to look again
 * (seen_epoch: the subscription's cut epoch before the poll's snapshot).
 *
 * A poll that holds events already (!wait) does neither: it only asks the
 * worker to cut, for the next poll, and returns false.
 */
static bool
CutNow(Poll *p, int want, uint64 seen_epoch, bool wait)
{
	uint64		seq;
	bool		caught_up;

	if (eb_cut_by_poll)
		return wait && EbCut(p->sub, PollLog(p), Max(want, 1), EB_SELF_CUT_MAX, &caught_up) > 0;
	if (EbWorkerRunning() && EbNotifyCutEpoch(p->sub->id) >= EbCutEpoch())
	{
		bool		committed = EbNotifyCutEpoch(p->sub->id) != seen_epoch;

		/*
		 * A cut committed since our snapshot: a waiting poll looks again;
		 * one that returns leaves its batches to the next poll, which the
		 * tick that made them may not have notified (we had not polled
		 * yet when it looked).
		 */
		if (committed && !wait)
			p->more = true;
		return wait && committed;
	}
	seq = EbWorkerRequestCut();
	if (!wait)
	{
		p->more = true;			/* the cut asked for makes batches for the next poll */
		return false;
	}
	if (seq != 0)
	{
		TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), EB_CUT_WAIT_MS);

		for (;;)
		{
			uint64		seen = EbWakeCount();

			if (EbWorkerCutDone(seq))
				return true;
			if (GetCurrentTimestamp() >= until)
				break;
			EbWakeWait(seen, until);
		}
	}
	/* Degraded mode: no worker, or it is busy. */
	return EbCut(p->sub, PollLog(p), Max(want, 1), EB_SELF_CUT_MAX, &caught_up) > 0;
}

static SPIPlanPtr NextDuePlan = NULL;

/*
 * When something of the subscription falls due next without any commit:
 * a retry or a delay, or a lease (of a delivery or a batch) that runs
 * out; "until" when nothing does before.
 */
static TimestampTz
NextDue(Poll *p, TimestampTz until)
{
	Oid			types[2] = {INT4OID, TIMESTAMPTZOID};
	Datum		args[2] = {Int32GetDatum(p->sub->id), TimestampTzGetDatum(GetCurrentTimestamp())};
	bool		isnull;
	Datum		d;

	EbKeepPlan(&NextDuePlan,
			   "SELECT least((SELECT min(available_at) FROM eventbus.delivery "
			   "               WHERE sub_id OPERATOR(pg_catalog.=) $1 AND state OPERATOR(pg_catalog.<>) 'dead' "
			   "                 AND available_at OPERATOR(pg_catalog.>) $2), "
			   "             (SELECT min(lease_until) FROM eventbus.batch "
			   "               WHERE sub_id OPERATOR(pg_catalog.=) $1 AND leased "
			   "                 AND lease_until OPERATOR(pg_catalog.>) $2))",
			   2, types);
	if (SPI_execute_plan(NextDuePlan, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "eventbus: could not read when deliveries fall due");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? until : Min(until, DatumGetTimestampTz(d));
}

PG_FUNCTION_INFO_V1(eventbus_poll);

/*
 * SQL eventbus.poll(subscription, max_events, lease, wait, ack_lease):
 * leases up to max_events events (see the file header), waiting up to
 * "wait" for them; first acks what is still leased under ack_lease.
 */
Datum
eventbus_poll(PG_FUNCTION_ARGS)
{
	char	   *name;
	int32		max_events;
	Interval   *lease = NULL;
	Interval   *wait;
	TimestampTz deadline = 0;
	Poll		p = {0};
	EbUserSave	save;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("subscription \"%s\" does not exist", "(null)"),
				 errhint("Create it with eventbus.subscribe(name, patterns); list them in eventbus.subscriptions.")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	p.sub = EbConsumeBegin(name, &save);
	EbCheckOrigin();			/* before reading the clock */
	max_events = PG_ARGISNULL(1) ? -1 : PG_GETARG_INT32(1);
	if (max_events < 1 || max_events > 10000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_events must be between 1 and 10000: %s",
						PG_ARGISNULL(1) ? "NULL" : psprintf("%d", max_events)),
				 errhint("Pass e.g. 100.")));
	if (!PG_ARGISNULL(2))
	{
		lease = PG_GETARG_INTERVAL_P(2);
		EbCheckLease("lease", lease);
	}
	wait = PG_ARGISNULL(3) ? NULL : PG_GETARG_INTERVAL_P(3);
	{
		Interval	zero = {0};
		Interval	hour = {0};

		hour.time = USECS_PER_HOUR;
		if (wait == NULL ||
			DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(wait), IntervalPGetDatum(&zero))) < 0 ||
			DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(wait), IntervalPGetDatum(&hour))) > 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("wait must be between 0 and 1 hour: \"%s\"",
							wait ? DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(wait))) : "<NULL>"),
					 errhint("Pass e.g. interval '5 seconds', or 0 not to wait.")));
		/* Waiting needs a new snapshot per look: READ COMMITTED only. */
		if (DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(wait), IntervalPGetDatum(&zero))) > 0 &&
			!IsolationUsesXactSnapshot())
			deadline = EbAddInterval(GetCurrentTimestamp(), wait);
	}

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	p.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	p.token = NewToken();
	if (!PG_ARGISNULL(4))
	{
		EbAckBatches(p.sub, NULL, 0, true, PG_GETARG_INT64(4));
		EbAckDeliveries(p.sub, NULL, 0, true, PG_GETARG_INT64(4));
		EbNewSnapshot(true);
	}

	for (;;)
	{
		uint64		seen = 0;
		uint64		seen_epoch;

		/*
		 * "Polled now", before looking: a later notification is not held
		 * back. Not with cut_by_poll: the worker would then cut for the
		 * subscription too, and the mode is to behave as without it.
		 */
		if (!eb_cut_by_poll)
			EbNotifyPolled(p.sub->id, max_events);
		EbStatsPolled(p.sub->id);
		if (deadline != 0)
			seen = EbWakeCount();	/* before looking: no wake-up is missed */
		/* Before the snapshot: a cut that commits after it is noticed. */
		seen_epoch = EbNotifyCutEpoch(p.sub->id);
		EbNewSnapshot(true);
		p.now = GetCurrentTimestamp();
		p.until = EbAddInterval(p.now, lease ? lease : &p.sub->lease);
		p.room = max_events;
		if (!p.sub->paused)
		{
			TakeDue(&p);
			if (p.room > 0)
				ClaimBatches(&p);
			/*
			 * New events may have committed since the last cut. A poll
			 * that holds events already returns them rather than wait for
			 * a cut (as a PgQ batch ends at its tick); the next poll takes
			 * the rest.
			 */
			if (p.room > 0 && CutNow(&p, max_events, seen_epoch, p.got == 0))
			{
				/* What the cut made: batches, and deliveries due now. */
				EbNewSnapshot(true);
				p.now = GetCurrentTimestamp();
				p.until = EbAddInterval(p.now, lease ? lease : &p.sub->lease);
				TakeDue(&p);
				if (p.room > 0)
					ClaimBatches(&p);
			}
		}
		if (p.got > 0 || deadline == 0 || GetCurrentTimestamp() >= deadline)
			break;
		/* Sleep until a commit makes something pollable, something falls due, or the deadline. */
		EbWakeWait(seen, NextDue(&p, deadline));
		EbNewSnapshot(true);
		{
			int32		id = p.sub->id;

			/* Paused or changed meanwhile; the right still held, the same subscription. */
			p.sub = EbSubByName(name);
			EbCheckRight(&p.sub->rights, p.sub->name, save.userid, EB_RIGHT_CONSUME);
			if (p.sub->id != id)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("subscription \"%s\" was dropped while poll waited", name),
						 errhint("It was dropped (and maybe created again) by another session; poll it again.")));
		}
	}
	CountExpired(p.sub->id, p.expired);
	EbStatsCountSub(p.sub->id, EB_SUB_DELIVERED, p.delivered);
	EbStatsCountSub(p.sub->id, EB_SUB_RETRIED, p.retried);
	EbStatsObserveAcc(p.sub->id, EB_HIST_DELIVERY, &p.first);
	/*
	 * Stopped at max_events, or returned what was ready while more is
	 * (being) cut: at commit, other waiting pollers look again and the
	 * worker notifies the subscription, so that a consumer waiting on
	 * LISTEN for it comes for the rest.
	 */
	if (p.room <= 0 || (p.more && p.got > 0))
		EbWakeSub(p.sub->id);
	/* Should this transaction end after its leases, or roll back, others are told. */
	if (p.got > 0)
		EbWakeDueAt(p.sub->id, p.until);
	if (p.log != NULL)
		EbLogClose(p.log);
	EbConsumeEnd(&save);
	return (Datum) 0;
}
