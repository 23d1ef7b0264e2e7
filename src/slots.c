/*-------------------------------------------------------------------------
 *
 * slots.c
 *	  The shared slots of the per-database workers: what committing
 *	  backends tell a database's worker (kicks, cut requests), what a
 *	  worker records in its own slot, and eventbus.worker_stats.
 *
 * Each database has a slot: the worker's pid, latch and state, the
 * subscriptions that committing transactions named since the worker's last
 * tick ("kicks", wake.c), the cut requests of polls that found nothing
 * (poll.c) and the counters behind eventbus.worker_stats. The launcher
 * (launcher.c) creates the slots and starts the workers.
 *
 * Locking: every slot is under one named LWLock ("eventbus launcher"),
 * taken exclusively for any change and for the scans over all slots;
 * EbFindSlot and EbFindOrAddSlot assert that it is held. It is never held
 * while waiting for a process or registering a worker.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "slots_int.h"

#include "commands/dbcommands.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

EbWorkerShared *WorkerShared = NULL;

/* This worker's slot (worker processes only). */
static EbDbSlot *MySlot = NULL;

/* ---- shared memory ---- */

/* Asks for the slots and their lock (preload only). */
void
EbSlotsShmemRequest(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(EbWorkerShared)));
	RequestNamedLWLockTranche("eventbus launcher", 1);
}

/* Finds or creates the slots. */
void
EbSlotsShmemStartup(void)
{
	bool		found;

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
EbDbSlot *
EbFindSlot(Oid dboid)
{
	Assert(LWLockHeldByMe(WorkerShared->lock));
	for (int i = 0; i < EB_MAX_DATABASES; i++)
		if (WorkerShared->dbs[i].state != EB_DB_FREE && WorkerShared->dbs[i].dboid == dboid)
			return &WorkerShared->dbs[i];
	return NULL;
}

/* Returns the slot of a database, making one; NULL when full. Lock held exclusively. */
EbDbSlot *
EbFindOrAddSlot(Oid dboid)
{
	EbDbSlot   *slot = EbFindSlot(dboid);

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
		slot = EbFindSlot(MyDatabaseId);
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
	slot = EbFindSlot(MyDatabaseId);
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
	slot = EbFindSlot(MyDatabaseId);
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
	slot = EbFindSlot(MyDatabaseId);
	if (slot != NULL && slot->state == EB_DB_RUNNING && slot->pid != 0)
		done = slot->cut_done >= seq;
	LWLockRelease(WorkerShared->lock);
	return done;
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
	MySlot = EbFindOrAddSlot(dboid);
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
	slot = EbFindSlot(dboid);
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
	MySlot->exit_error = true;
	LWLockRelease(WorkerShared->lock);
}

/* Says, for the launcher's log line, that this worker ends on SIGTERM. */
void
EbSlotSetSigterm(void)
{
	LWLockAcquire(WorkerShared->lock, LW_EXCLUSIVE);
	MySlot->exit_sigterm = true;
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
	slot = EbFindSlot(MyDatabaseId);
	if (slot != NULL)
	{
		slot->ticks = slot->notifications = slot->handler_calls = 0;
		slot->loop_seconds = slot->last_loop_seconds = 0;
		slot->last_error[0] = '\0';
	}
	LWLockRelease(WorkerShared->lock);
	PG_RETURN_VOID();
}
