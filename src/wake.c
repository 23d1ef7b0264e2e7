/*-------------------------------------------------------------------------
 *
 * wake.c
 *	  Waking pollers that wait: poll(..., wait => '5s').
 *
 * With the library in shared_preload_libraries, shared memory holds a wake
 * count and a condition variable. A transaction that makes events pollable
 * (publish, and nack, redrive, seek, resume, ack of ordered events) marks
 * itself; when it commits, the count goes up and every waiter wakes, looks
 * again and goes back to sleep if there is nothing for it. Waiters sleep
 * on the condition variable (a latch wait), never in a sleep loop, and
 * remain cancellable (statement_timeout, pg_cancel_backend).
 *
 * The same commit sets the background worker's latch (launcher.c), passing
 * the subscriptions the transaction named, so that the worker ticks and
 * notifies LISTENing consumers.
 *
 * Without shared memory (library not preloaded) a waiter looks again every
 * EB_WAIT_FALLBACK_MS instead; docs/consuming.md says so.
 *
 * Locking: none; an atomic wake count and a condition variable. The
 * worker's latch is set through launcher.c, under its LWLock.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "launcher.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

/* How often a waiter looks again when there is no shared memory. */
#define EB_WAIT_FALLBACK_MS	100

typedef struct EbWakeShared
{
	pg_atomic_uint64 wakes;		/* commits that made events pollable */
	pg_atomic_uint64 cut_epoch; /* commits that gave the log something to cut */
	ConditionVariable cv;		/* broadcast at each of them */
} EbWakeShared;

/* Subscriptions a transaction names for the worker to notify. */
#define EB_MAX_LOCAL_KICKS	16

static EbWakeShared *WakeShared = NULL;
static bool WakeAtCommit = false;
static bool CutAtCommit = false;
static int32 Kicks[EB_MAX_LOCAL_KICKS];
static int	NKicks = 0;
static bool KickAll = false;

/*
 * Deliveries this transaction wrote that fall due at a time (a lease end,
 * a delay, a retry): if the transaction commits after that time, or rolls
 * back (its leases are undone), the worker's tick would miss them, so the
 * end of the transaction kicks their subscriptions.
 */
static int32 DueSubs[EB_MAX_LOCAL_KICKS];
static TimestampTz DueAt[EB_MAX_LOCAL_KICKS];
static int	NDue = 0;
static bool DueAll = false;

/* Adds a subscription to the ones the worker notifies at commit. */
static void
AddKick(int32 sub_id)
{
	bool		known = false;

	for (int i = 0; i < NKicks; i++)
		known |= Kicks[i] == sub_id;
	if (!known && NKicks == EB_MAX_LOCAL_KICKS)
		KickAll = true;
	else if (!known)
		Kicks[NKicks++] = sub_id;
}

/* Wakes waiting pollers and the worker, passing the kicked subscriptions. */
static void
WakeNow(void)
{
	if (WakeShared != NULL)
	{
		pg_atomic_fetch_add_u64(&WakeShared->wakes, 1);
		ConditionVariableBroadcast(&WakeShared->cv);
	}
	EbWorkerKick(Kicks, NKicks, KickAll);
}
static shmem_request_hook_type PrevShmemRequest = NULL;
static shmem_startup_hook_type PrevShmemStartup = NULL;

/* Asks for the shared memory (preload only). */
static void
WakeShmemRequest(void)
{
	if (PrevShmemRequest)
		PrevShmemRequest();
	RequestAddinShmemSpace(MAXALIGN(sizeof(EbWakeShared)));
}

/* Finds or creates the shared state. */
static void
WakeShmemStartup(void)
{
	bool		found;

	if (PrevShmemStartup)
		PrevShmemStartup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	WakeShared = ShmemInitStruct("eventbus wake-ups", sizeof(EbWakeShared), &found);
	if (!found)
	{
		pg_atomic_init_u64(&WakeShared->wakes, 0);
		/* 1: a subscription never cut (epoch 0) is behind from the start. */
		pg_atomic_init_u64(&WakeShared->cut_epoch, 1);
		ConditionVariableInit(&WakeShared->cv);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Wakes the waiters when a marked transaction commits, or rolls back leases. */
static void
WakeXactCallback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (NDue > 0 || DueAll)
			{
				TimestampTz now = GetCurrentTimestamp();

				for (int i = 0; i < NDue; i++)
					if (DueAt[i] <= now)
					{
						AddKick(DueSubs[i]);
						WakeAtCommit = true;
					}
				if (DueAll)
				{
					KickAll = true;
					WakeAtCommit = true;
				}
			}
			/* Before the wake-up: a poller it wakes sees the new epoch. */
			if (CutAtCommit && WakeShared != NULL)
				pg_atomic_fetch_add_u64(&WakeShared->cut_epoch, 1);
			if (WakeAtCommit)
				WakeNow();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* Leases and waiting rows are undone: their events are pollable. */
			if (NDue > 0 || DueAll)
			{
				NKicks = 0;
				KickAll = DueAll;
				for (int i = 0; i < NDue; i++)
					AddKick(DueSubs[i]);
				WakeNow();
			}
			break;
		case XACT_EVENT_PREPARE:
			/* COMMIT PREPARED runs elsewhere: the periodic tick finds it. */
			break;
		default:
			return;
	}
	WakeAtCommit = false;
	CutAtCommit = false;
	NKicks = 0;
	KickAll = false;
	NDue = 0;
	DueAll = false;
}

