/*-------------------------------------------------------------------------
 *
 * handler.c
 *	  Handler subscriptions: handler processes call a function per event,
 *	  in the same transaction as the event's ack.
 *
 * Each handler subscription has "concurrency" handler processes (dynamic
 * background workers), which the database's worker starts, restarts and
 * stops (subproc.c, from its ticks). A handler process loops:
 *
 *	 1. in a transaction of its own, it polls a batch of events (up to
 *		eventbus.handler_batch, waiting up to a second) and commits: the
 *		lease and the attempt are recorded before any handler runs, so a
 *		handler that hangs or kills its process ends, after max_attempts,
 *		as a dead letter;
 *	 2. in a second transaction, it calls the handler once per event, each
 *		call in a subtransaction, as the owner of the function, with the
 *		search_path a login of that owner gets, and a statement timeout of
 *		eventbus.handler_timeout; then it acks the events whose call
 *		returned and nacks the others with their error (retries, backoff
 *		and dead letters apply as for any consumer), and commits: the
 *		handlers' writes and the acks commit together.
 *
 * Processes of one subscription claim different batches (poll.c), so they
 * run side by side; the database's worker never waits for a handler.
 * SIGTERM ends a handler process at once (die): a handler cannot catch it.
 *
 * The database's worker starts, restarts and watches these processes
 * (subproc.c): a call that overruns eventbus.handler_timeout and ignores
 * the cancel gets its process terminated, and the event nacked.
 *
 * Locking: what poll, ack and nack take.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "context.h"
#include "handler.h"
#include "launcher.h"
#include "subproc.h"

#include <limits.h>
#include <signal.h>

#include "access/xact.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "storage/lwlock.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"


/* eventbus.handler_batch (EbHandlerInit defines it). */
static int	eb_handler_batch = 100;

void		eventbus_handler_main(Datum arg);

/* Runs one query through SPI; errors unless it succeeds. */
static void
RunSql(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls)
{
	int			ret = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);

	if (ret < 0)
		elog(ERROR, "eventbus handler query failed: %s", SPI_result_code_string(ret));
}

/* What one round of a handler process works on. */
typedef struct Round
{
	char	   *sub;			/* subscription name */
	Oid			fn;				/* the handler */
	Oid			owner;			/* its owner */
	char	   *search_path;	/* what a login of the owner gets */
	int			n;				/* events polled */
	Datum	   *events;			/* eventbus.event values */
	int64	   *ids;
	int64		token;			/* the poll's lease token */
	int			slot;			/* the process's HandlerSlot */
} Round;

/*
 * Polls a batch of the process's subscription, in a transaction of its
 * own that commits (the attempt is recorded before any handler runs).
 * Returns false when the process is no longer wanted (the subscription is
 * gone, paused, has no handler, or fewer processes; the extension gone).
 */
