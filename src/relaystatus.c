/*-------------------------------------------------------------------------
 *
 * relaystatus.c
 *	  What relay processes report in shared memory: their state, what they
 *	  produced, their last error, which eventbus.relays shows
 *	  (eventbus._relay_status), also after a process ended on an error.
 *
 * One entry per relay, found by database and subscription id; a relay
 * process claims its relay's entry (or a free one, or one of a relay not
 * running) when it starts and leaves it, as not running, when it exits.
 *
 * Locking: each entry's fields are under its spinlock.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "relay.h"
#include "sink.h"

#include "funcapi.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

typedef struct RelayStatus
{
	slock_t		mutex;			/* protects the fields below */
	Oid			dboid;			/* InvalidOid: free */
	int32		sub_id;
	pid_t		pid;			/* 0: not running */
	char		state[16];
	int64		produced;
	TimestampTz produced_at;
	int64		resent;			/* messages sent again after a failure for now */
	char		error[EB_MSG_ERROR_LEN];
	TimestampTz error_at;
} RelayStatus;

static RelayStatus *Status = NULL;
static int	NStatus = 0;
static int	MyStatus = -1;
static shmem_request_hook_type PrevShmemRequest = NULL;
static shmem_startup_hook_type PrevShmemStartup = NULL;

static void
RelayShmemRequest(void)
{
	if (PrevShmemRequest)
		PrevShmemRequest();
	RequestAddinShmemSpace(mul_size(max_worker_processes, sizeof(RelayStatus)));
}

static void
RelayShmemStartup(void)
{
	bool		found;

	if (PrevShmemStartup)
		PrevShmemStartup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	NStatus = max_worker_processes;
	Status = ShmemInitStruct("eventbus relay status", mul_size(NStatus, sizeof(RelayStatus)), &found);
	if (!found)
		for (int i = 0; i < NStatus; i++)
		{
			memset(&Status[i], 0, sizeof(RelayStatus));
			SpinLockInit(&Status[i].mutex);
		}
	LWLockRelease(AddinShmemInitLock);
}

/* The process ends: its entry stays, as not running. */
static void
ReleaseStatus(int code, Datum arg)
{
	if (MyStatus < 0)
		return;
	SpinLockAcquire(&Status[MyStatus].mutex);
	Status[MyStatus].pid = 0;
	strlcpy(Status[MyStatus].state, code == 0 ? "stopped" : "failed", sizeof(Status[MyStatus].state));
	SpinLockRelease(&Status[MyStatus].mutex);
}

/*
 * The relay process takes the entry of its relay (kept from its last
 * run), else a free one, else the oldest entry of a relay not running.
 */
void
EbRelayStatusClaim(int32 sub_id)
{
	int			slot;

again:
	slot = -1;
	for (int i = 0; Status != NULL && i < NStatus; i++)
	{
		RelayStatus *s = &Status[i];
		bool		mine;

		SpinLockAcquire(&s->mutex);
		mine = s->dboid == MyDatabaseId && s->sub_id == sub_id;
		if (!mine && slot < 0 && (s->dboid == InvalidOid || s->pid == 0))
			slot = i;
		SpinLockRelease(&s->mutex);
		if (mine)
		{
			slot = i;
			break;
		}
	}
	if (slot < 0)
		return;
	SpinLockAcquire(&Status[slot].mutex);
	if ((Status[slot].dboid != MyDatabaseId || Status[slot].sub_id != sub_id) &&
		Status[slot].dboid != InvalidOid && Status[slot].pid != 0)
	{
		/* Another relay starting beside this one took it meanwhile. */
		SpinLockRelease(&Status[slot].mutex);
		goto again;
	}
	if (Status[slot].dboid != MyDatabaseId || Status[slot].sub_id != sub_id)
	{
		Status[slot].produced = 0;
		Status[slot].produced_at = 0;
		Status[slot].resent = 0;
		Status[slot].error[0] = '\0';
		Status[slot].error_at = 0;
	}
	Status[slot].dboid = MyDatabaseId;
	Status[slot].sub_id = sub_id;
	Status[slot].pid = MyProcPid;
	strlcpy(Status[slot].state, "starting", sizeof(Status[slot].state));
	SpinLockRelease(&Status[slot].mutex);
	MyStatus = slot;
	on_shmem_exit(ReleaseStatus, (Datum) 0);
}

/* Sets the process's state; an error (not NULL, not "") with the time it happened. */
void
EbRelayStatusSet(const char *state, const char *error)
{
	RelayStatus *s;

	if (MyStatus < 0)
		return;
	s = &Status[MyStatus];
	SpinLockAcquire(&s->mutex);
	if (state != NULL)
		strlcpy(s->state, state, sizeof(s->state));
	if (error != NULL && error[0] != '\0' && strcmp(error, s->error) != 0)
	{
		strlcpy(s->error, error, sizeof(s->error));
		s->error_at = GetCurrentTimestamp();
	}
	SpinLockRelease(&s->mutex);
}

/*
 * Counts messages the sink acknowledged (produced) and messages sent again
 * after a failure for now (resent: each may reach the sink twice).
 */
void
EbRelayStatusCount(int produced, int resent)
{
	RelayStatus *s;

	if (MyStatus < 0 || (produced == 0 && resent == 0))
		return;
	s = &Status[MyStatus];
	SpinLockAcquire(&s->mutex);
	s->produced += produced;
	if (produced > 0)
		s->produced_at = GetCurrentTimestamp();
	s->resent += resent;
	SpinLockRelease(&s->mutex);
}

PG_FUNCTION_INFO_V1(eventbus_relay_status);

/* SQL eventbus._relay_status(): the entries of this database's relays. */
Datum
eventbus_relay_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; Status != NULL && i < NStatus; i++)
	{
		RelayStatus s;
		Datum		values[8];
		bool		nulls[8] = {0};

		SpinLockAcquire(&Status[i].mutex);
		s = Status[i];
		SpinLockRelease(&Status[i].mutex);
		if (s.dboid != MyDatabaseId)
			continue;
		values[0] = Int32GetDatum(s.sub_id);
		values[1] = Int32GetDatum(s.pid);
		nulls[1] = s.pid == 0;
		values[2] = CStringGetTextDatum(s.state);
		values[3] = Int64GetDatum(s.produced);
		values[4] = TimestampTzGetDatum(s.produced_at);
		nulls[4] = s.produced_at == 0;
		values[5] = CStringGetTextDatum(s.error);
		nulls[5] = s.error[0] == '\0';
		values[6] = TimestampTzGetDatum(s.error_at);
		nulls[6] = s.error_at == 0;
		values[7] = Int64GetDatum(s.resent);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* With preloading: the entries in shared memory. */
void
EbRelayStatusInit(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	PrevShmemRequest = shmem_request_hook;
	shmem_request_hook = RelayShmemRequest;
	PrevShmemStartup = shmem_startup_hook;
	shmem_startup_hook = RelayShmemStartup;
}
