/*-------------------------------------------------------------------------
 *
 * handler.c
 *	  Handler subscriptions: handler processes call a function per event,
 *	  in the same transaction as the event's ack.
 *
 * Each handler subscription has "concurrency" handler processes (dynamic
 * background workers), which the database's worker starts, restarts and
 * stops (EbHandlersEnsure, from its ticks). A handler process loops:
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
 * A handler that ignores its statement timeout (it catches the cancel)
 * would hold its process forever. Each process shows in a
 * shared slot which event its handler is running since when; the worker
 * terminates a process whose call overran eventbus.handler_timeout by
 * EB_HANDLER_GRACE_MS, and when a process ended in the middle of a call
 * (terminated so, or exited by itself), nacks that event with reason
 * 'timeout' or 'crashed' (a dead letter at max_attempts), in a
 * subtransaction whose failure is only logged. (A handler looping in C
 * without CHECK_FOR_INTERRUPTS stops for nothing short of SIGKILL, which
 * would restart the whole server; that is not done.)
 *
 * Locking: what poll, ack and nack take; a slot's fields are under its
 * spinlock, claimed and released by the worker that started the process;
 * the worker's list of its handler processes is its own memory.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "context.h"
#include "handler.h"
#include "launcher.h"

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

/* Settings (EbHandlerInit defines them). */
static int	eb_handler_timeout = 30000; /* ms */
static int	eb_handler_batch = 100;

/* A handler process restarts no sooner than this after it stopped. */
#define EB_HANDLER_RESTART_MS	1000

/* A call that overruns eventbus.handler_timeout by this much gets its process terminated. */
#define EB_HANDLER_GRACE_MS		2000

/* What a handler process is for (its bgw_extra). */
typedef struct HandlerArgs
{
	Oid			dboid;
	int32		sub_id;
	int32		index;			/* 0 .. concurrency - 1 */
	int32		slot;			/* its HandlerSlot */
} HandlerArgs;

/* What a handler process is doing, for the worker that started it. */
typedef struct HandlerSlot
{
	slock_t		mutex;			/* protects the fields below */
	bool		in_use;			/* claimed by a worker for one of its processes */
	pid_t		pid;			/* the process that writes it (0: none yet) */
	int64		event_id;		/* the event a handler runs on now; 0: none */
	int64		token;			/* its lease token */
	TimestampTz call_start;		/* when that call began */
} HandlerSlot;

static HandlerSlot *Slots = NULL;
static int	NSlots = 0;
static shmem_request_hook_type PrevShmemRequest = NULL;
static shmem_startup_hook_type PrevShmemStartup = NULL;

/* Two slots per background worker: a stopped process's slot is released a little later. */
static int
SlotCount(void)
{
	return 2 * max_worker_processes;
}

static void
HandlerShmemRequest(void)
{
	if (PrevShmemRequest)
		PrevShmemRequest();
	RequestAddinShmemSpace(mul_size(SlotCount(), sizeof(HandlerSlot)));
}

static void
HandlerShmemStartup(void)
{
	bool		found;

	if (PrevShmemStartup)
		PrevShmemStartup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	NSlots = SlotCount();
	Slots = ShmemInitStruct("eventbus handler slots", mul_size(NSlots, sizeof(HandlerSlot)), &found);
	if (!found)
		for (int i = 0; i < NSlots; i++)
		{
			SpinLockInit(&Slots[i].mutex);
			Slots[i].in_use = false;
			Slots[i].event_id = 0;
			Slots[i].pid = 0;
		}
	LWLockRelease(AddinShmemInitLock);
}

/* Claims a free slot; -1 when none is (or eventbus is not preloaded). */
static int
ClaimSlot(void)
{
	for (int i = 0; Slots != NULL && i < NSlots; i++)
	{
		bool		got = false;

		SpinLockAcquire(&Slots[i].mutex);
		if (!Slots[i].in_use)
		{
			Slots[i].in_use = true;
			Slots[i].pid = 0;
			Slots[i].event_id = 0;
			got = true;
		}
		SpinLockRelease(&Slots[i].mutex);
		if (got)
			return i;
	}
	return -1;
}

