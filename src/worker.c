/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  Background workers: one launcher per cluster, one worker per database
 *	  that has the extension.
 *
 * The launcher is registered from shared_preload_libraries and starts once
 * recovery has finished (so never on a standby). It lists the databases in
 * pg_database and starts a worker for each. A worker connects, looks for
 * the extension, and exits at once (marking its database "absent") when it
 * is not there. CREATE EXTENSION asks the launcher, at commit, to start the
 * worker of its database at once.
 *
 * The worker sleeps on its latch. Transactions that make events pollable
 * (publish, nack, redrive, ...) set it at commit (wake.c), and may name the
 * subscriptions concerned ("kicks"). Each round, the worker ticks: in one
 * short transaction, eventbus._tick() finds what became pollable since the
 * previous tick and sends at most one NOTIFY per subscription. Then it runs
 * handler subscriptions (handler.c) and, now and then, maintenance. It
 * sleeps until the next due retry or lease end, at most tick_interval.
 *
 * Lifecycle: SIGTERM ends a worker cleanly; if nobody asked it to stop
 * (DROP DATABASE, DROP EXTENSION) the launcher starts it again after
 * eventbus.worker_restart_delay, as it does after an error. Statements that
 * need a database without other connections (DROP DATABASE, CREATE
 * DATABASE ... TEMPLATE, ALTER DATABASE ... RENAME / SET TABLESPACE) stop
 * its worker first (ProcessUtility hook).
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"

#include <signal.h>
#include <unistd.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "utils/acl.h"
#include "commands/async.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/utility.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/* Databases the launcher keeps track of. */
#define EB_MAX_DATABASES	256
/* Subscriptions a database remembers as kicked between two ticks. */
#define EB_MAX_KICKS		64
/* Ticks are this many times their own cost apart, at least (under load). */
#define EB_TICK_SPACING		3

/* How often the launcher lists the databases again. */
#define EB_RESCAN_MS		10000

typedef enum EbDbState
{
	EB_DB_FREE = 0,				/* slot unused */
	EB_DB_NEW,					/* not probed yet: start a worker */
	EB_DB_STARTING,				/* worker registered, not yet running */
	EB_DB_RUNNING,				/* worker running */
	EB_DB_RESTART,				/* worker died: start again at restart_at */
	EB_DB_ABSENT,				/* no extension in it: no worker */
	EB_DB_STOPPED				/* asked to stop (DROP DATABASE ...) */
} EbDbState;

typedef struct EbDbSlot
{
	Oid			dboid;
	EbDbState	state;
	pid_t		pid;			/* worker, when running */
	Latch	   *latch;			/* worker's latch, when running */
	bool		start_requested;	/* CREATE EXTENSION committed */
	TimestampTz restart_at;		/* EB_DB_RESTART */
	bool		kick_all;		/* kicks overflowed: look at every subscription */
	int			nkicks;
	int32		kicks[EB_MAX_KICKS];	/* subscription ids */
	/* Counters, for eventbus.worker_stats. */
	uint64		ticks;
	uint64		notifications;
	uint64		handler_calls;
	TimestampTz last_tick_at;
	double		last_loop_seconds;	/* the last round's work */
	double		loop_seconds;	/* all rounds' work */
	char		last_error[256];
} EbDbSlot;

typedef struct EbWorkerShared
{
	slock_t		mutex;			/* protects everything below */
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
	EbDbSlot	dbs[EB_MAX_DATABASES];
} EbWorkerShared;

static EbWorkerShared *WorkerShared = NULL;
static shmem_request_hook_type PrevShmemRequest = NULL;
static shmem_startup_hook_type PrevShmemStartup = NULL;
static ProcessUtility_hook_type PrevProcessUtility = NULL;

/* Settings (eventbus.c defines them). */
int			eb_tick_interval = 1000;	/* ms */
int			eb_tick_min_interval = 2;	/* ms */
int			eb_maintenance_interval = 60;	/* s */
int			eb_worker_restart_delay = 5;	/* s */

/* Set by the signal handlers. */
static volatile sig_atomic_t GotSigterm = false;

/* True while a worker works in a transaction: SIGTERM cancels it. */
static volatile sig_atomic_t InWork = false;

/* This worker's slot (worker processes only). */
static EbDbSlot *MySlot = NULL;

/* Backend-local: what to tell the worker when this transaction commits. */
static bool StartAtCommit = false;

void		eventbus_launcher_main(Datum arg);
void		eventbus_worker_main(Datum arg);

/* ---- shared memory ---- */

static void
WorkerShmemRequest(void)
{
	if (PrevShmemRequest)
		PrevShmemRequest();
	RequestAddinShmemSpace(MAXALIGN(sizeof(EbWorkerShared)));
}

