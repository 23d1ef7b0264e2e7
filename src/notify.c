/*-------------------------------------------------------------------------
 *
 * notify.c
 *	  Coalesced notifications: the worker sends a subscription at most one
 *	  NOTIFY until one of its consumers polls.
 *
 * Each tick, the worker asks eventbus._notify_needed(sub_id) before it
 * notifies a subscription that has something new. The answer is no when
 * the subscription was notified and no poll has started since (within
 * EB_RENOTIFY_MS): its consumers were told to poll, and a poll that starts
 * after this check sees everything the tick saw, because poll records that
 * it started (EbNotifyPolled) before it looks. One notification, one poll,
 * sees it all; a busy subscription is not sent a NOTIFY per tick.
 *
 * The stamps live in a small hash table in shared memory of its own, keyed
 * by database and subscription, independent of the statistics (stats.c):
 * track_stats, stats_max and reset_stats() do not change notifications.
 * When the table is full, or without shared memory (library not
 * preloaded), every notification is needed: extra ones are harmless.
 *
 * Locking: the hash table's shape is under one named LWLock (shared to
 * look an entry up, exclusive to add or remove one); each entry's two
 * stamps are under its own spinlock, so polls of different subscriptions
 * never wait for each other.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "notify.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

/* A subscription not polled since its last NOTIFY gets the next after this long. */
#define EB_RENOTIFY_MS		1000

/* Subscriptions (of all databases) the table keeps stamps for. */
#define EB_NOTIFY_MAX		8192

typedef struct EbNotifyKey
{
	Oid			dboid;
	int32		sub_id;
} EbNotifyKey;

typedef struct EbNotifyEntry
{
	EbNotifyKey key;
	slock_t		mutex;			/* protects the stamps */
	TimestampTz notified_at;	/* last NOTIFY by the worker; 0: none */
	TimestampTz polled_at;		/* last poll that started; 0: none */
	int			want;			/* max_events of that poll */
	uint64		cut_epoch;		/* cut epoch (wake.c) the last complete cut started at */
} EbNotifyEntry;

static LWLock *NotifyLock = NULL;
static HTAB *NotifyHash = NULL;
static shmem_request_hook_type PrevShmemRequest = NULL;
static shmem_startup_hook_type PrevShmemStartup = NULL;

/* Asks for the hash table and its lock (preload only). */
static void
NotifyShmemRequest(void)
{
	if (PrevShmemRequest)
		PrevShmemRequest();
	RequestAddinShmemSpace(hash_estimate_size(EB_NOTIFY_MAX, sizeof(EbNotifyEntry)));
	RequestNamedLWLockTranche("eventbus notify", 1);
}

