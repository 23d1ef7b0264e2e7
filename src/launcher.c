/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher: one per cluster, it keeps one background worker
 *	  (worker.c) running per database that has the extension; and the
 *	  shared slots through which backends and workers talk.
 *
 * The launcher is registered from shared_preload_libraries and starts once
 * recovery has finished (so never on a standby). It lists the databases in
 * pg_database every EB_RESCAN_MS and starts a worker for each. A worker
 * connects, looks for the extension, and exits at once (marking its
 * database "absent") when it is not there. CREATE EXTENSION asks the
 * launcher, at commit, to start the worker of its database at once.
 *
 * Each database has a slot: the worker's pid, latch and state, the
 * subscriptions that committing transactions named since the worker's last
 * tick ("kicks", wake.c), and the counters behind eventbus.worker_stats.
 *
 * Lifecycle: a worker that exits while it should run (an error, SIGTERM
 * from pg_terminate_backend) is started again after
 * eventbus.worker_restart_delay. Statements that need a database without
 * other connections (DROP DATABASE, CREATE DATABASE ... TEMPLATE, ALTER
 * DATABASE ... RENAME / SET TABLESPACE) stop its worker first, through the
 * ProcessUtility hook, and let the launcher start it again afterwards
 * (unless the database was dropped).
 *
 * Locking: every slot is under one named LWLock ("eventbus launcher"),
 * taken exclusively for any change and for the scans over all slots;
 * FindSlot and FindOrAddSlot assert that it is held. It is never held
 * while waiting for a process or registering a worker.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "launcher.h"
#include "metrics_http.h"
#include "notify.h"
#include "stats.h"

#include <signal.h>
#include <unistd.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/* Databases the launcher keeps track of. */
#define EB_MAX_DATABASES	256

/* How often the launcher lists the databases again. */
#define EB_RESCAN_MS		10000

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
	uint64		cut_requested;	/* polls that asked for a cut */
	uint64		cut_done;		/* the requests a committed cut served */
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
	LWLock	   *lock;			/* protects everything below */
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
	EbDbSlot	dbs[EB_MAX_DATABASES];
} EbWorkerShared;

static EbWorkerShared *WorkerShared = NULL;
static shmem_request_hook_type PrevShmemRequest = NULL;
static shmem_startup_hook_type PrevShmemStartup = NULL;
static ProcessUtility_hook_type PrevProcessUtility = NULL;

/* eventbus.worker_restart_delay, in seconds */
static int	eb_worker_restart_delay = 5;

/* The launcher's SIGTERM. */
static volatile sig_atomic_t GotSigterm = false;

/* This worker's slot (worker processes only). */
static EbDbSlot *MySlot = NULL;

/* Backend-local: start this database's worker when the transaction commits. */
static bool StartAtCommit = false;

void		eventbus_launcher_main(Datum arg);

/* ---- shared memory ---- */

/* Asks for the slots and their lock (preload only). */
static void
LauncherShmemRequest(void)
{
	if (PrevShmemRequest)
		PrevShmemRequest();
	RequestAddinShmemSpace(MAXALIGN(sizeof(EbWorkerShared)));
	RequestNamedLWLockTranche("eventbus launcher", 1);
}