static void
WorkerShmemStartup(void)
{
	bool		found;

	if (PrevShmemStartup)
		PrevShmemStartup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	WorkerShared = ShmemInitStruct("eventbus workers", sizeof(EbWorkerShared), &found);
	if (!found)
	{
		memset(WorkerShared, 0, sizeof(EbWorkerShared));
		SpinLockInit(&WorkerShared->mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Returns the slot of a database, or NULL; caller holds the mutex. */
static EbDbSlot *
FindSlot(Oid dboid)
{
	for (int i = 0; i < EB_MAX_DATABASES; i++)
		if (WorkerShared->dbs[i].state != EB_DB_FREE && WorkerShared->dbs[i].dboid == dboid)
			return &WorkerShared->dbs[i];
	return NULL;
}

/* Returns the slot of a database, making one; NULL when full. Mutex held. */
static EbDbSlot *
FindOrAddSlot(Oid dboid)
{
	EbDbSlot   *slot = FindSlot(dboid);

	if (slot != NULL)
		return slot;
	for (int i = 0; i < EB_MAX_DATABASES; i++)
	{
		slot = &WorkerShared->dbs[i];
		if (slot->state == EB_DB_FREE)
		{
			memset(slot, 0, sizeof(EbDbSlot));
			slot->dboid = dboid;
			slot->state = EB_DB_NEW;
			return slot;
		}
	}
	return NULL;
}

/* ---- called by ordinary backends ---- */

/*
 * At commit of a transaction that made events pollable: sets the worker's
 * latch, and remembers the subscriptions named (kick_all: all of them).
 */
void
EbWorkerKick(const int32 *sub_ids, int nsubs, bool kick_all)
{
	EbDbSlot   *slot;
	Latch	   *latch = NULL;

	static int	cached = -1;	/* index of this database's slot, probably */

	if (WorkerShared == NULL)
		return;
	SpinLockAcquire(&WorkerShared->mutex);
	if (cached >= 0 && WorkerShared->dbs[cached].dboid == MyDatabaseId &&
		WorkerShared->dbs[cached].state != EB_DB_FREE)
		slot = &WorkerShared->dbs[cached];
	else
	{
		slot = FindSlot(MyDatabaseId);
		cached = slot ? (int) (slot - WorkerShared->dbs) : -1;
	}
	if (slot != NULL && slot->state == EB_DB_RUNNING)
	{
		latch = slot->latch;
		for (int i = 0; i < nsubs && !slot->kick_all; i++)
		{
			bool		known = false;

			for (int j = 0; j < slot->nkicks; j++)
				known |= slot->kicks[j] == sub_ids[i];
			if (known)
				continue;
			if (slot->nkicks == EB_MAX_KICKS)
				slot->kick_all = true;
			else
				slot->kicks[slot->nkicks++] = sub_ids[i];
		}
		slot->kick_all |= kick_all;
	}
	SpinLockRelease(&WorkerShared->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

/* Start this database's worker when the transaction commits (CREATE EXTENSION). */
void
EbWorkerStartAtCommit(void)
{
	StartAtCommit = true;
}

static void
WorkerXactCallback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && StartAtCommit && WorkerShared != NULL)
	{
		Latch	   *latch = NULL;
		EbDbSlot   *slot;

		SpinLockAcquire(&WorkerShared->mutex);
		slot = FindOrAddSlot(MyDatabaseId);
		if (slot != NULL)
			slot->start_requested = true;
		latch = WorkerShared->launcher_latch;
		SpinLockRelease(&WorkerShared->mutex);
		if (latch != NULL)
			SetLatch(latch);
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		StartAtCommit = false;
}

/*
 * Stops the worker of a database and waits (up to 5 s) until it is gone.
 * Returns whether there was one; it stays stopped until EbWorkerResume.
 */
static bool
StopWorkerFor(Oid dboid)
{
	pid_t		pid = 0;
	EbDbSlot   *slot;

	if (WorkerShared == NULL || !OidIsValid(dboid))
		return false;
	/*
	 * A worker that is starting (no pid yet) sees EB_DB_STOPPED when it
	 * claims the slot and leaves; the statement's own wait for other
	 * backends covers that moment.
	 */
	SpinLockAcquire(&WorkerShared->mutex);
	slot = FindSlot(dboid);
	if (slot != NULL && slot->state != EB_DB_ABSENT)
	{
		pid = slot->pid;
		slot->state = EB_DB_STOPPED;
		slot->start_requested = false;
	}
	SpinLockRelease(&WorkerShared->mutex);
	if (slot == NULL)
		return false;
	if (pid == 0)
		return true;

	kill(pid, SIGTERM);
	for (int i = 0; i < 500; i++)
	{
		bool		gone;

		SpinLockAcquire(&WorkerShared->mutex);
		gone = slot->dboid != dboid || slot->pid != pid;
		SpinLockRelease(&WorkerShared->mutex);
		if (gone || kill(pid, 0) != 0)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	return true;
}

/* Lets the launcher start the worker of a database again. */
static void
ResumeWorkerFor(Oid dboid)
{
	EbDbSlot   *slot;
	Latch	   *latch;

	SpinLockAcquire(&WorkerShared->mutex);
	slot = FindSlot(dboid);
	if (slot != NULL && slot->state == EB_DB_STOPPED)
		slot->state = EB_DB_NEW;
	latch = WorkerShared->launcher_latch;
	SpinLockRelease(&WorkerShared->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

/* The database a utility statement needs alone, or InvalidOid. */
static Oid
DatabaseNeededAlone(Node *parsetree, bool *dropped)
{
	ListCell   *lc;

	*dropped = false;
	switch (nodeTag(parsetree))
	{
		case T_DropdbStmt:
			*dropped = true;
			return get_database_oid(((DropdbStmt *) parsetree)->dbname, true);
		case T_CreatedbStmt:
			foreach(lc, ((CreatedbStmt *) parsetree)->options)
			{
				DefElem    *opt = lfirst_node(DefElem, lc);

				if (strcmp(opt->defname, "template") == 0 && opt->arg != NULL)
					return get_database_oid(defGetString(opt), true);
			}
			return InvalidOid;
		case T_AlterDatabaseStmt:
			foreach(lc, ((AlterDatabaseStmt *) parsetree)->options)
			{
				DefElem    *opt = lfirst_node(DefElem, lc);

				if (strcmp(opt->defname, "tablespace") == 0)
					return get_database_oid(((AlterDatabaseStmt *) parsetree)->dbname, true);
			}
			return InvalidOid;
		case T_RenameStmt:
			if (((RenameStmt *) parsetree)->renameType == OBJECT_DATABASE)
				return get_database_oid(((RenameStmt *) parsetree)->subname, true);
			return InvalidOid;
		default:
			return InvalidOid;
	}
}

/*
 * Statements that need a database without other connections stop its
 * worker first; the launcher starts it again afterwards unless the
 * database was dropped.
 */
static void
WorkerProcessUtility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					 ProcessUtilityContext context, ParamListInfo params,
					 QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	bool		dropped = false;
	volatile Oid dboid = InvalidOid;
	volatile bool stopped = false;

	if (WorkerShared != NULL)
		dboid = DatabaseNeededAlone(pstmt->utilityStmt, &dropped);
	/* Only for those who may run the statement: others get its error. */
	if (OidIsValid(dboid) && dboid != MyDatabaseId &&
		pg_database_ownercheck(dboid, GetUserId()))
	{
		pid_t		metrics_pid = EbStatsMetricsWorkerIn(dboid);

		stopped = StopWorkerFor(dboid);
		/* The HTTP endpoint too; the postmaster restarts it after 10 s. */
		if (metrics_pid != 0)
			(void) kill(metrics_pid, SIGTERM);
	}

	PG_TRY();
	{
		if (PrevProcessUtility)
			PrevProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							   queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
									queryEnv, dest, qc);
	}
	PG_CATCH();
	{
		if (stopped)
			ResumeWorkerFor(dboid);
		PG_RE_THROW();
	}
	PG_END_TRY();
	/* A dropped database's slot is freed by the launcher's next scan. */
	if (stopped && !(IsA(pstmt->utilityStmt, DropdbStmt)))
		ResumeWorkerFor(dboid);
	if (IsA(pstmt->utilityStmt, DropdbStmt) && OidIsValid(dboid))
		EbStatsForgetDatabase(dboid);
}

/* ---- signals ---- */

static void
HandleSigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	GotSigterm = true;
	SetLatch(MyLatch);
	/* Also cancel the work in progress: a tick, maintenance, a handler call. */
	if (InWork || EbInHandler)
	{
		InterruptPending = true;
		QueryCancelPending = true;
	}
	errno = save_errno;
}

/* ---- the launcher ---- */

/* Lists the connectable databases; marks new ones, frees dropped ones. */
static void
ScanDatabases(void)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	Oid		   *seen;
	int			nseen = 0;
	int			max = 16;

	seen = palloc(sizeof(Oid) * max);
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (!db->datallowconn || db->datistemplate)
			continue;
		if (nseen == max)
		{
			max *= 2;
			seen = repalloc(seen, sizeof(Oid) * max);
		}
		seen[nseen++] = db->oid;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();

	SpinLockAcquire(&WorkerShared->mutex);
	for (int i = 0; i < nseen; i++)
		(void) FindOrAddSlot(seen[i]);
	for (int i = 0; i < EB_MAX_DATABASES; i++)
	{
		EbDbSlot   *slot = &WorkerShared->dbs[i];
		bool		exists = false;

		if (slot->state == EB_DB_FREE || slot->pid != 0 ||
			slot->state == EB_DB_STARTING || slot->state == EB_DB_RUNNING)
			continue;
		for (int j = 0; j < nseen && !exists; j++)
			exists = seen[j] == slot->dboid;
		if (!exists)
			slot->state = EB_DB_FREE;
	}
	SpinLockRelease(&WorkerShared->mutex);
	pfree(seen);
}

/* Registers a worker for a database; false when no background worker slot is free. */
static bool
StartWorker(Oid dboid, BackgroundWorkerHandle **handle)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;	/* the launcher restarts it */
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "eventbus");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "eventbus_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "eventbus worker for database %u", dboid);
	snprintf(worker.bgw_type, BGW_MAXLEN, "eventbus worker");
	worker.bgw_main_arg = ObjectIdGetDatum(dboid);
	worker.bgw_notify_pid = MyProcPid;
	return RegisterDynamicBackgroundWorker(&worker, handle);
}

/* The launcher: keeps one worker running per database with the extension. */
void
eventbus_launcher_main(Datum arg)
{
	BackgroundWorkerHandle *handles[EB_MAX_DATABASES] = {0};
	TimestampTz next_scan = 0;
	bool		warned_full = false;

	pqsignal(SIGTERM, HandleSigterm);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("eventbus launcher");

	SpinLockAcquire(&WorkerShared->mutex);
	WorkerShared->launcher_pid = MyProcPid;
	WorkerShared->launcher_latch = MyLatch;
	SpinLockRelease(&WorkerShared->mutex);
	ereport(LOG, (errmsg("eventbus launcher started")));

	while (!GotSigterm)
	{
		TimestampTz now = GetCurrentTimestamp();
		long		sleep_ms = EB_RESCAN_MS;

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (now >= next_scan)
		{
			ScanDatabases();
			next_scan = TimestampTzPlusMilliseconds(now, EB_RESCAN_MS);
		}

		for (int i = 0; i < EB_MAX_DATABASES; i++)
		{
			EbDbSlot   *slot = &WorkerShared->dbs[i];
			bool		start = false;
			bool		died = false;
			EbDbState	prev_state = EB_DB_NEW;
			Oid			dboid;
			pid_t		pid;

			/* A worker we started that is gone. */
			if (handles[i] != NULL &&
				GetBackgroundWorkerPid(handles[i], &pid) == BGWH_STOPPED)
			{
				pfree(handles[i]);
				handles[i] = NULL;
				died = true;
			}

			SpinLockAcquire(&WorkerShared->mutex);
			dboid = slot->dboid;
			/*
			 * A worker started by a previous launcher (this one was
			 * restarted): we have no handle, so its slot tells when it is gone.
			 */
			if (handles[i] == NULL && slot->pid == 0 &&
				(slot->state == EB_DB_RUNNING || slot->state == EB_DB_STARTING))
				died = true;
			if (died)
			{
				slot->pid = 0;
				slot->latch = NULL;
				if (slot->state == EB_DB_RUNNING || slot->state == EB_DB_STARTING)
				{
					slot->state = EB_DB_RESTART;
					slot->restart_at = TimestampTzPlusMilliseconds(now, eb_worker_restart_delay * 1000L);
				}
				else
					died = false;	/* it stopped on purpose */
			}
			if (slot->start_requested && handles[i] == NULL &&
				slot->state != EB_DB_FREE && slot->state != EB_DB_STOPPED)
			{
				slot->start_requested = false;
				slot->state = EB_DB_NEW;
			}
			if (handles[i] == NULL &&
				(slot->state == EB_DB_NEW ||
				 (slot->state == EB_DB_RESTART && now >= slot->restart_at)))
			{
				/* Before registering: the worker may finish before we look again. */
				start = true;
				prev_state = slot->state;
				slot->state = EB_DB_STARTING;
			}
			else if (slot->state == EB_DB_RESTART)
				sleep_ms = Min(sleep_ms, TimestampDifferenceMilliseconds(now, slot->restart_at) + 1);
			SpinLockRelease(&WorkerShared->mutex);

			if (died)
				ereport(LOG,
						(errmsg("eventbus worker for database %u exited unexpectedly; restarting it in %d s",
								dboid, eb_worker_restart_delay)));
			if (start)
			{
				if (StartWorker(dboid, &handles[i]))
					warned_full = false;
				else
				{
					handles[i] = NULL;
					SpinLockAcquire(&WorkerShared->mutex);
					if (slot->dboid == dboid && slot->state == EB_DB_STARTING)
						slot->state = prev_state;
					SpinLockRelease(&WorkerShared->mutex);
					if (!warned_full)
						ereport(WARNING,
								(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
								 errmsg("eventbus could not start a worker for database %u: no background worker slot is free", dboid),
								 errhint("Raise max_worker_processes (one eventbus worker per database with the extension, plus the launcher).")));
					warned_full = true;
					sleep_ms = Min(sleep_ms, 1000);
				}
			}
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(sleep_ms, 1), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();	/* e.g. the barrier of DROP DATABASE */
	}

	SpinLockAcquire(&WorkerShared->mutex);
	WorkerShared->launcher_pid = 0;
	WorkerShared->launcher_latch = NULL;
	SpinLockRelease(&WorkerShared->mutex);
	/* Exit code 1: the postmaster starts the launcher again (not at shutdown). */
	proc_exit(1);
}

/* ---- the worker ---- */

/* Marks this worker's slot on exit. */
static void
WorkerOnExit(int code, Datum arg)
{
	if (MySlot == NULL)
		return;
	SpinLockAcquire(&WorkerShared->mutex);
	if (MySlot->pid == MyProcPid)
	{
		MySlot->pid = 0;
		MySlot->latch = NULL;
	}
	SpinLockRelease(&WorkerShared->mutex);
}

/*
 * Records a state for this worker's database, unless a statement that
 * needs the database alone has stopped it (that state stays).
 */
static void
SetMyState(EbDbState state)
{
	SpinLockAcquire(&WorkerShared->mutex);
	if (MySlot->state != EB_DB_STOPPED)
		MySlot->state = state;
	SpinLockRelease(&WorkerShared->mutex);
}

/*
 * In a transaction: whether the extension is installed. Takes a share lock
 * on it, so a DROP EXTENSION waits for the end of this transaction.
 */
static bool
ExtensionPresent(void)
{
	Oid			extoid = get_extension_oid("eventbus", true);

	if (!OidIsValid(extoid))
		return false;
	LockDatabaseObject(ExtensionRelationId, extoid, 0, AccessShareLock);
	return get_extension_oid("eventbus", true) == extoid;
}

/* Adds "eventbus worker" to the context of every message of a worker. */
static void
WorkerErrorContext(void *arg)
{
	errcontext("eventbus background worker for database %u", MyDatabaseId);
}

/* Takes the subscriptions kicked since the last tick; returns kick_all. */
static bool
TakeKicks(int32 *kicks, int *nkicks)
{
	bool		all;

	SpinLockAcquire(&WorkerShared->mutex);
	*nkicks = MySlot->nkicks;
	memcpy(kicks, MySlot->kicks, sizeof(int32) * MySlot->nkicks);
	all = MySlot->kick_all;
	MySlot->nkicks = 0;
	MySlot->kick_all = false;
	SpinLockRelease(&WorkerShared->mutex);
	return all;
}

/* The tick's query, prepared once per worker. */
static SPIPlanPtr TickPlan = NULL;

/* The state a tick leaves for the next one. */
typedef struct EbTickState
{
	char	   *snapshot;		/* text of the previous tick's snapshot; NULL at first */
	TimestampTz at;				/* its time */
	TimestampTz next_due;		/* next retry or lease end; 0: none */
	List	   *handlers;		/* names of handler subscriptions to run */
	MemoryContext cxt;			/* holds the above */
} EbTickState;

/*
 * One tick, in its own transaction: eventbus._tick() notifies the
 * subscriptions with something new. Returns false when the extension is
 * gone.
 */
static bool
Tick(EbTickState *ts)
{
	int32		kicks[EB_MAX_KICKS];
	int			nkicks;
	bool		kick_all = TakeKicks(kicks, &nkicks);
	Oid			argtypes[4] = {TEXTOID, TIMESTAMPTZOID, INT4ARRAYOID, BOOLOID};
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	Datum	   *kickdatums;
	bool		present;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, "eventbus tick");
	present = ExtensionPresent();
	if (present)
	{
		int			ret;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		PushActiveSnapshot(GetTransactionSnapshot());

		args[0] = ts->snapshot ? CStringGetTextDatum(ts->snapshot) : (Datum) 0;
		nulls[0] = ts->snapshot ? ' ' : 'n';
		args[1] = TimestampTzGetDatum(ts->at);
		nulls[1] = ts->snapshot ? ' ' : 'n';
		kickdatums = palloc(sizeof(Datum) * Max(nkicks, 1));
		for (int i = 0; i < nkicks; i++)
			kickdatums[i] = Int32GetDatum(kicks[i]);
		args[2] = PointerGetDatum(construct_array(kickdatums, nkicks, INT4OID, 4, true, TYPALIGN_INT));
		args[3] = BoolGetDatum(kick_all);

		/* Parsed and planned once per worker (the plan cache revalidates it). */
		if (TickPlan == NULL)
		{
			SPIPlanPtr	plan = SPI_prepare("SELECT snap::text, tick_at, next_due, notified, handlers "
										   "FROM eventbus._tick($1::pg_snapshot, $2, $3, $4)",
										   4, argtypes);

			if (plan == NULL || SPI_keepplan(plan) != 0)
				elog(ERROR, "could not prepare the tick: %s", SPI_result_code_string(SPI_result));
			TickPlan = plan;
		}
		ret = SPI_execute_plan(TickPlan, args, nulls, false, 1);
		if (ret != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "eventbus._tick() failed");
		else
		{
			HeapTuple	tup = SPI_tuptable->vals[0];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			Datum		d;
			MemoryContext old;

			MemoryContextReset(ts->cxt);
			old = MemoryContextSwitchTo(ts->cxt);
			ts->snapshot = SPI_getvalue(tup, desc, 1);
			ts->at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 2, &isnull));
			d = SPI_getbinval(tup, desc, 3, &isnull);
			ts->next_due = isnull ? 0 : DatumGetTimestampTz(d);
			d = SPI_getbinval(tup, desc, 4, &isnull);
			if (!isnull)
			{
				SpinLockAcquire(&WorkerShared->mutex);
				MySlot->notifications += DatumGetInt32(d);
				MySlot->ticks++;
				MySlot->last_tick_at = ts->at;
				SpinLockRelease(&WorkerShared->mutex);
			}
			d = SPI_getbinval(tup, desc, 5, &isnull);
			ts->handlers = NIL;
			if (!isnull)
			{
				Datum	   *elems;
				bool	   *enulls;
				int			n;

				deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
								  &elems, &enulls, &n);
				for (int i = 0; i < n; i++)
					if (!enulls[i])
						ts->handlers = lappend(ts->handlers, TextDatumGetCString(elems[i]));
			}
			MemoryContextSwitchTo(old);
		}
		SPI_finish();
		PopActiveSnapshot();
	}
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return present;
}

