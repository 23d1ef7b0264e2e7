/*-------------------------------------------------------------------------
 *
 * consume.c
 *	  The consuming hot path in C: poll (poll.c), ack, nack and
 *	  extend_lease (ack.c), and what they share here: id arrays, leases,
 *	  snapshots, the batches this backend claimed, the setting.
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
#include "consume.h"

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
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

/* eventbus.cut_by_poll: poll cuts itself, as without the worker (testing). */
bool		eb_cut_by_poll = false;

/* Set in a relay process (relay.c): it may consume its relay's subscription. */
bool		eb_relay_process = false;

/* Sorts int64 ids. */
int
EbCompareIds(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return (x > y) - (x < y);
}

/* The non-NULL ids of a one-dimensional bigint[], sorted, without duplicates. */
int64 *
EbSortedIds(ArrayType *arr, int *count)
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

		qsort(ids, m, sizeof(int64), EbCompareIds);
		for (int i = 1; i < m; i++)
			if (ids[i] != ids[k - 1])
				ids[k++] = ids[i];
		m = k;
	}
	*count = m;
	return ids;
}

/* Whether a sorted id array holds an id. */
bool
EbHasId(const int64 *ids, int n, int64 id)
{
	return n > 0 && bsearch(&id, ids, n, sizeof(int64), EbCompareIds) != NULL;
}

/* Raises 22023 unless an interval (NULL: none) is positive and at most a day. */
void
EbCheckLease(const char *what, Interval *lease)
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
TimestampTz
EbAddInterval(TimestampTz t, Interval *iv)
{
	return DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
												   TimestampTzGetDatum(t),
												   IntervalPGetDatum(iv)));
}

/* A bigint[] of ids. */
Datum
EbIdArray(const int64 *ids, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int64GetDatum(ids[i]);
	return PointerGetDatum(construct_array(d, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* A fresh snapshot (READ COMMITTED) that also sees this transaction's own writes. */
void
EbNewSnapshot(bool pop)
{
	CommandCounterIncrement();
	if (pop)
		PopActiveSnapshot();
	PushActiveSnapshot(GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();
}

/*
 * An error text as a delivery keeps it (last_error): at most
 * EB_MAX_ERROR_BYTES, cut at a character boundary and marked.
 */
char *
EbClipError(const char *error)
{
	int			len;

	if (error == NULL)
		return NULL;
	len = strlen(error);
	if (len <= EB_MAX_ERROR_BYTES)
		return (char *) error;
	len = pg_mbcliplen(error, len, EB_MAX_ERROR_BYTES - 16);
	return psprintf("%.*s... (truncated)", len, error);
}

/*
 * The start of poll, ack, nack and extend_lease: as the extension's owner
 * (access.c), connected to SPI, with a fresh snapshot, the subscription of
 * that name, on which the caller (current_user as the function started)
 * must hold the consume right. EbConsumeEnd undoes it.
 */
EbSub *
EbConsumeBegin(const char *name, EbUserSave *save)
{
	Oid			caller = GetUserId();
	EbSub	   *sub;

	EbBecomeOwner(save);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	EbNewSnapshot(false);
	sub = EbSubByName(name);
	EbCheckRight(&sub->rights, sub->name, caller, EB_RIGHT_CONSUME);
	if (sub->relay && !eb_relay_process)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("subscription \"%s\" is a relay: only its relay process consumes it", sub->name),
				 errhint("Read its events from the sink, or subscribe under another name to consume them here.")));
	return sub;
}

void
EbConsumeEnd(const EbUserSave *save)
{
	PopActiveSnapshot();
	SPI_finish();
	EbRestoreUser(save);
}

/*
 * The batches this backend claimed lately: ack, nack and extend_lease of
 * a consumer that polled in the same session find them by primary key
 * instead of scanning the subscription's batches. Only a hint: the rows
 * are locked and checked again, and events not found through it are
 * looked for by a scan.
 */
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
void
EbRememberClaim(int32 sub_id, int64 batch_id, int64 token)
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

/*
 * The ids of the batches of a subscription this backend claimed lately
 * (under the token, if given), newest first; returns how many (at most max).
 */
int
EbRecentClaims(int32 sub_id, bool has_token, int64 token, int64 *batch_ids, int max)
{
	int			n = 0;

	for (int64 k = NClaims - 1; k >= 0 && k >= NClaims - EB_CLAIM_CACHE && n < max; k--)
	{
		ClaimRec   *r = &Claims[k % EB_CLAIM_CACHE];

		if (r->sub_id == sub_id && (!has_token || r->token == token))
			batch_ids[n++] = r->batch_id;
	}
	return n;
}

/* Whether every batch claimed under a token is among the remembered claims. */
bool
EbClaimsComplete(int64 token)
{
	for (int i = 0; i < EB_RECENT_POLLS; i++)
		if (RecentPolls[i].token == token)
			return RecentPolls[i].end - RecentPolls[i].start <= EB_CLAIM_CACHE &&
				NClaims - RecentPolls[i].start <= EB_CLAIM_CACHE;
	return false;
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
