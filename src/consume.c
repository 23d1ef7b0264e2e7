/*-------------------------------------------------------------------------
 *
 * consume.c
 *	  The consuming hot path in C: poll, ack, nack and extend_lease.
 *
 * A subscription's events reach a poller in two ways (batch.c says how
 * they get there):
 *
 *	 - batches (eventbus.batch): slices of the stream cut ahead, one row
 *	   each. poll claims whole batches with the equivalent of FOR UPDATE
 *	   SKIP LOCKED, in batch order, inside the caller's transaction, and
 *	   marks them leased with one row update each; ack flips bits of the
 *	   batch and deletes it when every event of it is done (one row
 *	   change). Pollers that keep their transaction open hold the batches
 *	   they claimed and nothing else: the next poller takes the next batch
 *	   at once, and a rollback makes a batch claimable again at once.
 *	 - deliveries (eventbus.delivery): events that need state of their
 *	   own: waiting for a retry (nack) or a delay, queued behind their key
 *	   (ordered subscriptions), leased one by one from those, or dead.
 *
 * poll hands out due deliveries first (retries before new events), then
 * claims batches: first those whose lease ran out (handed out again with
 * attempt + 1, but for the events already acked; at max_attempts their
 * events become dead letters), then ready ones. A batch larger than what
 * the poll may still return is split: the poll takes the first part, the
 * rest becomes a ready batch when the poll's transaction commits.
 *
 * When it finds nothing, poll asks the database's background worker to
 * cut now and waits for that cut to commit (a few milliseconds). Without a
 * worker it cuts itself, holding the subscription's cursor until it
 * commits: then only one poller at a time takes new events (the degraded
 * mode of docs/consuming.md).
 *
 * Every lease carries a token, returned by poll: ack, nack and
 * extend_lease given the token end or extend only that lease, so a
 * consumer whose lease ran out cannot finish an event already handed to
 * another (late acks are safe). Without the token they act on the
 * current lease, whoever holds it.
 *
 * Locking: batch and delivery rows are tuple-locked before they change:
 * claimed without waiting (skipped when another transaction holds them),
 * acked, nacked and extended waiting for the holder, as an UPDATE would.
 * Under REPEATABLE READ or SERIALIZABLE a row changed by a transaction
 * that committed after the snapshot raises a serialization failure
 * (40001), as an UPDATE does.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "batch.h"
#include "cut.h"
#include "sub.h"
#include "launcher.h"
#include "notify.h"
#include "stats.h"
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

/* eventbus.cut_by_poll: poll cuts itself, as without the worker (testing). */
static bool eb_cut_by_poll = false;

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

/* Sorts int64 ids. */
static int
CompareIds(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return (x > y) - (x < y);
}

/* The non-NULL ids of a one-dimensional bigint[], sorted, without duplicates. */
static int64 *
SortedIds(ArrayType *arr, int *count)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			m = 0;
	int64	   *ids;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("event_ids must be a one-dimensional array"),
				 errhint("Pass e.g. array_agg(event_id) of the events poll returned.")));
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

/* Whether a sorted id array holds an id. */
static bool
HasId(const int64 *ids, int n, int64 id)
{
	return n > 0 && bsearch(&id, ids, n, sizeof(int64), CompareIds) != NULL;
}

/* Raises 22023 unless an interval (NULL: none) is positive and at most a day. */
static void
CheckLease(const char *what, Interval *lease)
{
	Interval	day = {0};
	Interval	zero = {0};

	day.day = 1;
	if (lease == NULL ||
		DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(lease),
										  IntervalPGetDatum(&day))) > 0 ||
		DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(lease),
										  IntervalPGetDatum(&zero))) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a positive interval of at most %s: \"%s\"", what,
						DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(&day))),
						lease ? DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(lease))) : "<NULL>"),
				 errhint("Pass e.g. '30 seconds'.")));
}

/* now + an interval. */
static TimestampTz
AddInterval(TimestampTz t, Interval *iv)
{
	return DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
												   TimestampTzGetDatum(t),
												   IntervalPGetDatum(iv)));
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

/*
 * The batches this backend claimed lately: ack, nack and extend_lease of
 * a consumer that polled in the same session find them by primary key
 * instead of scanning the subscription's batches. Only a hint: the rows
 * are locked and checked again, and events not found through it are
 * looked for by a scan.
 */