static bool
PollRound(EbProcArgs *a, Round *r, MemoryContext cxt)
{
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		values[2];
	bool		isnull;
	bool		wanted = false;
	MemoryContext old;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, "eventbus handler: poll");
	if (!OidIsValid(get_extension_oid("eventbus", true)))
	{
		CommitTransactionCommand();
		return false;
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());

	/* The subscription, its handler and the handler's owner. */
	values[0] = Int32GetDatum(a->sub_id);
	values[1] = Int32GetDatum(a->index);
	RunSql("SELECT s.name, s.handler::pg_catalog.oid, p.proowner "
		   "  FROM eventbus.subscription s "
		   "  JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) s.handler::pg_catalog.oid "
		   " WHERE s.id OPERATOR(pg_catalog.=) $1 AND NOT s.paused AND s.concurrency OPERATOR(pg_catalog.>) $2",
		   2, types, values, NULL);
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		wanted = true;
		old = MemoryContextSwitchTo(cxt);
		r->sub = SPI_getvalue(tup, desc, 1);
		r->fn = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
		r->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 3, &isnull));
		MemoryContextSwitchTo(old);
	}
	r->n = 0;
	if (wanted)
	{
		Oid			ptypes[2] = {TEXTOID, INT4OID};
		Datum		pvalues[2];

		pvalues[0] = CStringGetTextDatum(r->sub);
		pvalues[1] = Int32GetDatum(eb_handler_batch);
		RunSql("SELECT ROW(e.event_id, e.topic, e.key, e.payload, e.headers, e.published_at, "
			   "           e.attempt, $1)::eventbus.event, e.event_id, e.lease_token "
			   "  FROM eventbus.poll($1, $2, wait => '1 second') e",
			   2, ptypes, pvalues, NULL);
		old = MemoryContextSwitchTo(cxt);
		r->events = palloc(sizeof(Datum) * Max(SPI_processed, 1));
		r->ids = palloc(sizeof(int64) * Max(SPI_processed, 1));
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;

			r->events[i] = datumCopy(SPI_getbinval(tup, desc, 1, &isnull), false, -1);
			r->ids[i] = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
			r->token = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		}
		r->n = (int) SPI_processed;
		MemoryContextSwitchTo(old);
	}
	if (r->n > 0)
	{
		/*
		 * The search_path a login of the owner gets, as of now (after the
		 * poll's wait): ALTER ROLE ... IN DATABASE ... SET, ALTER ROLE ...
		 * SET, ALTER DATABASE ... SET, the server's configuration, the
		 * default.
		 */
		values[0] = ObjectIdGetDatum(r->owner);
		values[1] = ObjectIdGetDatum(MyDatabaseId);
		RunSql("WITH sp AS (SELECT s.setdatabase, s.setrole, substr(c, 13) AS value "
			   "              FROM pg_catalog.pg_db_role_setting s, pg_catalog.unnest(s.setconfig) c "
			   "             WHERE c LIKE 'search_path=%') "
			   "SELECT coalesce("
			   "         (SELECT value FROM sp WHERE setdatabase OPERATOR(pg_catalog.=) $2 AND setrole OPERATOR(pg_catalog.=) $1), "
			   "         (SELECT value FROM sp WHERE setdatabase OPERATOR(pg_catalog.=) 0 AND setrole OPERATOR(pg_catalog.=) $1), "
			   "         (SELECT value FROM sp WHERE setdatabase OPERATOR(pg_catalog.=) $2 AND setrole OPERATOR(pg_catalog.=) 0), "
			   "         (SELECT f.setting FROM pg_catalog.pg_file_settings f "
			   "           WHERE f.name OPERATOR(pg_catalog.=) 'search_path' AND f.applied ORDER BY f.seqno DESC LIMIT 1), "
			   "         (SELECT g.boot_val FROM pg_catalog.pg_settings g WHERE g.name OPERATOR(pg_catalog.=) 'search_path'))",
			   2, (Oid[]) {OIDOID, OIDOID}, values, NULL);
		old = MemoryContextSwitchTo(cxt);
		r->search_path = SPI_processed == 1 ? SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1) : NULL;
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	return wanted;
}

/*
 * Calls the handler on one event in a subtransaction, as the function's
 * owner with the owner's search_path, within eventbus.handler_timeout.
 * Nothing the handler leaves behind may run later as the process's
 * superuser: SECURITY_RESTRICTED_OPERATION forbids what could (deferred
 * triggers, cursors WITH HOLD, temporary tables, SET ROLE ...), and the
 * settings it changed are undone with their GUC nest level. Returns the
 * error's message, or NULL when the call returned.
 */
static char *
CallHandler(Round *r, Datum event)
{
	MemoryContext xactcxt = CurrentMemoryContext;
	ResourceOwner xactowner = CurrentResourceOwner;
	char	   *volatile error = NULL;

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
		SetUserIdAndSecContext(r->owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
		save_nestlevel = NewGUCNestLevel();
		if (r->search_path != NULL)
			(void) set_config_option("search_path", r->search_path, PGC_USERSET, PGC_S_SESSION,
									 GUC_ACTION_SET, true, 0, false);
		CommandCounterIncrement();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (eb_handler_timeout > 0)
			enable_timeout_after(STATEMENT_TIMEOUT, eb_handler_timeout);

		fmgr_info(r->fn, &flinfo);
		InitFunctionCallInfoData(*fcinfo, &flinfo, 1, InvalidOid, NULL, NULL);
		fcinfo->args[0].value = event;
		fcinfo->args[0].isnull = false;
		(void) FunctionCallInvoke(fcinfo);

		if (eb_handler_timeout > 0)
			disable_timeout(STATEMENT_TIMEOUT, false);
		CHECK_FOR_INTERRUPTS();	/* a timeout at the very end counts */
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
		/* Restores the user, the GUCs, the snapshot stack and the resource owner. */
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(xactcxt);
		CurrentResourceOwner = xactowner;
		error = pstrdup(edata->message ? edata->message : "handler failed");
	}
	PG_END_TRY();
	return error;
}

