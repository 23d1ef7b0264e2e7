/*-------------------------------------------------------------------------
 *
 * handler.c
 *	  Handler subscriptions: the background worker calls a function per
 *	  event, in the same transaction as the event's ack.
 *
 * For each event: a transaction polls one event, calls the handler inside
 * a subtransaction, and acks the event when the handler returns. When the
 * handler raises an error, the subtransaction is rolled back and the event
 * is nacked with the error's message, so retries, backoff and the dead
 * letter queue apply as for any consumer. The handler runs as the owner of
 * its function (not as the worker's superuser), with a statement timeout of
 * eventbus.handler_timeout. A subscription gets at most
 * eventbus.handler_batch events per round, so one busy or slow handler does
 * not keep the worker from the others for long.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "handler.h"

#include <limits.h>
#include <signal.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "utils/guc.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"

/* Settings (EbHandlerInit defines them). */
static int	eb_handler_timeout = 30000; /* ms */
static int	eb_handler_batch = 100;

/* Runs one query through SPI with text arguments; errors unless it succeeds. */
static void
RunSql(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls)
{
	int			ret = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);

	if (ret < 0)
		elog(ERROR, "eventbus handler query failed: %s", SPI_result_code_string(ret));
}

/*
 * Handles one event of a subscription, adding 1 to *calls when it called
 * the handler. Returns false when there was none, or when the worker is
 * stopping.
 */
static bool
HandleOne(const char *sub, volatile sig_atomic_t *stop, int *calls)
{
	Oid			types[3] = {TEXTOID, INT8OID, TEXTOID};
	Datum		values[3];
	bool		isnull;
	Oid			fn;
	Oid			owner;
	int64		event_id;
	Datum		event;
	MemoryContext xactcxt;
	ResourceOwner xactowner;
	char	   *volatile error = NULL;
	volatile bool stopped = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, "eventbus handler");
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());

	values[0] = CStringGetTextDatum(sub);
	RunSql("SELECT s.handler::pg_catalog.oid, p.proowner, e.event_id, "
		   "       ROW(e.event_id, e.topic, e.key, e.payload, e.headers, e.published_at, "
		   "           e.attempt, s.name)::eventbus.event "
		   "  FROM eventbus.subscription s "
		   "  JOIN pg_catalog.pg_proc p "
		   "    ON p.oid OPERATOR(pg_catalog.=) s.handler::pg_catalog.oid, "
		   "       LATERAL eventbus.poll(s.name, 1) e "
		   " WHERE s.name OPERATOR(pg_catalog.=) $1 AND NOT s.paused",
		   1, types, values, NULL);
	if (SPI_processed == 0)
	{
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		return false;
	}
	fn = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	event_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	event = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull);
	xactcxt = CurrentMemoryContext;
	event = datumCopy(event, false, -1);
	xactowner = CurrentResourceOwner;
	(*calls)++;

	/*
	 * The call, in a subtransaction, as the function's owner, with a timeout.
	 * Nothing the handler leaves behind may run later as the worker's
	 * superuser: SECURITY_RESTRICTED_OPERATION forbids what could (deferred
	 * triggers, cursors WITH HOLD, temporary tables, SET ROLE ...), and the
	 * settings it changed are undone with their GUC nest level.
	 */
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(xactcxt);
	PG_TRY();
	{
		Oid			save_user;
		int			save_sec;
		int			save_nestlevel;
		FmgrInfo	flinfo;
		LOCAL_FCINFO(fcinfo, 1);

		GetUserIdAndSecContext(&save_user, &save_sec);
		SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
		save_nestlevel = NewGUCNestLevel();
		CommandCounterIncrement();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (eb_handler_timeout > 0)
			enable_timeout_after(STATEMENT_TIMEOUT, eb_handler_timeout);
		CHECK_FOR_INTERRUPTS();	/* a SIGTERM that came just before */
		if (*stop)
			ereport(ERROR,
					(errcode(ERRCODE_ADMIN_SHUTDOWN),
					 errmsg("eventbus worker is stopping")));

		fmgr_info(fn, &flinfo);
		InitFunctionCallInfoData(*fcinfo, &flinfo, 1, InvalidOid, NULL, NULL);
		fcinfo->args[0].value = event;
		fcinfo->args[0].isnull = false;
		(void) FunctionCallInvoke(fcinfo);

		if (eb_handler_timeout > 0)
			disable_timeout(STATEMENT_TIMEOUT, false);
		CHECK_FOR_INTERRUPTS();	/* a timeout or SIGTERM at the very end counts */
		PopActiveSnapshot();
		AtEOXact_GUC(false, save_nestlevel);
		SetUserIdAndSecContext(save_user, save_sec);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(xactcxt);
		CurrentResourceOwner = xactowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		if (eb_handler_timeout > 0)
			disable_timeout(STATEMENT_TIMEOUT, false);
		MemoryContextSwitchTo(xactcxt);
		edata = CopyErrorData();
		FlushErrorState();
		/* Restores the user, the snapshot stack and the resource owner. */
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(xactcxt);
		CurrentResourceOwner = xactowner;
		error = edata->message ? edata->message : "handler failed";
		stopped = *stop;
	}
	PG_END_TRY();

	if (stopped)
	{
		/* Stopping: give the event back untouched (the poll is undone). */
		SPI_finish();
		AbortCurrentTransaction();
		return false;
	}

	values[0] = CStringGetTextDatum(sub);
	values[1] = Int64GetDatum(event_id);
	if (error == NULL)
		RunSql("SELECT eventbus.ack($1, ARRAY[$2])", 2, types, values, NULL);
	else
	{
		values[2] = CStringGetTextDatum(error);
		RunSql("SELECT eventbus.nack($1, $2, $3)", 3, types, values, NULL);
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return true;
}

/*
 * Runs up to eventbus.handler_batch events of each named handler
 * subscription. Returns how many handler calls it made; *more tells
 * whether some subscription may have more.
 */
int
EbRunHandlers(List *subs, volatile sig_atomic_t *stop, bool *more)
{
	ListCell   *lc;
	int			calls = 0;

	*more = false;
	foreach(lc, subs)
	{
		const char *sub = lfirst(lc);
		int			n = 0;

		while (n < eb_handler_batch && !*stop && HandleOne(sub, stop, &calls))
			n++;
		*more |= n >= eb_handler_batch;
	}
	return calls;
}

/* Defines the settings of handler subscriptions. */
void
EbHandlerInit(void)
{
	DefineCustomIntVariable("eventbus.handler_timeout",
							"Longest time one call of a subscription's handler may take; 0 means no limit.",
							"A call that takes longer is cancelled and the event nacked. Valid range: 0 to 2147483647 ms.",
							&eb_handler_timeout,
							30000,
							0,
							INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("eventbus.handler_batch",
							"Most events the worker hands to one handler subscription before it turns to the others.",
							"Valid range: 1 to 100000.",
							&eb_handler_batch,
							100,
							1,
							100000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
}
