/*-------------------------------------------------------------------------
 *
 * tick.c
 *	  The notifications of one tick of the database's worker: which
 *	  subscriptions have something new, and when to look again.
 *
 * A subscription that is not paused is notified (NOTIFY eventbus_<name>)
 * when, since the previous tick:
 *
 *	 - an event committed on a topic one of its patterns matches (the
 *	   topics of the tick's window, read by the worker: window.c);
 *	 - one of its deliveries (a retry, a delayed event, a delivery lease)
 *	   fell due, or one of its batch leases ended;
 *	 - a committed transaction named it (a kick: a poll that filled
 *	   max_events, or returned what was ready while more was being cut; a
 *	   seek, an alter, a rollback of a poll), or named all.
 *
 * At the first tick every subscription is notified. notify.c decides
 * whether a subscription needs the NOTIFY (not again until it was polled).
 * The tick then knows when the next delivery falls due or batch lease
 * ends, so the worker wakes up for it.
 *
 * This runs at every tick, so in C with plans prepared once: the
 * subscriptions are few and read by index; deliveries and batch leases
 * that fell due are found by their indexes on the due time.
 *
 * Locking: what the queries take (AccessShareLock); Async_Notify queues the
 * notifications, which go out when the tick's transaction commits.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "notify.h"
#include "sub.h"
#include "tick.h"

#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

static SPIPlanPtr SubsPlan = NULL;
static SPIPlanPtr DuePlan = NULL;
static SPIPlanPtr LeasesPlan = NULL;
static SPIPlanPtr NextDuePlan = NULL;

/* Prepares a query once, with a generic plan: ticks do not plan again. */
static SPIPlanPtr
KeepGenericPlan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare_cursor(sql, nargs, types, CURSOR_OPT_GENERIC_PLAN);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "eventbus: could not prepare \"%s\": %s", sql,
				 SPI_result_code_string(SPI_result));
		*plan = p;
	}
	return *plan;
}

/* Whether id is among ids[0 .. n-1]. */
static bool
Contains(const int32 *ids, int n, int32 id)
{
	for (int i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

/* Appends the first column (int4) of the rows SPI returned to ids[*n ...]. */
static int32 *
AppendIds(int32 *ids, int *n)
{
	ids = ids == NULL ? palloc(sizeof(int32) * Max(SPI_processed, 1))
		: repalloc(ids, sizeof(int32) * (*n + SPI_processed));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		ids[(*n)++] = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
	}
	return ids;
}

/*
 * The subscriptions with a delivery that fell due, or a batch lease that
 * ended, in (prev_at, tick_at]; a subscription may come twice.
 */
static int32 *
DueSubs(TimestampTz prev_at, TimestampTz tick_at, int *n)
{
	Oid			types[2] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		args[2] = {TimestampTzGetDatum(prev_at), TimestampTzGetDatum(tick_at)};
	int32	   *ids = NULL;

	*n = 0;
	KeepGenericPlan(&DuePlan,
					"SELECT s.id FROM eventbus.subscription s "
					" WHERE EXISTS (SELECT 1 FROM eventbus.delivery d "
					"                WHERE d.sub_id OPERATOR(pg_catalog.=) s.id "
					"                  AND d.state OPERATOR(pg_catalog.<>) 'dead' "
					"                  AND d.available_at OPERATOR(pg_catalog.>) $1 "
					"                  AND d.available_at OPERATOR(pg_catalog.<=) $2)",
					2, types);
	if (SPI_execute_plan(DuePlan, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "eventbus: could not read which deliveries fell due");
	ids = AppendIds(ids, n);
	KeepGenericPlan(&LeasesPlan,
					"SELECT b.sub_id FROM eventbus.batch b "
					" WHERE b.leased AND b.lease_until OPERATOR(pg_catalog.>) $1 "
					"   AND b.lease_until OPERATOR(pg_catalog.<=) $2",
					2, types);
	if (SPI_execute_plan(LeasesPlan, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "eventbus: could not read which batch leases ended");
	return AppendIds(ids, n);
}

/* When the next delivery of a subscription that is not paused falls due, or batch lease ends; 0: none. */
static TimestampTz
NextDue(TimestampTz tick_at)
{
	Oid			types[1] = {TIMESTAMPTZOID};
	Datum		args[1] = {TimestampTzGetDatum(tick_at)};
	bool		isnull;
	Datum		d;

	KeepGenericPlan(&NextDuePlan,
					"SELECT least("
					" (SELECT pg_catalog.min(q.t) FROM eventbus.subscription s "
					"   CROSS JOIN LATERAL (SELECT d.available_at AS t FROM eventbus.delivery d "
					"                        WHERE d.sub_id OPERATOR(pg_catalog.=) s.id "
					"                          AND d.state OPERATOR(pg_catalog.<>) 'dead' "
					"                          AND d.available_at OPERATOR(pg_catalog.>) $1 "
					"                        ORDER BY d.available_at LIMIT 1) q "
					"  WHERE NOT s.paused), "
					" (SELECT pg_catalog.min(b.lease_until) FROM eventbus.batch b "
					"   WHERE b.leased AND b.lease_until OPERATOR(pg_catalog.>) $1))",
					1, types);
	if (SPI_execute_plan(NextDuePlan, args, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "eventbus: could not read when deliveries fall due");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetTimestampTz(d);
}

/*
 * Sends the tick's notifications (at commit) and fills in the result. In
 * the tick's transaction, inside SPI, with a snapshot. prev_at is the
 * previous tick's time, 0 at the first tick.
 */
void
EbTickNotify(TimestampTz prev_at, const int32 *kicks, int nkicks, bool kick_all,
			 const int32 *topics, int ntopics, EbTickResult *res)
{
	int32	   *due = NULL;
	int			ndue = 0;
	int32	   *ids;
	uint64		n;

	res->tick_at = GetCurrentTimestamp();
	res->notified = 0;
	res->next_due = 0;

	KeepGenericPlan(&SubsPlan, "SELECT id FROM eventbus.subscription WHERE NOT paused ORDER BY name",
					0, NULL);
	if (SPI_execute_plan(SubsPlan, NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "eventbus: could not list the subscriptions");
	n = SPI_processed;
	if (n == 0)
		return;					/* nobody to notify: the snapshot is all this tick keeps */
	ids = palloc(sizeof(int32) * n);
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;

		ids[i] = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
	}
	if (prev_at != 0)
		due = DueSubs(prev_at, res->tick_at, &ndue);

	for (uint64 i = 0; i < n; i++)
	{
		bool		wanted = prev_at == 0 || kick_all || Contains(kicks, nkicks, ids[i]) ||
			Contains(due, ndue, ids[i]);
		EbSub	   *sub = NULL;

		if (!wanted && ntopics > 0)
		{
			sub = EbSubById(ids[i]);
			for (int t = 0; sub != NULL && t < ntopics && !wanted; t++)
				wanted = EbSubMatchesTopic(sub, topics[t]);
		}
		if (wanted && EbNotifyNeeded(ids[i]))
		{
			StringInfoData channel;

			if (sub == NULL)
				sub = EbSubById(ids[i]);
			if (sub == NULL)
				continue;		/* dropped meanwhile */
			initStringInfo(&channel);
			appendStringInfo(&channel, "eventbus_%s", sub->name);
			Async_Notify(channel.data, sub->name);
			res->notified++;
		}
	}
	res->next_due = NextDue(res->tick_at);
}