#define EB_CLAIM_CACHE		1024

typedef struct ClaimRec
{
	int32		sub_id;
	int64		batch_id;
	int64		token;
} ClaimRec;

static ClaimRec Claims[EB_CLAIM_CACHE];
static int64 NClaims = 0;		/* records ever made (the ring's next slot: % size) */

/* The last polls of this backend: their token and their claims' span in the ring. */
#define EB_RECENT_POLLS		8

static struct
{
	int64		token;
	int64		start;
	int64		end;
}			RecentPolls[EB_RECENT_POLLS];
static int	NRecentPolls = 0;

/* Remembers a batch this backend claimed. */
static void
RememberClaim(int32 sub_id, int64 batch_id, int64 token)
{
	ClaimRec   *r = &Claims[NClaims++ % EB_CLAIM_CACHE];
	int			last = (NRecentPolls + EB_RECENT_POLLS - 1) % EB_RECENT_POLLS;

	/* The poll's span of claims, for ack_lease / ack by token alone. */
	if (RecentPolls[last].token != token)
	{
		last = NRecentPolls++ % EB_RECENT_POLLS;
		RecentPolls[last].token = token;
		RecentPolls[last].start = NClaims - 1;
	}
	RecentPolls[last].end = NClaims;

	r->sub_id = sub_id;
	r->batch_id = batch_id;
	r->token = token;
}

/* ---- deliveries: events with state of their own ---- */

static SPIPlanPtr DuePlan = NULL;
static SPIPlanPtr LeaseDuePlan = NULL;
static SPIPlanPtr DeadDuePlan = NULL;
static SPIPlanPtr DropDuePlan = NULL;

