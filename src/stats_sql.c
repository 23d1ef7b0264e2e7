/*-------------------------------------------------------------------------
 *
 * stats_sql.c
 *	  Counting from SQL: eventbus._stats_sub(), which the functions written
 *	  in PL/pgSQL (redrive, purge, schema dead letters) call to count for a
 *	  subscription at commit, like the C ones do through stats.c.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "notify.h"
#include "stats.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/timestamp.h"

/* Seconds elapsed from "since" to now; 0 for NULL. */
static double
SecondsSince(TimestampTz since, TimestampTz now)
{
	return (double) (now - since) / USECS_PER_SEC;
}

/* Adds an observation per non-NULL element of a timestamptz[] argument. */
static void
ObserveArray(FunctionCallInfo fcinfo, int argno, int32 sub_id, EbHist hist)
{
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	TimestampTz now = GetCurrentTimestamp();

	if (PG_ARGISNULL(argno))
		return;
	arr = PG_GETARG_ARRAYTYPE_P(argno);
	deconstruct_array(arr, TIMESTAMPTZOID, sizeof(TimestampTz), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
		if (!nulls[i])
			EbStatsObserve(sub_id, hist, SecondsSince(DatumGetTimestampTz(elems[i]), now));
}

PG_FUNCTION_INFO_V1(eventbus_stats_sub);

/*
 * SQL eventbus._stats_sub(sub_id, "read", delivered, acked, nacked, retried,
 * dead, expired, redriven, first_at timestamptz[], leased_at timestamptz[],
 * polled boolean): counts for a subscription, added at commit. first_at
 * holds, per event delivered for the first time, when it could first be
 * delivered (its publication, or deliver_at); leased_at, per event acked,
 * when its lease began. polled records the time of a poll at once.
 */
Datum
eventbus_stats_sub(PG_FUNCTION_ARGS)
{
	int32		sub_id;

	if (PG_ARGISNULL(0))
		PG_RETURN_VOID();
	sub_id = PG_GETARG_INT32(0);
	/* A poll starts: the worker may notify the subscription again. */
	if (!PG_ARGISNULL(EB_SUB_NCOUNTERS + 3) && PG_GETARG_BOOL(EB_SUB_NCOUNTERS + 3))
		EbNotifyPolled(sub_id, 0);
	/* Each counts nothing without shared memory or with track_stats off. */
	for (int i = 0; i < EB_SUB_NCOUNTERS; i++)
		if (!PG_ARGISNULL(i + 1))
			EbStatsCountSub(sub_id, (EbSubCounter) i, PG_GETARG_INT64(i + 1));
	ObserveArray(fcinfo, EB_SUB_NCOUNTERS + 1, sub_id, EB_HIST_DELIVERY);
	ObserveArray(fcinfo, EB_SUB_NCOUNTERS + 2, sub_id, EB_HIST_ACK);
	if (!PG_ARGISNULL(EB_SUB_NCOUNTERS + 3) && PG_GETARG_BOOL(EB_SUB_NCOUNTERS + 3))
		EbStatsPolled(sub_id);
	PG_RETURN_VOID();
}