/* Reads what a slot says its process is running (event 0: nothing). */
static void
ReadSlot(int slot, int64 *event_id, int64 *token, TimestampTz *since)
{
	*event_id = 0;
	if (slot < 0)
		return;
	SpinLockAcquire(&Slots[slot].mutex);
	*event_id = Slots[slot].event_id;
	*token = Slots[slot].token;
	*since = Slots[slot].call_start;
	SpinLockRelease(&Slots[slot].mutex);
}

/* The handler process, as it starts: the slot is its own from now on. */
static void
TakeSlot(int slot)
{
	if (slot < 0 || Slots == NULL)
		return;
	SpinLockAcquire(&Slots[slot].mutex);
	if (Slots[slot].in_use && Slots[slot].pid == 0)
		Slots[slot].pid = MyProcPid;
	SpinLockRelease(&Slots[slot].mutex);
}

/*
 * The handler process: shows the event its handler runs on (0: none).
 * Nothing is written to a slot released meanwhile (the process is being
 * stopped), which may belong to another process already.
 */
static void
SetSlot(int slot, int64 event_id, int64 token)
{
	if (slot < 0 || Slots == NULL)
		return;
	SpinLockAcquire(&Slots[slot].mutex);
	if (Slots[slot].pid == MyProcPid)
	{
		Slots[slot].event_id = event_id;
		Slots[slot].token = token;
		Slots[slot].call_start = GetCurrentTimestamp();
	}
	SpinLockRelease(&Slots[slot].mutex);
}

static void
ReleaseSlot(int slot)
{
	if (slot < 0)
		return;
	SpinLockAcquire(&Slots[slot].mutex);
	Slots[slot].in_use = false;
	Slots[slot].pid = 0;
	Slots[slot].event_id = 0;
	SpinLockRelease(&Slots[slot].mutex);
}

void		eventbus_handler_main(Datum arg);

/* ---- the database worker's side: handler processes ---- */

/* A handler process the worker started. */
typedef struct HandlerProc
{
	int32		sub_id;
	int32		index;
	BackgroundWorkerHandle *handle; /* NULL: stopped, start again at restart_at */
	TimestampTz restart_at;
	bool		wanted;			/* still wanted by this round */
	int			slot;			/* its HandlerSlot; -1: none */
	bool		timed_out;		/* terminated for overrunning handler_timeout ... */
	int64		timed_out_event;	/* ... on this event */
} HandlerProc;

static List *Procs = NIL;		/* of HandlerProc, in TopMemoryContext */
static bool WarnedNoSlot = false;

/* Registers a handler process; false when no background worker slot is free. */
static bool
StartHandler(HandlerProc *hp)
{
	BackgroundWorker worker;
	HandlerArgs args;
	MemoryContext old;
	bool		ok;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;	/* the worker restarts it */
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "eventbus");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "eventbus_handler_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "eventbus handler %d/%d for database %u",
			 hp->sub_id, hp->index, MyDatabaseId);
	snprintf(worker.bgw_type, BGW_MAXLEN, "eventbus handler");
	hp->slot = ClaimSlot();
	hp->timed_out = false;
	args.dboid = MyDatabaseId;
	args.sub_id = hp->sub_id;
	args.index = hp->index;
	args.slot = hp->slot;
	memcpy(worker.bgw_extra, &args, sizeof(args));
	worker.bgw_notify_pid = MyProcPid;
	old = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&worker, &hp->handle);
	MemoryContextSwitchTo(old);
	if (!ok)
	{
		hp->handle = NULL;
		ReleaseSlot(hp->slot);
		hp->slot = -1;
		if (!WarnedNoSlot)
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("eventbus could not start a handler process for subscription %d: no background worker slot is free",
							hp->sub_id),
					 errhint("Raise max_worker_processes: one per database with the extension, one per handler process (a subscription's concurrency), plus the launcher.")));
		WarnedNoSlot = true;
	}
	else
		WarnedNoSlot = false;
	return ok;
}

