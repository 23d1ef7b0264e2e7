/*-------------------------------------------------------------------------
 *
 * subproc.c
 *	  The processes the database's worker runs for subscriptions: the
 *	  handler processes of handler subscriptions (handler.c) and the relay
 *	  process of each relay (relay.c).
 *
 * Each is a dynamic background worker that the database's worker starts,
 * restarts and stops (EbProcsEnsure, from its ticks): concurrency
 * processes per handler subscription, one per relay, none for a paused
 * one. A process that stopped starts again after EB_HANDLER_RESTART_MS; a
 * relay process that keeps stopping soon after its start waits longer
 * each time (RestartDelay), so an unreachable broker costs little.
 *
 * A handler that ignores its statement timeout (it catches the cancel)
 * would hold its process forever. Each process shows in a shared slot
 * which event its handler is running since when; the worker terminates a
 * process whose call overran eventbus.handler_timeout by
 * EB_HANDLER_GRACE_MS, and when a process ended in the middle of a call
 * (terminated so, or exited by itself), nacks that event with reason
 * 'timeout' or 'crashed' (a dead letter at max_attempts), in a
 * subtransaction whose failure is only logged. (A handler looping in C
 * without CHECK_FOR_INTERRUPTS stops for nothing short of SIGKILL, which
 * would restart the whole server; that is not done.)
 *
 * Locking: a slot's fields are under its spinlock, claimed and released
 * by the worker that started the process; the worker's list of its
 * processes is its own memory.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "subproc.h"

#include <limits.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

/* eventbus.handler_timeout (EbProcsInit defines it). */
int			eb_handler_timeout = 30000; /* ms */

/*
 * A process restarts no sooner than this after it stopped; a relay process
 * that stopped soon after its start waits twice as long as the last time,
 * up to EB_RELAY_RESTART_MAX_MS.
 */
#define EB_HANDLER_RESTART_MS	1000
#define EB_RELAY_RESTART_MAX_MS	60000

/* A call that overruns eventbus.handler_timeout by this much gets its process terminated. */
#define EB_HANDLER_GRACE_MS		2000


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
void
EbProcTakeSlot(int slot)
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
void
EbProcSetSlot(int slot, int64 event_id, int64 token)
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


/* ---- the database worker's side: handler processes ---- */

/* A handler process the worker started. */
typedef struct Proc
{
	int32		sub_id;
	int32		index;
	bool		relay;			/* a relay process (relay.c), else a handler process */
	int			quick_exits;	/* relay: stops soon after a start in a row */
	TimestampTz started_at;
	BackgroundWorkerHandle *handle; /* NULL: stopped, start again at restart_at */
	TimestampTz restart_at;
	bool		wanted;			/* still wanted by this round */
	bool		stopping;		/* relay: sent SIGTERM as no longer wanted, not yet exited */
	int			slot;			/* its HandlerSlot; -1: none */
	bool		timed_out;		/* terminated for overrunning handler_timeout ... */
	int64		timed_out_event;	/* ... on this event */
} Proc;

static List *Procs = NIL;		/* of Proc, in TopMemoryContext */
static bool WarnedNoSlot = false;

/* Registers a handler or relay process; false when no background worker slot is free. */
static bool
StartProc(Proc *hp)
{
	BackgroundWorker worker;
	EbProcArgs args;
	MemoryContext old;
	bool		ok;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;	/* the worker restarts it */
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "eventbus");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, hp->relay ? "eventbus_relay_main" : "eventbus_handler_main");
	if (hp->relay)
		snprintf(worker.bgw_name, BGW_MAXLEN, "eventbus relay %d for database %u",
				 hp->sub_id, MyDatabaseId);
	else
		snprintf(worker.bgw_name, BGW_MAXLEN, "eventbus handler %d/%d for database %u",
				 hp->sub_id, hp->index, MyDatabaseId);
	snprintf(worker.bgw_type, BGW_MAXLEN, hp->relay ? "eventbus relay" : "eventbus handler");
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
					 errmsg("eventbus could not start a %s process for subscription %d: no background worker slot is free",
							hp->relay ? "relay" : "handler", hp->sub_id),
					 errhint("Raise max_worker_processes: one per database with the extension, one per handler process (a subscription's concurrency), one per relay, plus the launcher.")));
		WarnedNoSlot = true;
	}
	else
	{
		WarnedNoSlot = false;
		hp->started_at = GetCurrentTimestamp();
	}
	return ok;
}