/* Finds or creates the slots. */
static void
LauncherShmemStartup(void)
{
	bool		found;

	if (PrevShmemStartup)
		PrevShmemStartup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	WorkerShared = ShmemInitStruct("eventbus workers", sizeof(EbWorkerShared), &found);
	if (!found)
	{
		memset(WorkerShared, 0, sizeof(EbWorkerShared));
		WorkerShared->lock = &(GetNamedLWLockTranche("eventbus launcher"))->lock;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Returns the slot of a database, or NULL; caller holds the lock. */
static EbDbSlot *
FindSlot(Oid dboid)
{
	Assert(LWLockHeldByMe(WorkerShared->lock));
	for (int i = 0; i < EB_MAX_DATABASES; i++)
		if (WorkerShared->dbs[i].state != EB_DB_FREE && WorkerShared->dbs[i].dboid == dboid)
			return &WorkerShared->dbs[i];
	return NULL;
}

/* Returns the slot of a database, making one; NULL when full. Lock held exclusively. */
static EbDbSlot *
FindOrAddSlot(Oid dboid)
{
	EbDbSlot   *slot = FindSlot(dboid);

	Assert(LWLockHeldByMeInMode(WorkerShared->lock, LW_EXCLUSIVE));
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
	LWLockAcquire(WorkerShared->lock, LW_EXCLUSIVE);
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
	LWLockRelease(WorkerShared->lock);
	if (latch != NULL)
		SetLatch(latch);
}

/*
 * Asks this database's worker to cut batches now (a poll found none).
 * Returns the request's number, to wait for with EbWorkerCutDone; 0 when
 * no worker runs for the database (the caller cuts itself).
 */
uint64
EbWorkerRequestCut(void)
{
	EbDbSlot   *slot;
	Latch	   *latch = NULL;
	uint64		seq = 0;

	if (WorkerShared == NULL)
		return 0;
	LWLockAcquire(WorkerShared->lock, LW_EXCLUSIVE);
	slot = FindSlot(MyDatabaseId);
	if (slot != NULL && slot->state == EB_DB_RUNNING && slot->pid != 0 && slot->latch != NULL &&
		slot->pid != MyProcPid)
	{
		seq = ++slot->cut_requested;
		latch = slot->latch;
	}
	LWLockRelease(WorkerShared->lock);
	if (latch != NULL)
		SetLatch(latch);
	return seq;
}

/* Whether another process runs as this database's worker. */
bool
EbWorkerRunning(void)
{
	EbDbSlot   *slot;
	bool		running = false;

	if (WorkerShared == NULL)
		return false;
	LWLockAcquire(WorkerShared->lock, LW_SHARED);
	slot = FindSlot(MyDatabaseId);
	running = slot != NULL && slot->state == EB_DB_RUNNING && slot->pid != 0 &&
		slot->pid != MyProcPid;
	LWLockRelease(WorkerShared->lock);
	return running;
}

/*
 * Whether the cut request "seq" was served by a committed cut, or can no
 * longer be (the worker stopped).
 */
bool
EbWorkerCutDone(uint64 seq)
{
	EbDbSlot   *slot;
	bool		done = true;

	if (WorkerShared == NULL)
		return true;
	LWLockAcquire(WorkerShared->lock, LW_SHARED);
	slot = FindSlot(MyDatabaseId);
	if (slot != NULL && slot->state == EB_DB_RUNNING && slot->pid != 0)
		done = slot->cut_done >= seq;
	LWLockRelease(WorkerShared->lock);
	return done;
}

/* At commit of CREATE EXTENSION: asks the launcher to start this database's worker. */
static void
LauncherXactCallback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && StartAtCommit && WorkerShared != NULL)
	{
		Latch	   *latch = NULL;
		EbDbSlot   *slot;

		LWLockAcquire(WorkerShared->lock, LW_EXCLUSIVE);
		slot = FindOrAddSlot(MyDatabaseId);
		if (slot != NULL)
			slot->start_requested = true;
		latch = WorkerShared->launcher_latch;
		LWLockRelease(WorkerShared->lock);
		if (latch != NULL)
			SetLatch(latch);
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		StartAtCommit = false;
}

/*
 * Marks a database's worker stopped and returns its pid (0: none running);
 * false when the launcher has no worker for it. It stays stopped until
 * ResumeWorkerFor.
 */
static bool
MarkWorkerStopped(Oid dboid, pid_t *pid)
{
	EbDbSlot   *slot;

	*pid = 0;
	/*
	 * A worker that is starting (no pid yet) sees EB_DB_STOPPED when it
	 * claims the slot and leaves; the statement's own wait for other
	 * backends covers that moment.
	 */
	LWLockAcquire(WorkerShared->lock, LW_EXCLUSIVE);
	slot = FindSlot(dboid);
	if (slot != NULL && slot->state != EB_DB_ABSENT)
	{
		*pid = slot->pid;
		slot->state = EB_DB_STOPPED;
		slot->start_requested = false;
	}
	LWLockRelease(WorkerShared->lock);
	return slot != NULL;
}

/* Stops a worker process and waits (up to 5 s) until it is gone. */
static void
WaitWorkerGone(Oid dboid, pid_t pid)
{
	kill(pid, SIGTERM);
	for (int i = 0; i < 500; i++)
	{
		EbDbSlot   *slot;
		bool		gone;

		LWLockAcquire(WorkerShared->lock, LW_SHARED);
		slot = FindSlot(dboid);
		gone = slot == NULL || slot->pid != pid;
		LWLockRelease(WorkerShared->lock);
		if (gone || kill(pid, 0) != 0)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* Lets the launcher start the worker of a database again. */
static void
ResumeWorkerFor(Oid dboid)
{
	EbDbSlot   *slot;
	Latch	   *latch;

	LWLockAcquire(WorkerShared->lock, LW_EXCLUSIVE);
	slot = FindSlot(dboid);
	if (slot != NULL && slot->state == EB_DB_STOPPED)
		slot->state = EB_DB_NEW;
	latch = WorkerShared->launcher_latch;
	LWLockRelease(WorkerShared->lock);
	if (latch != NULL)
		SetLatch(latch);
}

/* The database a utility statement needs alone, or InvalidOid. */
static Oid
DatabaseNeededAlone(Node *parsetree)
{
	ListCell   *lc;

	switch (nodeTag(parsetree))
	{
		case T_DropdbStmt:
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
 * worker (and the metrics endpoint connected to it) first; the launcher
 * starts the worker again afterwards unless the database was dropped,
 * also when the statement fails or is cancelled while it waits.
 */
static void
LauncherProcessUtility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					   ProcessUtilityContext context, ParamListInfo params,
					   QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	bool		dropdb = IsA(pstmt->utilityStmt, DropdbStmt);
	volatile Oid dboid = InvalidOid;
	volatile bool stopped = false;

	if (WorkerShared != NULL)
		dboid = DatabaseNeededAlone(pstmt->utilityStmt);
	/* Only for those who may run the statement: others get its error. */
	if (!(OidIsValid(dboid) && dboid != MyDatabaseId &&
		  pg_database_ownercheck(dboid, GetUserId())))
		dboid = InvalidOid;

	PG_TRY();
	{
		if (OidIsValid(dboid))
		{
			pid_t		metrics_pid = EbMetricsWorkerIn(dboid);
			pid_t		pid;

			stopped = MarkWorkerStopped(dboid, &pid);
			if (pid != 0)
				WaitWorkerGone(dboid, pid);
			/* The HTTP endpoint too; the postmaster restarts it after 10 s. */
			if (metrics_pid != 0)
				(void) kill(metrics_pid, SIGTERM);
		}
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
	if (stopped && !dropdb)
		ResumeWorkerFor(dboid);
	if (dropdb && OidIsValid(dboid))
	{
		EbStatsForgetDatabase(dboid);
		EbNotifyForgetDatabase(dboid);
	}
}

/* ---- the launcher ---- */

/* The launcher's SIGTERM: leave the loop. */
static void
LauncherSigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	GotSigterm = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

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

	LWLockAcquire(WorkerShared->lock, LW_EXCLUSIVE);
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
	LWLockRelease(WorkerShared->lock);
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

	pqsignal(SIGTERM, LauncherSigterm);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("eventbus launcher");

	LWLockAcquire(WorkerShared->lock, LW_EXCLUSIVE);
	WorkerShared->launcher_pid = MyProcPid;
	WorkerShared->launcher_latch = MyLatch;
	LWLockRelease(WorkerShared->lock);
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

			LWLockAcquire(WorkerShared->lock, LW_EXCLUSIVE);
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
			LWLockRelease(WorkerShared->lock);

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
					LWLockAcquire(WorkerShared->lock, LW_EXCLUSIVE);
					if (slot->dboid == dboid && slot->state == EB_DB_STARTING)
						slot->state = prev_state;
					LWLockRelease(WorkerShared->lock);
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

	LWLockAcquire(WorkerShared->lock, LW_EXCLUSIVE);
	WorkerShared->launcher_pid = 0;
	WorkerShared->launcher_latch = NULL;
	LWLockRelease(WorkerShared->lock);
	/* Exit code 1: the postmaster starts the launcher again (not at shutdown). */
	proc_exit(1);
}

/* ---- a worker's own slot (worker.c) ---- */

/* Marks this worker's slot free of it on exit. */
static void
SlotOnExit(int code, Datum arg)
{
	if (MySlot == NULL)
		return;
	LWLockAcquire(WorkerShared->lock, LW_EXCLUSIVE);
	if (MySlot->pid == MyProcPid)
	{
		MySlot->pid = 0;
		MySlot->latch = NULL;
	}
	LWLockRelease(WorkerShared->lock);
}

/*
 * Claims the slot of a database for this worker process. Returns false
 * when the database's worker was stopped meanwhile or another worker has
 * the slot: this one must leave.
 */
bool
EbSlotClaim(Oid dboid)
{
	LWLockAcquire(WorkerShared->lock, LW_EXCLUSIVE);
	MySlot = FindOrAddSlot(dboid);
	if (MySlot != NULL &&
		(MySlot->state == EB_DB_STOPPED ||
		 (MySlot->pid != 0 && MySlot->pid != MyProcPid)))
		MySlot = NULL;
	else if (MySlot != NULL)
	{
		MySlot->pid = MyProcPid;
		MySlot->latch = MyLatch;
	}
	LWLockRelease(WorkerShared->lock);
	if (MySlot == NULL)
		return false;
	before_shmem_exit(SlotOnExit, (Datum) 0);
	return true;
}

/*
 * Records a state for this worker's database, unless a statement that
 * needs the database alone has stopped it (that state stays).
 */
void
EbSlotSetState(EbDbState state)
{
	LWLockAcquire(WorkerShared->lock, LW_EXCLUSIVE);
	if (MySlot->state != EB_DB_STOPPED)
		MySlot->state = state;
	LWLockRelease(WorkerShared->lock);
}

/* Takes the subscriptions kicked since the last tick; returns kick_all. */
bool
EbSlotTakeKicks(int32 *kicks, int *nkicks)
{
	bool		all;

	LWLockAcquire(WorkerShared->lock, LW_EXCLUSIVE);
	*nkicks = MySlot->nkicks;
	memcpy(kicks, MySlot->kicks, sizeof(int32) * MySlot->nkicks);
	all = MySlot->kick_all;
	MySlot->nkicks = 0;
	MySlot->kick_all = false;
	LWLockRelease(WorkerShared->lock);
	return all;
}

/* The cut requests so far (a tick that starts now serves them all). */
uint64
EbSlotCutRequested(void)
{
	uint64		seq;

	LWLockAcquire(WorkerShared->lock, LW_SHARED);
	seq = MySlot->cut_requested;
	LWLockRelease(WorkerShared->lock);
	return seq;
}

/* Records that the cut requests up to seq were served (the cut committed). */
void
EbSlotSetCutDone(uint64 seq)
{
	LWLockAcquire(WorkerShared->lock, LW_EXCLUSIVE);
	MySlot->cut_done = Max(MySlot->cut_done, seq);
	LWLockRelease(WorkerShared->lock);
}

/* Counts a tick and the notifications it sent. */
void
EbSlotCountTick(int notifications, TimestampTz at)
{
	LWLockAcquire(WorkerShared->lock, LW_EXCLUSIVE);
	MySlot->notifications += notifications;
	MySlot->ticks++;
	MySlot->last_tick_at = at;
	LWLockRelease(WorkerShared->lock);
}

/* Counts a round of the worker: the time it worked. */
void
EbSlotCountRound(double seconds)
{
	LWLockAcquire(WorkerShared->lock, LW_EXCLUSIVE);
	MySlot->last_loop_seconds = seconds;
	MySlot->loop_seconds += seconds;
	LWLockRelease(WorkerShared->lock);
}

/* Counts handler calls of a database's handler processes, for worker_stats. */
void
EbCountHandlerCalls(Oid dboid, int calls)
{
	EbDbSlot   *slot;

	if (WorkerShared == NULL || calls <= 0)
		return;
	LWLockAcquire(WorkerShared->lock, LW_EXCLUSIVE);
	slot = FindSlot(dboid);
	if (slot != NULL)
		slot->handler_calls += calls;
	LWLockRelease(WorkerShared->lock);
}

/* Keeps the text of the error that ends this worker, for worker_stats. */
void
EbSlotSetError(const char *message)
{
	LWLockAcquire(WorkerShared->lock, LW_EXCLUSIVE);
	strlcpy(MySlot->last_error, message ? message : "", sizeof(MySlot->last_error));
	LWLockRelease(WorkerShared->lock);
}

/* ---- SQL ---- */

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
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	EbDbSlot   *copy;
	int			n = 0;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	if (WorkerShared == NULL)
		return (Datum) 0;
	copy = palloc(sizeof(EbDbSlot) * EB_MAX_DATABASES);
	LWLockAcquire(WorkerShared->lock, LW_SHARED);
	for (int i = 0; i < EB_MAX_DATABASES; i++)
	{
		EbDbSlot   *slot = &WorkerShared->dbs[i];

		if (slot->state == EB_DB_FREE || slot->state == EB_DB_ABSENT || slot->state == EB_DB_NEW)
			continue;
		copy[n++] = *slot;
	}
	LWLockRelease(WorkerShared->lock);

	for (int i = 0; i < n; i++)
	{
		Datum		values[10];
		bool		nulls[10] = {0};
		char	   *datname = get_database_name(copy[i].dboid);

		if (datname == NULL)	/* dropped meanwhile */
			continue;
		copy[i].last_error[sizeof(copy[i].last_error) - 1] = '\0';
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
		nulls[9] = (copy[i].last_error[0] == '\0');
		if (!nulls[9])
			values[9] = CStringGetTextDatum(copy[i].last_error);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(eventbus_worker_stats_reset);

/* SQL eventbus._worker_stats_reset(): zeroes this database's worker counters. */
Datum
eventbus_worker_stats_reset(PG_FUNCTION_ARGS)
{
	EbDbSlot   *slot;

	if (WorkerShared == NULL)
		PG_RETURN_VOID();
	LWLockAcquire(WorkerShared->lock, LW_EXCLUSIVE);
	slot = FindSlot(MyDatabaseId);
	if (slot != NULL)
	{
		slot->ticks = slot->notifications = slot->handler_calls = 0;
		slot->loop_seconds = slot->last_loop_seconds = 0;
		slot->last_error[0] = '\0';
	}
	LWLockRelease(WorkerShared->lock);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(eventbus_worker_start);

/* SQL eventbus._worker_start(): start this database's worker at commit. */
Datum
eventbus_worker_start(PG_FUNCTION_ARGS)
{
	StartAtCommit = true;
	PG_RETURN_VOID();
}

/* Defines the launcher's setting; registers it, the shared memory and the hooks (preload only). */
void
EbLauncherInit(void)
{
	BackgroundWorker worker;

	DefineCustomIntVariable("eventbus.worker_restart_delay",
							"Time before the launcher starts a worker again after it failed or was terminated.",
							"Valid range: 0 to 3600 seconds.",
							&eb_worker_restart_delay,
							5,
							0,
							3600,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	RegisterXactCallback(LauncherXactCallback, NULL);
	if (!process_shared_preload_libraries_in_progress)
		return;

	PrevShmemRequest = shmem_request_hook;
	shmem_request_hook = LauncherShmemRequest;
	PrevShmemStartup = shmem_startup_hook;
	shmem_startup_hook = LauncherShmemStartup;
	PrevProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = LauncherProcessUtility;

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