/* Stops a handler process that is no longer wanted (it ends at once: die). */
static void
StopHandler(HandlerProc *hp)
{
	if (hp->handle != NULL)
	{
		TerminateBackgroundWorker(hp->handle);
		pfree(hp->handle);
		hp->handle = NULL;
	}
	ReleaseSlot(hp->slot);
	hp->slot = -1;
}

/*
 * A handler process ended in the middle of a call: nacks that event with
 * the reason (a retry, or a dead letter at max_attempts), in a
 * subtransaction of the worker's transaction. Should that fail (the event
 * was acked or its lease ended meanwhile), it is logged and the worker
 * goes on: the event's lease ends and the attempt counts.
 */
static void
FailCall(HandlerProc *hp, int64 event_id, int64 token, const char *reason)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	char	   *error = strcmp(reason, "timeout") == 0
		? psprintf("handler overran eventbus.handler_timeout (%d ms) and ignored the cancel: its process was terminated",
				   eb_handler_timeout)
		: pstrdup("the handler process exited during the call");

	ereport(WARNING,
			(errmsg("eventbus: %s (subscription %d, event " INT64_FORMAT ")", error, hp->sub_id, event_id)));
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		Oid			types[4] = {INT4OID, INT8OID, TEXTOID, INT8OID};
		Datum		values[4];
		Oid			rtypes[3] = {INT4OID, INT8OID, TEXTOID};
		Datum		rvalues[3];

		values[0] = Int32GetDatum(hp->sub_id);
		values[1] = Int64GetDatum(event_id);
		values[2] = CStringGetTextDatum(error);
		values[3] = Int64GetDatum(token);
		if (SPI_execute_with_args("SELECT eventbus.nack(s.name, $2, $3, lease_token => $4) "
								  "  FROM eventbus.subscription s WHERE s.id OPERATOR(pg_catalog.=) $1",
								  4, types, values, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "eventbus: could not nack the event");
		/* A dead letter: say why. */
		rvalues[0] = values[0];
		rvalues[1] = values[1];
		rvalues[2] = CStringGetTextDatum(reason);
		if (SPI_execute_with_args("UPDATE eventbus.delivery SET reason = $3 "
								  " WHERE sub_id OPERATOR(pg_catalog.=) $1 AND event_id OPERATOR(pg_catalog.=) $2 "
								  "   AND state OPERATOR(pg_catalog.=) 'dead' AND reason OPERATOR(pg_catalog.=) 'failed'",
								  3, rtypes, rvalues, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "eventbus: could not record why the event is dead");
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		ereport(LOG,
				(errmsg("eventbus: could not nack event " INT64_FORMAT " of subscription %d after its handler process ended: %s",
						event_id, hp->sub_id, edata->message)));
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
}

/*
 * Looks at a running handler process: terminates it when its call overran
 * handler_timeout by EB_HANDLER_GRACE_MS; when it has stopped, nacks the
 * event it stopped on, if any, and releases its slot.
 */
static void
WatchHandler(HandlerProc *hp, TimestampTz now)
{
	pid_t		pid;
	int64		event_id;
	int64		token = 0;
	TimestampTz since = 0;

	ReadSlot(hp->slot, &event_id, &token, &since);
	if (GetBackgroundWorkerPid(hp->handle, &pid) != BGWH_STOPPED)
	{
		if (event_id != 0 && eb_handler_timeout > 0 && !hp->timed_out &&
			now - since > ((int64) eb_handler_timeout + EB_HANDLER_GRACE_MS) * 1000)
		{
			TerminateBackgroundWorker(hp->handle);
			hp->timed_out = true;
			hp->timed_out_event = event_id;
		}
		return;
	}
	/*
	 * Stopped during a call: the call it was terminated for (not a call
	 * that began just after the slot was read: that event's lease brings
	 * it back), or a crash.
	 */
	if (event_id != 0 && !hp->timed_out)
		FailCall(hp, event_id, token, "crashed");
	else if (event_id != 0 && event_id == hp->timed_out_event)
		FailCall(hp, event_id, token, "timeout");
	ReleaseSlot(hp->slot);
	hp->slot = -1;
	pfree(hp->handle);
	hp->handle = NULL;
	hp->restart_at = TimestampTzPlusMilliseconds(now, EB_HANDLER_RESTART_MS);
}

/*
 * Makes the running handler processes match the handler subscriptions
 * (concurrency processes each, none for a paused one): starts the missing
 * ones (a process that stopped, after EB_HANDLER_RESTART_MS), stops those
 * no longer wanted. In the worker's transaction, inside SPI.
 */
void
EbHandlersEnsure(void)
{
	static SPIPlanPtr plan = NULL;
	ListCell   *lc;
	TimestampTz now = GetCurrentTimestamp();
	uint64		n;

	if (plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare("SELECT id, concurrency FROM eventbus.subscription "
									"WHERE handler IS NOT NULL AND NOT paused", 0, NULL);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "could not prepare the handler list: %s", SPI_result_code_string(SPI_result));
		plan = p;
	}
	if (SPI_execute_plan(plan, NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "eventbus: could not list the handler subscriptions");
	n = SPI_processed;

	foreach(lc, Procs)
		((HandlerProc *) lfirst(lc))->wanted = false;
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;
		int32		sub_id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		int32		concurrency = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));

		for (int32 k = 0; k < concurrency; k++)
		{
			HandlerProc *hp = NULL;

			foreach(lc, Procs)
			{
				HandlerProc *p = lfirst(lc);

				if (p->sub_id == sub_id && p->index == k)
					hp = p;
			}
			if (hp == NULL)
			{
				MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

				hp = palloc0(sizeof(HandlerProc));
				hp->sub_id = sub_id;
				hp->index = k;
				hp->slot = -1;
				Procs = lappend(Procs, hp);
				MemoryContextSwitchTo(old);
			}
			hp->wanted = true;
		}
	}

	foreach(lc, Procs)
	{
		HandlerProc *hp = lfirst(lc);

		if (!hp->wanted)
		{
			StopHandler(hp);
			Procs = foreach_delete_current(Procs, lc);
			pfree(hp);
			continue;
		}
		if (hp->handle != NULL)
			WatchHandler(hp, now);
		if (hp->handle == NULL && now >= hp->restart_at)
			(void) StartHandler(hp);
	}
}