/* Finds or creates the hash table. */
static void
NotifyShmemStartup(void)
{
	HASHCTL		info;

	if (PrevShmemStartup)
		PrevShmemStartup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	NotifyLock = &(GetNamedLWLockTranche("eventbus notify"))->lock;
	info.keysize = sizeof(EbNotifyKey);
	info.entrysize = sizeof(EbNotifyEntry);
	NotifyHash = ShmemInitHash("eventbus notify hash", EB_NOTIFY_MAX, EB_NOTIFY_MAX,
							   &info, HASH_ELEM | HASH_BLOBS);
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Finds this database's entry of a subscription, adding it when there is
 * room; NULL when the table is full. Takes the lock in shared mode and
 * returns with it held (the caller releases it). Never raises.
 */
static EbNotifyEntry *
FindEntry(int32 sub_id)
{
	EbNotifyKey key;
	EbNotifyEntry *entry;
	bool		found;

	memset(&key, 0, sizeof(key));
	key.dboid = MyDatabaseId;
	key.sub_id = sub_id;
	LWLockAcquire(NotifyLock, LW_SHARED);
	entry = hash_search(NotifyHash, &key, HASH_FIND, NULL);
	if (entry != NULL)
		return entry;

	LWLockRelease(NotifyLock);
	LWLockAcquire(NotifyLock, LW_EXCLUSIVE);
	entry = hash_search(NotifyHash, &key, HASH_ENTER_NULL, &found);
	if (entry != NULL && !found)
	{
		SpinLockInit(&entry->mutex);
		entry->notified_at = 0;
		entry->polled_at = 0;
		entry->want = 0;
		entry->cut_epoch = 0;
	}
	LWLockRelease(NotifyLock);
	LWLockAcquire(NotifyLock, LW_SHARED);
	/* Removed meanwhile (pruned): look again. */
	return entry ? hash_search(NotifyHash, &key, HASH_FIND, NULL) : NULL;
}

/*
 * Records that a poll of the subscription, for up to "want" events, starts
 * now (before it looks).
 */
void
EbNotifyPolled(int32 sub_id, int want)
{
	EbNotifyEntry *e;

	if (NotifyHash == NULL)
		return;
	e = FindEntry(sub_id);
	if (e != NULL)
	{
		SpinLockAcquire(&e->mutex);
		e->polled_at = GetCurrentTimestamp();
		if (want > 0)
			e->want = want;
		SpinLockRelease(&e->mutex);
	}
	LWLockRelease(NotifyLock);
}

/*
 * Whether the subscription was polled within the last "ms" milliseconds,
 * and the max_events of its last poll (*want, 0: unknown). The worker
 * cuts batches ahead for these subscriptions only.
 */
bool
EbNotifyRecentPoll(int32 sub_id, int ms, int *want)
{
	EbNotifyEntry *e;
	bool		recent = false;

	*want = 0;
	if (NotifyHash == NULL)
		return true;
	e = FindEntry(sub_id);
	if (e != NULL)
	{
		SpinLockAcquire(&e->mutex);
		recent = e->polled_at != 0 &&
			!TimestampDifferenceExceeds(e->polled_at, GetCurrentTimestamp(), ms);
		*want = e->want;
		SpinLockRelease(&e->mutex);
	}
	LWLockRelease(NotifyLock);
	return recent;
}

/*
 * The cut epoch at which the worker last cut everything the subscription
 * had (0: unknown); a poll that sees a later epoch asks for a cut first.
 */
uint64
EbNotifyCutEpoch(int32 sub_id)
{
	EbNotifyEntry *e;
	uint64		epoch = 0;

	if (NotifyHash == NULL)
		return 0;
	e = FindEntry(sub_id);
	if (e != NULL)
	{
		SpinLockAcquire(&e->mutex);
		epoch = e->cut_epoch;
		SpinLockRelease(&e->mutex);
	}
	LWLockRelease(NotifyLock);
	return epoch;
}

/* Records that a committed cut took everything up to the epoch. */
void
EbNotifySetCutEpoch(int32 sub_id, uint64 epoch)
{
	EbNotifyEntry *e;

	if (NotifyHash == NULL)
		return;
	e = FindEntry(sub_id);
	if (e != NULL)
	{
		SpinLockAcquire(&e->mutex);
		e->cut_epoch = Max(e->cut_epoch, epoch);
		SpinLockRelease(&e->mutex);
	}
	LWLockRelease(NotifyLock);
}

/*
 * Removes entries of a database: all of them (live NULL), or those of
 * subscriptions not in "live".
 */
static void
RemoveEntries(Oid dboid, const int32 *live, int nlive)
{
	HASH_SEQ_STATUS seq;
	EbNotifyEntry *e;

	if (NotifyHash == NULL)
		return;
	LWLockAcquire(NotifyLock, LW_EXCLUSIVE);
	hash_seq_init(&seq, NotifyHash);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		bool		keep = false;

		if (e->key.dboid != dboid)
			continue;
		for (int i = 0; live != NULL && i < nlive && !keep; i++)
			keep = live[i] == e->key.sub_id;
		if (!keep)
			(void) hash_search(NotifyHash, &e->key, HASH_REMOVE, NULL);
	}
	LWLockRelease(NotifyLock);
}

/* Removes every entry of a database (dropped, or its extension dropped). */
void
EbNotifyForgetDatabase(Oid dboid)
{
	RemoveEntries(dboid, NULL, 0);
}

/* Removes this database's entries of subscriptions not in "live". */
void
EbNotifyPrune(const int32 *live, int nlive)
{
	static const int32 none = 0;

	/* An empty list still means "keep none": pass a non-NULL one. */
	RemoveEntries(MyDatabaseId, nlive > 0 ? live : &none, nlive);
}

/* Registers the shared memory (preload only). */
void
EbNotifyInit(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	PrevShmemRequest = shmem_request_hook;
	shmem_request_hook = NotifyShmemRequest;
	PrevShmemStartup = shmem_startup_hook;
	shmem_startup_hook = NotifyShmemStartup;
}

/*
 * Whether the worker should NOTIFY a subscription that has something new
 * (see the file header). When it says yes it records the notification.
 */
bool
EbNotifyNeeded(int32 sub_id)
{
	EbNotifyEntry *e;
	bool		needed = true;

	if (NotifyHash == NULL)
		return true;
	e = FindEntry(sub_id);
	if (e != NULL)
	{
		TimestampTz now = GetCurrentTimestamp();

		SpinLockAcquire(&e->mutex);
		needed = e->notified_at == 0 || e->polled_at >= e->notified_at ||
			TimestampDifferenceExceeds(e->notified_at, now, EB_RENOTIFY_MS);
		if (needed)
			e->notified_at = now;
		SpinLockRelease(&e->mutex);
	}
	LWLockRelease(NotifyLock);
	return needed;
}

PG_FUNCTION_INFO_V1(eventbus_notify_needed);

/* SQL eventbus._notify_needed(sub_id): EbNotifyNeeded (the 0.1.0 tick called it). */
Datum
eventbus_notify_needed(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(true);
	PG_RETURN_BOOL(EbNotifyNeeded(PG_GETARG_INT32(0)));
}