/*
 * Calls the handler on each event of the round, then acks those it
 * handled and nacks the others, all in one transaction.
 */
static void
HandleRound(Round *r)
{
	Oid			types[4] = {TEXTOID, INT8ARRAYOID, INT8OID, TEXTOID};
	Datum		values[4];
	Datum	   *ok = palloc(sizeof(Datum) * Max(r->n, 1));
	int			nok = 0;
	char	  **errors = palloc0(sizeof(char *) * Max(r->n, 1));

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, "eventbus handler: call");
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	for (int i = 0; i < r->n; i++)
	{
		EbProcSetSlot(r->slot, r->ids[i], r->token);
		EbContextEnterEvent(r->events[i]);	/* its publishes inherit E's ids (context.c) */
		errors[i] = CallHandler(r, r->events[i]);
		EbContextLeave();
		EbProcSetSlot(r->slot, 0, 0);
		if (errors[i] == NULL)
			ok[nok++] = Int64GetDatum(r->ids[i]);
	}
	values[0] = CStringGetTextDatum(r->sub);
	values[1] = PointerGetDatum(construct_array(ok, nok, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[2] = Int64GetDatum(r->token);
	if (nok > 0)
		RunSql("SELECT eventbus.ack($1, $2, $3)", 3, types, values, NULL);
	for (int i = 0; i < r->n; i++)
	{
		Oid			ntypes[4] = {TEXTOID, INT8OID, TEXTOID, INT8OID};
		Datum		nvalues[4];

		if (errors[i] == NULL)
			continue;
		nvalues[0] = values[0];
		nvalues[1] = Int64GetDatum(r->ids[i]);
		nvalues[2] = CStringGetTextDatum(errors[i]);
		nvalues[3] = Int64GetDatum(r->token);
		RunSql("SELECT eventbus.nack($1, $2, $3, lease_token => $4)", 4, ntypes, nvalues, NULL);
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	EbCountHandlerCalls(MyDatabaseId, r->n);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* A handler process: polls and handles its subscription's events until no longer wanted. */
void
eventbus_handler_main(Datum arg)
{
	EbProcArgs a;
	MemoryContext cxt;
	bool		named = false;

	memcpy(&a, MyBgworkerEntry->bgw_extra, sizeof(a));
	EbProcTakeSlot(a.slot);
	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(a.dboid, InvalidOid, 0);
	pgstat_report_appname("eventbus handler");

	/*
	 * The process's own queries resolve names in pg_catalog only (nobody's
	 * objects may capture them); each handler call gets its owner's
	 * search_path (CallHandler). Each statement sees what committed before.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_read_only", "off", PGC_SUSET, PGC_S_OVERRIDE);

	cxt = AllocSetContextCreate(TopMemoryContext, "eventbus handler round", ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		Round		r = {0};

		r.slot = a.slot;
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		MemoryContextReset(cxt);
		if (!PollRound(&a, &r, cxt))
			break;
		if (!named)
		{
			/* Named after its subscription in pg_stat_activity. */
			pgstat_report_appname(psprintf("eventbus handler for %s", r.sub));
			named = true;
		}
		if (r.n > 0)
			HandleRound(&r);
	}
	proc_exit(0);
}

/* Defines the settings of handler subscriptions. */
void
EbHandlerInit(void)
{
	DefineCustomIntVariable("eventbus.handler_batch",
							"Most events a handler process takes in one poll (and handles in one transaction).",
							"Valid range: 1 to 100000.",
							&eb_handler_batch,
							100,
							1,
							100000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
}