/* One round of maintenance (eventbus._maintain()), in its own transaction. */
static void
Maintain(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, "eventbus maintenance");
	if (ExtensionPresent())
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		PushActiveSnapshot(GetTransactionSnapshot());
		if (SPI_execute("SELECT eventbus._maintain()", false, 0) != SPI_OK_SELECT)
			elog(ERROR, "eventbus._maintain() failed");
		SPI_finish();
		PopActiveSnapshot();
	}
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* When maintenance is due after a round at "last" (0: never ran). */
static TimestampTz
NextMaintenance(TimestampTz last)
{
	return last == 0 ? 0 : TimestampTzPlusMilliseconds(last, eb_maintenance_interval * 1000L);
}

/* The worker of one database. */
void
eventbus_worker_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);
	ErrorContextCallback errcb;
	EbTickState ts = {0};
	volatile TimestampTz last_maintenance = 0;
	volatile TimestampTz last_tick = 0;
	volatile int64 last_tick_cost = 0;	/* us */
	volatile bool present;

	pqsignal(SIGTERM, HandleSigterm);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("eventbus worker");

	/*
	 * Whatever the database or the configuration says: names resolve in
	 * pg_catalog only (the worker is a superuser; nobody's objects may
	 * capture its queries), each statement sees what committed before it
	 * (maintenance and ticks rely on it), and the worker may write.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_read_only", "off", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * Its commits need not wait for the WAL flush: a tick's NOTIFY gives
	 * its transaction an xid (and its commit a flush to wait for) though
	 * nothing of it must survive a crash; maintenance is redone; and a
	 * handler's writes commit or are lost together with its ack, so a lost
	 * commit means the event is handed out again. Publishers' flushes are
	 * not shared with the worker's then.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);

	/* Claim the database's slot; leave if another worker has it. */
	SpinLockAcquire(&WorkerShared->mutex);
	MySlot = FindOrAddSlot(dboid);
	if (MySlot != NULL &&
		(MySlot->state == EB_DB_STOPPED ||
		 (MySlot->pid != 0 && MySlot->pid != MyProcPid)))
		MySlot = NULL;			/* stopped meanwhile, or another worker has it */
	else if (MySlot != NULL)
	{
		MySlot->pid = MyProcPid;
		MySlot->latch = MyLatch;
	}
	SpinLockRelease(&WorkerShared->mutex);
	if (MySlot == NULL)
		proc_exit(0);
	before_shmem_exit(WorkerOnExit, (Datum) 0);

	/* Is the extension there? */
	StartTransactionCommand();
	present = ExtensionPresent();
	if (present)
		ereport(LOG, (errmsg("eventbus worker started for database \"%s\"",
							 get_database_name(MyDatabaseId))));
	CommitTransactionCommand();
	if (!present)
	{
		SetMyState(EB_DB_ABSENT);
		proc_exit(0);
	}
	SetMyState(EB_DB_RUNNING);

	errcb.callback = WorkerErrorContext;
	errcb.arg = NULL;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;


	ts.cxt = AllocSetContextCreate(TopMemoryContext, "eventbus tick", ALLOCSET_SMALL_SIZES);
	for (;;)
	{
		TimestampTz now;
		TimestampTz round_start;
		long		sleep_ms;
		MemoryContext loopcxt = CurrentMemoryContext;

		CHECK_FOR_INTERRUPTS();
		if (GotSigterm)
			break;
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		/*
		 * Under a stream of commits, tick at most every tick_min_interval,
		 * and leave at least EB_TICK_SPACING times the last tick's cost
		 * between two ticks (the worker ticks at most 1/EB_TICK_SPACING of
		 * the time, however long ticks get): the commits in between are
		 * taken by one tick.
		 */
		if (eb_tick_min_interval > 0 && last_tick != 0)
		{
			long		gap_ms = Max((long) eb_tick_min_interval,
									 (long) (EB_TICK_SPACING * last_tick_cost / 1000));
			long		ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
															 TimestampTzPlusMilliseconds(last_tick, gap_ms));

			if (ms > 0)
				(void) WaitLatch(NULL, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, ms, PG_WAIT_EXTENSION);
		}
		last_tick = GetCurrentTimestamp();
		ResetLatch(MyLatch);

		/* An error ends the worker (the launcher restarts it); keep its text. */
		round_start = GetCurrentTimestamp();
		InWork = true;
		PG_TRY();
		{
			bool		ticked = Tick(&ts);

			last_tick_cost = GetCurrentTimestamp() - last_tick;
			if (!ticked)
				present = false;
			else if (ts.handlers != NIL)
			{
				if (EbRunHandlers(ts.handlers, &GotSigterm))
					SetLatch(MyLatch);	/* some have more: go on after a tick */
			}
			now = GetCurrentTimestamp();
			if (present && now >= NextMaintenance(last_maintenance))
			{
				Maintain();
				last_maintenance = now;
			}
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(loopcxt);
			edata = CopyErrorData();
			SpinLockAcquire(&WorkerShared->mutex);
			strlcpy(MySlot->last_error, edata->message ? edata->message : "", sizeof(MySlot->last_error));
			SpinLockRelease(&WorkerShared->mutex);
			PG_RE_THROW();
		}
		PG_END_TRY();
		InWork = false;
		SpinLockAcquire(&WorkerShared->mutex);
		MySlot->last_loop_seconds = (double) (GetCurrentTimestamp() - round_start) / USECS_PER_SEC;
		MySlot->loop_seconds += MySlot->last_loop_seconds;
		SpinLockRelease(&WorkerShared->mutex);
		if (!present)
		{
			error_context_stack = errcb.previous;
			ereport(LOG, (errmsg("eventbus worker stopping: the extension was dropped from database %u",
								 MyDatabaseId)));
			EbStatsForgetDatabase(MyDatabaseId);
			SetMyState(EB_DB_ABSENT);
			proc_exit(0);
		}
		now = GetCurrentTimestamp();

		sleep_ms = eb_tick_interval;
		if (ts.next_due != 0)
			sleep_ms = Min(sleep_ms, TimestampDifferenceMilliseconds(now, ts.next_due) + 1);
		sleep_ms = Min(sleep_ms, TimestampDifferenceMilliseconds(now, NextMaintenance(last_maintenance)) + 1);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(sleep_ms, 1), PG_WAIT_EXTENSION);
	}

	/* SIGTERM: stopped on purpose, or killed (the launcher restarts it). */
	proc_exit(0);
}

