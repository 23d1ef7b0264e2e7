/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher: one per cluster, it keeps one background worker
 *	  (worker.c) running per database that has the extension.
 *
 * The launcher is registered from shared_preload_libraries and starts once
 * recovery has finished (so never on a standby). It lists the databases in
 * pg_database every EB_RESCAN_MS and starts a worker for each. A worker
 * connects, looks for the extension, and exits at once (marking its
 * database "absent") when it is not there. CREATE EXTENSION asks the
 * launcher, at commit, to start the worker of its database at once.
 *
 * Each database has a slot (slots.c): the worker's pid, latch and state,
 * what committing transactions tell it, its counters.
 *
 * Lifecycle: a worker that exits while it should run (an error, SIGTERM
 * from pg_terminate_backend) is started again after
 * eventbus.worker_restart_delay. Statements that need a database without
 * other connections (DROP DATABASE, CREATE DATABASE ... TEMPLATE, ALTER
 * DATABASE ... RENAME / SET TABLESPACE) stop its worker first, through the
 * ProcessUtility hook, and let the launcher start it again afterwards
 * (unless the database was dropped).
 *
 * Locking: the slots' named LWLock (slots.c), never held while waiting
 * for a process or registering a worker.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "launcher.h"
#include "slots_int.h"
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
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_database.h"
#include "commands/extension.h"
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
#include "storage/lmgr.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/* How often the launcher lists the databases again. */
#define EB_RESCAN_MS		10000

static shmem_request_hook_type PrevShmemRequest = NULL;
static shmem_startup_hook_type PrevShmemStartup = NULL;
static ProcessUtility_hook_type PrevProcessUtility = NULL;

/* eventbus.worker_restart_delay, in seconds */
static int	eb_worker_restart_delay = 5;

/* The launcher's SIGTERM. */
static volatile sig_atomic_t GotSigterm = false;

/* Backend-local: start this database's worker when the transaction commits. */
static bool StartAtCommit = false;

/*
 * Backend-local: DROP EXTENSION stopped this database's worker; at the end
 * of the transaction it is resumed, unless the extension is gone
 * (DroppedAtCommit, known just before the commit).
 */
static bool ResumeAtEnd = false;
static bool DroppedAtCommit = false;

static void ResumeWorkerFor(Oid dboid);

void		eventbus_launcher_main(Datum arg);

/* Asks for the slots and their lock (preload only). */
static void
LauncherShmemRequest(void)
{
	if (PrevShmemRequest)
		PrevShmemRequest();
	EbSlotsShmemRequest();
}

/* Finds or creates the slots. */
static void
LauncherShmemStartup(void)
{
	if (PrevShmemStartup)
		PrevShmemStartup();
	EbSlotsShmemStartup();
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
		slot = EbFindOrAddSlot(MyDatabaseId);
		if (slot != NULL)
			slot->start_requested = true;
		latch = WorkerShared->launcher_latch;
		LWLockRelease(WorkerShared->lock);
		if (latch != NULL)
			SetLatch(latch);
	}
	/*
	 * After DROP EXTENSION: a committed drop leaves the database without
	 * a worker for good (what the worker would do on noticing it); a
	 * rolled-back one, or one a savepoint undid, a worker as before.
	 */
	if (event == XACT_EVENT_PRE_COMMIT && ResumeAtEnd)
		DroppedAtCommit = !OidIsValid(get_extension_oid("eventbus", true));
	if (event == XACT_EVENT_COMMIT && ResumeAtEnd && DroppedAtCommit)
	{
		EbDbSlot   *slot;

		LWLockAcquire(WorkerShared->lock, LW_EXCLUSIVE);
		slot = EbFindSlot(MyDatabaseId);
		if (slot != NULL && slot->state == EB_DB_STOPPED)
			slot->state = EB_DB_ABSENT;
		LWLockRelease(WorkerShared->lock);
		EbStatsForgetDatabase(MyDatabaseId);
		EbNotifyForgetDatabase(MyDatabaseId);
		ereport(LOG, (errmsg("eventbus worker stopping: the extension was dropped from database %u",
							 MyDatabaseId)));
	}
	else if ((event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT) && ResumeAtEnd)
		ResumeWorkerFor(MyDatabaseId);
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		StartAtCommit = ResumeAtEnd = DroppedAtCommit = false;
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
	slot = EbFindSlot(dboid);
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
		slot = EbFindSlot(dboid);
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
	slot = EbFindSlot(dboid);
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