/* Marks the current transaction: wake waiting pollers when it commits. */
void
EbWakeAtCommit(void)
{
	WakeAtCommit = true;
}

/*
 * Marks the current transaction: at commit the log holds something new to
 * cut into batches (events published, a seek): the cut epoch moves on, so
 * that the next poll has the worker cut first (consume.c).
 */
void
EbCutAtCommit(void)
{
	CutAtCommit = true;
	WakeAtCommit = true;
}

/* How many commits gave the log something to cut (0 without shared memory). */
uint64
EbCutEpoch(void)
{
	return WakeShared ? pg_atomic_read_u64(&WakeShared->cut_epoch) : 0;
}

/* At commit, wakes waiting pollers and has the worker notify the subscription. */
void
EbWakeSub(int32 sub_id)
{
	EbWakeAtCommit();
	AddKick(sub_id);
}

/*
 * This transaction wrote deliveries of sub_id that fall due at "due": if
 * it commits at or after that time, or rolls back, waiting pollers are
 * woken and the worker notifies sub_id (its ticks only see what falls due
 * after they ran).
 */
void
EbWakeDueAt(int32 sub_id, TimestampTz due)
{
	for (int i = 0; i < NDue; i++)
		if (DueSubs[i] == sub_id)
		{
			DueAt[i] = Min(DueAt[i], due);
			return;
		}
	if (NDue == EB_MAX_LOCAL_KICKS)
		DueAll = true;
	else
	{
		DueSubs[NDue] = sub_id;
		DueAt[NDue++] = due;
	}
}

/* Wakes every waiting poller now (not at commit): the worker cut batches. */
void
EbWakeAll(void)
{
	if (WakeShared != NULL)
	{
		pg_atomic_fetch_add_u64(&WakeShared->wakes, 1);
		ConditionVariableBroadcast(&WakeShared->cv);
	}
}

/* The number of wake-ups so far (0 without shared memory). */
uint64
EbWakeCount(void)
{
	return WakeShared ? pg_atomic_read_u64(&WakeShared->wakes) : 0;
}

/*
 * Returns once the wake count differs from "seen" or "until" has passed;
 * without shared memory, after at most EB_WAIT_FALLBACK_MS. Cancellable.
 */
void
EbWakeWait(uint64 seen, TimestampTz until)
{
	if (WakeShared == NULL)
	{
		long		ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until);

		if (ms > 0)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 Min(ms, EB_WAIT_FALLBACK_MS), PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		return;
	}
	ConditionVariablePrepareToSleep(&WakeShared->cv);
	for (;;)
	{
		long		ms;

		if (pg_atomic_read_u64(&WakeShared->wakes) != seen)
			break;
		ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until);
		if (ms <= 0)
			break;
		/* Checks for interrupts: statement_timeout and cancel end the wait. */
		(void) ConditionVariableTimedSleep(&WakeShared->cv, ms, PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
}

/* Registers the shared memory (when preloaded) and the commit callback. */
void
EbWakeInit(void)
{
	if (process_shared_preload_libraries_in_progress)
	{
		PrevShmemRequest = shmem_request_hook;
		shmem_request_hook = WakeShmemRequest;
		PrevShmemStartup = shmem_startup_hook;
		shmem_startup_hook = WakeShmemStartup;
	}
	RegisterXactCallback(WakeXactCallback, NULL);
}

PG_FUNCTION_INFO_V1(eventbus_wake);

/*
 * SQL eventbus._wake(sub_id): wake waiting pollers when this transaction
 * commits, and have the worker notify subscription sub_id (NULL: none in
 * particular) even if it received no new events.
 */
Datum
eventbus_wake(PG_FUNCTION_ARGS)
{
	EbCutAtCommit();
	if (!PG_ARGISNULL(0))
		AddKick(PG_GETARG_INT32(0));
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(eventbus_wake_at_end);

/* SQL eventbus._wake_at_end(sub_id, due): EbWakeDueAt for the SQL functions. */
Datum
eventbus_wake_at_end(PG_FUNCTION_ARGS)
{
	if (!PG_ARGISNULL(0) && !PG_ARGISNULL(1))
		EbWakeDueAt(PG_GETARG_INT32(0), PG_GETARG_TIMESTAMPTZ(1));
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(eventbus_wake_count);

/* SQL eventbus._wake_count(): the number of wake-ups so far (0 without shared memory). */
Datum
eventbus_wake_count(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64((int64) EbWakeCount());
}

PG_FUNCTION_INFO_V1(eventbus_wait);

/*
 * SQL eventbus._wait(until, seen): returns once the wake count differs from
 * "seen" or "until" has passed; without shared memory, after at most
 * EB_WAIT_FALLBACK_MS. A NULL "until" returns at once.
 */
Datum
eventbus_wait(PG_FUNCTION_ARGS)
{
	if (!PG_ARGISNULL(0) && !PG_ARGISNULL(1))
		EbWakeWait((uint64) PG_GETARG_INT64(1), PG_GETARG_TIMESTAMPTZ(0));
	PG_RETURN_VOID();
}