/* Counts handler calls for worker_stats. */
void
EbWorkerCountHandlerCall(void)
{
	if (MySlot == NULL)
		return;
	SpinLockAcquire(&WorkerShared->mutex);
	MySlot->handler_calls++;
	SpinLockRelease(&WorkerShared->mutex);
}

/* Zeroes a database's worker counters (eventbus.reset_stats). */
void
EbWorkerResetStats(Oid dboid)
{
	if (WorkerShared == NULL)
		return;
	SpinLockAcquire(&WorkerShared->mutex);
	for (int i = 0; i < EB_MAX_DATABASES; i++)
	{
		EbDbSlot   *slot = &WorkerShared->dbs[i];

		if (slot->state == EB_DB_FREE || slot->dboid != dboid)
			continue;
		slot->ticks = slot->notifications = slot->handler_calls = 0;
		slot->loop_seconds = slot->last_loop_seconds = 0;
		slot->last_error[0] = '\0';
	}
	SpinLockRelease(&WorkerShared->mutex);
}

/* A copy of a database's last worker error (taken apart: it is long). */
static char *
SlotError(Oid dboid)
{
	char	   *copy = palloc0(sizeof(((EbDbSlot *) NULL)->last_error));

	SpinLockAcquire(&WorkerShared->mutex);
	for (int i = 0; i < EB_MAX_DATABASES; i++)
		if (WorkerShared->dbs[i].state != EB_DB_FREE && WorkerShared->dbs[i].dboid == dboid)
			memcpy(copy, WorkerShared->dbs[i].last_error, sizeof(WorkerShared->dbs[i].last_error));
	SpinLockRelease(&WorkerShared->mutex);
	copy[sizeof(((EbDbSlot *) NULL)->last_error) - 1] = '\0';
	return copy;
}