/* Whether a statement drops extension eventbus of this database, by one who may. */
static bool
DropsEventbus(Node *parsetree)
{
	DropStmt   *stmt = (DropStmt *) parsetree;
	ListCell   *lc;
	Oid			extoid;

	if (!IsA(parsetree, DropStmt) || stmt->removeType != OBJECT_EXTENSION)
		return false;
	foreach(lc, stmt->objects)
	{
		if (strcmp(strVal(lfirst(lc)), "eventbus") != 0)
			continue;
		extoid = get_extension_oid("eventbus", true);
		return OidIsValid(extoid) && pg_extension_ownercheck(extoid, GetUserId());
	}
	return false;
}

/*
 * Before DROP EXTENSION eventbus: takes ACCESS EXCLUSIVE on every table,
 * sequence and view of schema eventbus, never waiting while it holds one.
 * The drop itself would lock them one by one in its own order, which a
 * poller or handler holding eventbus.subscription and then wanting
 * eventbus.topic crosses: a deadlock. Here it waits for one lock (first
 * eventbus.subscription, where consumers begin), takes the others only
 * if free, and otherwise lets all go and waits for the one it missed.
 */
static void
LockEventbusRelations(void)
{
	Oid			nsp = get_namespace_oid(EB_SCHEMA, true);
	Relation	pgclass;
	TableScanDesc scan;
	HeapTuple	tuple;
	List	   *rels = NIL;
	Oid			first;

	if (!OidIsValid(nsp))
		return;
	pgclass = table_open(RelationRelationId, AccessShareLock);
	scan = table_beginscan_catalog(pgclass, 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_class c = (Form_pg_class) GETSTRUCT(tuple);

		if (c->relnamespace == nsp &&
			(c->relkind == RELKIND_RELATION || c->relkind == RELKIND_SEQUENCE ||
			 c->relkind == RELKIND_VIEW))
			rels = lappend_oid(rels, c->oid);
	}
	table_endscan(scan);
	table_close(pgclass, AccessShareLock);
	first = get_relname_relid("subscription", nsp);
	if (!OidIsValid(first) && rels != NIL)
		first = linitial_oid(rels);
	while (OidIsValid(first))
	{
		List	   *held;
		ListCell   *lc;
		Oid			missed = InvalidOid;

		LockRelationOid(first, AccessExclusiveLock);
		held = list_make1_oid(first);
		foreach(lc, rels)
		{
			if (lfirst_oid(lc) == first)
				continue;
			if (!ConditionalLockRelationOid(lfirst_oid(lc), AccessExclusiveLock))
			{
				missed = lfirst_oid(lc);
				break;
			}
			held = lappend_oid(held, lfirst_oid(lc));
		}
		if (!OidIsValid(missed))
			break;
		foreach(lc, held)
			UnlockRelationOid(lfirst_oid(lc), AccessExclusiveLock);
		list_free(held);
		first = missed;
	}
}

/*
 * DROP EXTENSION eventbus: stops this database's worker and waits until it
 * is gone (the launcher starts it again when the transaction ends: a
 * committed drop leaves it nothing to do), then takes the locks.
 */
static void
BeforeDropEventbus(void)
{
	if (WorkerShared != NULL)
	{
		pid_t		pid;

		if (MarkWorkerStopped(MyDatabaseId, &pid))
			ResumeAtEnd = true;
		if (pid != 0)
			WaitWorkerGone(MyDatabaseId, pid);
	}
	LockEventbusRelations();
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
		if (DropsEventbus(pstmt->utilityStmt))
			BeforeDropEventbus();
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
		(void) EbFindOrAddSlot(seen[i]);
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
			bool		sigterm = false;
			bool		error = false;
			char		last_error[256];
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
				/* How it ended, for the log line. */
				sigterm = slot->exit_sigterm;
				error = slot->exit_error;
				strlcpy(last_error, slot->last_error, sizeof(last_error));
				slot->exit_sigterm = slot->exit_error = false;
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

			if (died && sigterm)
				ereport(LOG,
						(errmsg("eventbus worker for database %u was stopped by SIGTERM; restarting it in %d s",
								dboid, eb_worker_restart_delay),
						 errdetail("pg_terminate_backend() or a signal sent by hand stops a worker; the launcher starts it again.")));
			else if (died && error)
				ereport(LOG,
						(errmsg("eventbus worker for database %u stopped after an error; restarting it in %d s",
								dboid, eb_worker_restart_delay),
						 errdetail("The error: %s", last_error)));
			else if (died)
				ereport(WARNING,
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