/* Stops every handler process (the worker is exiting). */
void
EbHandlersStop(void)
{
	ListCell   *lc;

	foreach(lc, Procs)
		StopHandler(lfirst(lc));
	list_free_deep(Procs);
	Procs = NIL;
}

/* ---- the handler process ---- */

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
PollRound(HandlerArgs *a, Round *r, MemoryContext cxt)
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
		SetSlot(r->slot, r->ids[i], r->token);
		EbContextEnterEvent(r->events[i]);	/* its publishes inherit E's ids (context.c) */
		errors[i] = CallHandler(r, r->events[i]);
		EbContextLeave();
		SetSlot(r->slot, 0, 0);
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
	HandlerArgs a;
	MemoryContext cxt;
	bool		named = false;

	memcpy(&a, MyBgworkerEntry->bgw_extra, sizeof(a));
	TakeSlot(a.slot);
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

/* Defines the settings of handler subscriptions; with preloading, the slots. */
void
EbHandlerInit(void)
{
	if (process_shared_preload_libraries_in_progress)
	{
		PrevShmemRequest = shmem_request_hook;
		shmem_request_hook = HandlerShmemRequest;
		PrevShmemStartup = shmem_startup_hook;
		shmem_startup_hook = HandlerShmemStartup;
	}
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