/* Stops a handler process that is no longer wanted (it ends at once: die). */
static void
StopProc(Proc *hp)
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
FailCall(Proc *hp, int64 event_id, int64 token, const char *reason)
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
 * How long a stopped process waits before it starts again: a handler
 * process EB_HANDLER_RESTART_MS; a relay process twice as long as the last
 * time when it stopped within EB_RELAY_RESTART_MAX_MS of its start (a
 * broker it cannot reach, a server that was dropped), up to that.
 */
static int
RestartDelay(Proc *hp, TimestampTz now)
{
	if (!hp->relay)
		return EB_HANDLER_RESTART_MS;
	if (now - hp->started_at > (int64) EB_RELAY_RESTART_MAX_MS * 1000)
		hp->quick_exits = 0;
	else if (hp->quick_exits < 6)
		hp->quick_exits++;
	return Min(EB_HANDLER_RESTART_MS << hp->quick_exits, EB_RELAY_RESTART_MAX_MS);
}

/*
 * Looks at a running handler or relay process: terminates it when its call overran
 * handler_timeout by EB_HANDLER_GRACE_MS; when it has stopped, nacks the
 * event it stopped on, if any, and releases its slot.
 */
static void
WatchProc(Proc *hp, TimestampTz now)
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
	hp->stopping = false;
	hp->restart_at = TimestampTzPlusMilliseconds(now, RestartDelay(hp, now));
}

/*
 * Makes the running processes match the handler subscriptions
 * (concurrency processes each) and the relays (one each), none for a
 * paused one: starts the missing ones (a process that stopped, after
 * RestartDelay), stops those no longer wanted. In the worker's
 * transaction, inside SPI.
 */
void
EbProcsEnsure(void)
{
	static SPIPlanPtr plan = NULL;
	ListCell   *lc;
	TimestampTz now = GetCurrentTimestamp();
	uint64		n;

	if (plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare("SELECT id, CASE WHEN sink IS NULL THEN concurrency ELSE 1 END, sink IS NOT NULL "
									"  FROM eventbus.subscription "
									" WHERE (handler IS NOT NULL OR sink IS NOT NULL) AND NOT paused", 0, NULL);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "could not prepare the handler list: %s", SPI_result_code_string(SPI_result));
		plan = p;
	}
	if (SPI_execute_plan(plan, NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "eventbus: could not list the handler subscriptions and relays");
	n = SPI_processed;

	foreach(lc, Procs)
		((Proc *) lfirst(lc))->wanted = false;
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;
		int32		sub_id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		int32		concurrency = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
		bool		relay = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3, &isnull));

		for (int32 k = 0; k < concurrency; k++)
		{
			Proc *hp = NULL;

			foreach(lc, Procs)
			{
				Proc *p = lfirst(lc);

				if (p->sub_id == sub_id && p->index == k && p->relay == relay)
					hp = p;
			}
			if (hp == NULL)
			{
				MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

				hp = palloc0(sizeof(Proc));
				hp->sub_id = sub_id;
				hp->index = k;
				hp->relay = relay;
				hp->slot = -1;
				Procs = lappend(Procs, hp);
				MemoryContextSwitchTo(old);
			}
			hp->wanted = true;
		}
	}

	foreach(lc, Procs)
	{
		Proc *hp = lfirst(lc);

		if (!hp->wanted && hp->relay && hp->handle != NULL)
		{
			pid_t		pid;

			/*
			 * A relay process ends its round first (up to EB_RELAY_STOP_MS
			 * and its ack): the relay's next process, after a quick
			 * resume, must not start beside it and send its batch again.
			 */
			if (!hp->stopping)
				TerminateBackgroundWorker(hp->handle);
			hp->stopping = true;
			if (GetBackgroundWorkerPid(hp->handle, &pid) != BGWH_STOPPED)
				continue;
		}
		if (!hp->wanted)
		{
			StopProc(hp);
			Procs = foreach_delete_current(Procs, lc);
			pfree(hp);
			continue;
		}
		if (hp->handle != NULL)
			WatchProc(hp, now);
		if (hp->handle == NULL && now >= hp->restart_at)
			(void) StartProc(hp);
	}
}

/* Stops every handler and relay process (the worker is exiting). */
void
EbProcsStop(void)
{
	ListCell   *lc;

	foreach(lc, Procs)
		StopProc(lfirst(lc));
	list_free_deep(Procs);
	Procs = NIL;
}


/* Defines eventbus.handler_timeout; with preloading, the slots. */
void
EbProcsInit(void)
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
}