PG_FUNCTION_INFO_V1(eventbus_worker_stats);

/*
 * SQL eventbus._worker_stats(): a row per database the launcher serves
 * (databases without the extension left out): its worker's pid and state
 * and the counters of its rounds. No rows without the preload.
 */
Datum
eventbus_worker_stats(PG_FUNCTION_ARGS)
{
	static const char *const StateNames[] = {
		"free", "new", "starting", "running", "restarting", "absent", "stopped"
	};
	/* What is copied under the spinlock: the counters, not the kicks. */
	typedef struct
	{
		Oid			dboid;
		EbDbState	state;
		pid_t		pid;
		uint64		ticks,
					notifications,
					handler_calls;
		TimestampTz last_tick_at;
		double		last_loop_seconds,
					loop_seconds;
		bool		has_error;
	}			SlotCopy;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SlotCopy   *copy;
	int			n = 0;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	if (WorkerShared == NULL)
		return (Datum) 0;
	copy = palloc(sizeof(SlotCopy) * EB_MAX_DATABASES);
	SpinLockAcquire(&WorkerShared->mutex);
	for (int i = 0; i < EB_MAX_DATABASES; i++)
	{
		EbDbSlot   *slot = &WorkerShared->dbs[i];

		if (slot->state == EB_DB_FREE || slot->state == EB_DB_ABSENT || slot->state == EB_DB_NEW)
			continue;
		copy[n].dboid = slot->dboid;
		copy[n].state = slot->state;
		copy[n].pid = slot->pid;
		copy[n].ticks = slot->ticks;
		copy[n].notifications = slot->notifications;
		copy[n].handler_calls = slot->handler_calls;
		copy[n].last_tick_at = slot->last_tick_at;
		copy[n].last_loop_seconds = slot->last_loop_seconds;
		copy[n].loop_seconds = slot->loop_seconds;
		copy[n].has_error = slot->last_error[0] != '\0';
		n++;
	}
	SpinLockRelease(&WorkerShared->mutex);

	for (int i = 0; i < n; i++)
	{
		Datum		values[10];
		bool		nulls[10] = {0};
		char	   *datname = get_database_name(copy[i].dboid);

		if (datname == NULL)	/* dropped meanwhile */
			continue;
		values[0] = CStringGetTextDatum(datname);
		values[1] = Int32GetDatum(copy[i].pid);
		nulls[1] = (copy[i].pid == 0);
		values[2] = CStringGetTextDatum(StateNames[copy[i].state]);
		values[3] = Int64GetDatum((int64) copy[i].ticks);
		values[4] = Int64GetDatum((int64) copy[i].notifications);
		values[5] = Int64GetDatum((int64) copy[i].handler_calls);
		values[6] = TimestampTzGetDatum(copy[i].last_tick_at);
		nulls[6] = (copy[i].last_tick_at == 0);
		values[7] = Float8GetDatum(copy[i].last_loop_seconds);
		values[8] = Float8GetDatum(copy[i].loop_seconds);
		nulls[9] = !copy[i].has_error;
		if (copy[i].has_error)
			values[9] = CStringGetTextDatum(SlotError(copy[i].dboid));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* Registers the launcher, the shared memory and the hooks (preload only). */
void
EbWorkerInit(void)
{
	BackgroundWorker worker;

	RegisterXactCallback(WorkerXactCallback, NULL);
	if (!process_shared_preload_libraries_in_progress)
		return;

	PrevShmemRequest = shmem_request_hook;
	shmem_request_hook = WorkerShmemRequest;
	PrevShmemStartup = shmem_startup_hook;
	shmem_startup_hook = WorkerShmemStartup;
	PrevProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = WorkerProcessUtility;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "eventbus");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "eventbus_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "eventbus launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "eventbus launcher");
	RegisterBackgroundWorker(&worker);
}

PG_FUNCTION_INFO_V1(eventbus_worker_start);

/* SQL eventbus._worker_start(): start this database's worker at commit. */
Datum
eventbus_worker_start(PG_FUNCTION_ARGS)
{
	EbWorkerStartAtCommit();
	PG_RETURN_VOID();
}