/* A bigint[] of ids. */
static Datum
IdArray(const int64 *ids, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int64GetDatum(ids[i]);
	return PointerGetDatum(construct_array(d, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * Whether the subscription may have a delivery due now: a look at the
 * index of due deliveries, so that the common case (none) costs no query.
 */
static bool
AnyDue(Poll *p)
{
	Relation	rel = table_open(EbRelid("delivery"), AccessShareLock);
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
		args[1] = IdArray(lease_ids, nlease);
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
		args[1] = IdArray(dead_ids, ndead);
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
		args[1] = IdArray(drop_ids, ndrop);
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
		RememberClaim(b.sub_id, b.batch_id, p->token);
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
 */
static bool
CutNow(Poll *p, int want, uint64 seen_epoch)
{
	uint64		seq;
	bool		caught_up;

	if (eb_cut_by_poll)
		return EbCut(p->sub, PollLog(p), Max(want, 1), EB_SELF_CUT_MAX, &caught_up) > 0;
	if (EbWorkerRunning() && EbNotifyCutEpoch(p->sub->id) >= EbCutEpoch())
		return EbNotifyCutEpoch(p->sub->id) != seen_epoch;	/* a cut committed since our snapshot */
	seq = EbWorkerRequestCut();
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

/* A fresh snapshot (READ COMMITTED) that also sees this transaction's own writes. */
static void
NewSnapshot(bool pop)
{
	CommandCounterIncrement();
	if (pop)
		PopActiveSnapshot();
	PushActiveSnapshot(GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();
}

/* Acks every event still leased under a lease token (poll's ack_lease). */
static int	AckBatches(EbSub *sub, const int64 *ids, int nids, bool has_token, int64 token);
static int	AckDeliveries(EbSub *sub, const int64 *ids, int nids, bool has_token, int64 token);

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

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("subscription \"%s\" does not exist", "(null)"),
				 errhint("Create it with eventbus.subscribe(name, patterns); list them in eventbus.subscriptions.")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	EbCheckOrigin();			/* before reading the clock */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	NewSnapshot(false);
	p.sub = EbSubByName(name);
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
		CheckLease("lease", lease);
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
			deadline = AddInterval(GetCurrentTimestamp(), wait);
	}

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	p.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	p.token = NewToken();
	if (!PG_ARGISNULL(4))
	{
		AckBatches(p.sub, NULL, 0, true, PG_GETARG_INT64(4));
		AckDeliveries(p.sub, NULL, 0, true, PG_GETARG_INT64(4));
		NewSnapshot(true);
	}

	for (;;)
	{
		uint64		seen = 0;
		uint64		seen_epoch;

		/* "Polled now", before looking: a later notification is not held back. */
		EbNotifyPolled(p.sub->id, max_events);
		EbStatsPolled(p.sub->id);
		if (deadline != 0)
			seen = EbWakeCount();	/* before looking: no wake-up is missed */
		/* Before the snapshot: a cut that commits after it is noticed. */
		seen_epoch = EbNotifyCutEpoch(p.sub->id);
		NewSnapshot(true);
		p.now = GetCurrentTimestamp();
		p.until = AddInterval(p.now, lease ? lease : &p.sub->lease);
		p.room = max_events;
		if (!p.sub->paused)
		{
			TakeDue(&p);
			if (p.room > 0)
				ClaimBatches(&p);
			if (p.room > 0 && CutNow(&p, max_events, seen_epoch))
			{
				/* What the cut made: batches, and deliveries due now. */
				NewSnapshot(true);
				p.now = GetCurrentTimestamp();
				p.until = AddInterval(p.now, lease ? lease : &p.sub->lease);
				TakeDue(&p);
				if (p.room > 0)
					ClaimBatches(&p);
			}
		}
		if (p.got > 0 || deadline == 0 || GetCurrentTimestamp() >= deadline)
			break;
		/* Sleep until a commit makes something pollable, something falls due, or the deadline. */
		EbWakeWait(seen, NextDue(&p, deadline));
		NewSnapshot(true);
		p.sub = EbSubByName(name);	/* paused or changed meanwhile */
	}
	CountExpired(p.sub->id, p.expired);
	EbStatsCountSub(p.sub->id, EB_SUB_DELIVERED, p.delivered);
	EbStatsCountSub(p.sub->id, EB_SUB_RETRIED, p.retried);
	EbStatsObserveAcc(p.sub->id, EB_HIST_DELIVERY, &p.first);
	/* Stopped at max_events: other waiting pollers may find the rest. */
	if (p.room <= 0)
		EbWakeSub(p.sub->id);
	/* Should this transaction end after its leases, or roll back, others are told. */
	if (p.got > 0)
		EbWakeDueAt(p.sub->id, p.until);
	if (p.log != NULL)
		EbLogClose(p.log);
	PopActiveSnapshot();
	SPI_finish();
	return (Datum) 0;
}

/* ---- ack ---- */

/*
 * Acks the subscription's leased deliveries of the ids (all leased under
 * the token when ids is NULL). Returns how many.
 */
static int
AckDeliveries(EbSub *sub, const int64 *ids, int nids, bool has_token, int64 token)
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
	rel = table_open(EbRelid("delivery"), RowExclusiveLock);
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
			!HasId(ids, nids, DatumGetInt64(slot_getattr(slot, EB_DLV_EVENT_ID, &isnull))))
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
			at = bsearch(&b.ids[i], w->ids, w->nids, sizeof(int64), CompareIds);
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

/* Whether every batch claimed under a token is among the remembered claims. */
static bool
ClaimsComplete(int64 token)
{
	for (int i = 0; i < EB_RECENT_POLLS; i++)
		if (RecentPolls[i].token == token)
			return RecentPolls[i].end - RecentPolls[i].start <= EB_CLAIM_CACHE &&
				NClaims - RecentPolls[i].start <= EB_CLAIM_CACHE;
	return false;
}

static int
ForLeasedBatches(EbSub *sub, const int64 *ids, int nids, bool has_token, int64 token,
				 BatchEventsFn fn, void *arg)
{
	EbBatchRel	br;
	IndexScanDesc scan;
	LeasedWalk	w = {0};
	ScanKeyData keys[2];

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
	for (int k = NClaims - 1; k >= 0 && k >= NClaims - EB_CLAIM_CACHE; k--)
	{
		ClaimRec   *r = &Claims[k % EB_CLAIM_CACHE];

		if (r->sub_id != sub->id || (has_token && r->token != token) || LookedAt(&w, r->batch_id))
			continue;
		if (ids != NULL && w.nfound == nids)
			break;
		ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(sub->id));
		ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(r->batch_id));
		scan = index_beginscan(br.rel, br.index, GetActiveSnapshot(), 2, 0);
		index_rescan(scan, keys, 2, NULL, 0);
		if (index_getnext_slot(scan, ForwardScanDirection, br.slot))
			VisitBatch(&w, &br);
		index_endscan(scan);
	}

	/* The rest: every batch of the subscription. */
	if (ids != NULL ? w.nfound < nids : !(has_token && ClaimsComplete(token)))
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
static int
AckBatches(EbSub *sub, const int64 *ids, int nids, bool has_token, int64 token)
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

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("subscription \"%s\" does not exist", "(null)")));
	if (PG_ARGISNULL(1) && !has_token)
		PG_RETURN_INT32(0);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	NewSnapshot(false);
	sub = EbSubByName(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	if (!PG_ARGISNULL(1))
		ids = SortedIds(PG_GETARG_ARRAYTYPE_P(1), &nids);
	n = AckDeliveries(sub, ids, nids, has_token, token);
	n += AckBatches(sub, ids, nids, has_token, token);
	if (sub->ordered && n > 0)
		EbWakeSub(sub->id);		/* the next event of each key is pollable now */
	PopActiveSnapshot();
	SPI_finish();
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
	na->dead = b->attempt >= na->sub->max_attempts;
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
		proto.available_at = na->retry_in ? AddInterval(now, na->retry_in) :
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
 * SQL eventbus.nack(subscription, event_id, error, retry_in, lease_token):
 * gives a leased event back: 'retry' after the backoff (or retry_in), or
 * 'dead' at max_attempts.
 */
Datum
eventbus_nack(PG_FUNCTION_ARGS)
{
	EbSub	   *sub;
	int64		id;
	char	   *error = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	Interval   *retry_in = PG_ARGISNULL(3) ? NULL : PG_GETARG_INTERVAL_P(3);
	bool		has_token = !PG_ARGISNULL(4);
	int64		token = has_token ? PG_GETARG_INT64(4) : 0;
	Oid			types[3] = {INT4OID, INT8OID, INT8OID};
	Datum		args[3];
	char		nulls[3] = {' ', ' ', ' '};
	NackArg		na = {0};
	char	   *result;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("subscription \"%s\" does not exist", "(null)")));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	NewSnapshot(false);
	sub = EbSubByName(text_to_cstring(PG_GETARG_TEXT_PP(0)));
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

		na.dead = attempt >= sub->max_attempts;
		na.at = na.dead ? now : retry_in ? AddInterval(now, retry_in) : now + EbBackoff(sub, attempt);
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
	PopActiveSnapshot();
	SPI_finish();
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

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("subscription \"%s\" does not exist", "(null)")));
	lease = PG_ARGISNULL(2) ? NULL : PG_GETARG_INTERVAL_P(2);
	CheckLease("lease", lease);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	NewSnapshot(false);
	sub = EbSubByName(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	if (PG_ARGISNULL(1))
	{
		PopActiveSnapshot();
		SPI_finish();
		PG_RETURN_INT32(0);
	}
	ids = SortedIds(PG_GETARG_ARRAYTYPE_P(1), &nids);
	ea.until = AddInterval(GetCurrentTimestamp(), lease);

	/* The events named: deliveries of their own, then batches. */
	EbKeepPlan(&ExtendPlan,
			   "UPDATE eventbus.delivery SET available_at = $3 "
			   "WHERE sub_id OPERATOR(pg_catalog.=) $1 AND event_id OPERATOR(pg_catalog.=) ANY ($2) "
			   "AND state OPERATOR(pg_catalog.=) 'leased' AND ($4 IS NULL OR token OPERATOR(pg_catalog.=) $4) "
			   "RETURNING token",
			   4, types);
	args[0] = Int32GetDatum(sub->id);
	args[1] = IdArray(ids, nids);
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
	NewSnapshot(true);
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
	PopActiveSnapshot();
	SPI_finish();
	PG_RETURN_INT32(n);
}

/* Defines the setting of the consuming functions. */
void
EbConsumeInit(void)
{
	DefineCustomBoolVariable("eventbus.cut_by_poll",
							 "Pollers cut new events into batches themselves instead of asking the background worker.",
							 "As without the worker: one poller at a time takes new events. For testing that mode.",
							 &eb_cut_by_poll,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);
}
