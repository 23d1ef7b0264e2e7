/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  Counters and latency histograms behind eventbus.topic_stats,
 *	  eventbus.subscription_stats and eventbus.prometheus().
 *
 * With the library in shared_preload_libraries, shared memory holds a hash
 * table (pg_stat_statements style) of entries keyed by database, kind
 * (topic or subscription) and id. Counting never writes a table.
 *
 * Counts are transactional: a backend adds them to a local table, tagged
 * with the subtransaction level; a rolled-back subtransaction drops its
 * own, a committed one hands them to its parent, and the top-level commit
 * adds them to shared memory. A rolled-back publish, poll or ack is never
 * counted. A prepared transaction's counts go in at PREPARE (COMMIT
 * PREPARED runs elsewhere), and stay if it is rolled back later.
 *
 * The hash table holds at most eventbus.stats_max entries; what does not
 * fit is not counted, and eventbus_stats_dropped_total says how often.
 * Entries of dropped subscriptions go at commit of unsubscribe; all of a
 * database's go at reset_stats() and at CREATE EXTENSION.
 *
 * Without shared memory every function here counts nothing and the stats
 * functions return no rows: the views show NULL for these columns.
 *
 * Locking: the hash table's shape is under one named LWLock ("eventbus
 * stats"): shared to find an entry, exclusive to add or remove one; each
 * entry's numbers are under its own spinlock. A commit adds its counts
 * holding the LWLock in shared mode, so commits of different backends
 * only meet on the spinlocks of the entries they share.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "notify.h"
#include "stats.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* eventbus.stats_max and eventbus.track_stats */
int			eb_stats_max = 5000;
static bool eb_track_stats = true;

/* Upper bounds of the latency buckets, in seconds; the last one is +Inf. */
static const double HistBounds[EB_HIST_BUCKETS - 1] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
	1, 2.5, 5, 10, 30, 60
};

typedef enum EbStatsKind
{
	EB_STATS_DB = 0,			/* one per database: when it was reset */
	EB_STATS_TOPIC,
	EB_STATS_SUB
} EbStatsKind;

typedef struct EbStatsKey
{
	Oid			dboid;
	int32		kind;
	int32		id;
} EbStatsKey;

/* The numbers one entry counts; topics use the first two counters. */
typedef struct EbStatsValues
{
	int64		c[EB_SUB_NCOUNTERS];
	int64		hist[EB_NHISTS][EB_HIST_BUCKETS];
	double		hist_sum[EB_NHISTS];
} EbStatsValues;

typedef struct EbStatsEntry
{
	EbStatsKey	key;
	slock_t		mutex;			/* protects everything below */
	EbStatsValues v;
	TimestampTz last_at;		/* topic: last publish; sub: last poll; db: reset */
} EbStatsEntry;

typedef struct EbStatsShared
{
	LWLock	   *lock;			/* the hash table's shape; entries have mutexes */
	pg_atomic_uint64 dropped;	/* counts that found no room */
} EbStatsShared;

/* A transaction's counts, per entry and subtransaction level. */
typedef struct EbPendingKey
{
	int32		kind;
	int32		id;
	int			nest;
} EbPendingKey;

typedef struct EbPending
{
	EbPendingKey key;
	bool		drop;			/* unsubscribed: remove the entry at commit */
	bool		has_hist;
	EbStatsValues v;
} EbPending;

static EbStatsShared *StatsShared = NULL;
static HTAB *StatsHash = NULL;
/* Kept across transactions (emptied at their end), so none pays its setup. */
static HTAB *Pending = NULL;
static long PendingCount = 0;	/* entries in Pending */
static int	PendingMaxNest = 0;
static shmem_request_hook_type PrevShmemRequest = NULL;
static shmem_startup_hook_type PrevShmemStartup = NULL;

/* ---- shared memory ---- */

static Size
StatsShmemSize(void)
{
	return add_size(MAXALIGN(sizeof(EbStatsShared)),
					hash_estimate_size(eb_stats_max, sizeof(EbStatsEntry)));
}

static void
StatsShmemRequest(void)
{
	if (PrevShmemRequest)
		PrevShmemRequest();
	RequestAddinShmemSpace(StatsShmemSize());
	RequestNamedLWLockTranche("eventbus stats", 1);
}

static void
StatsShmemStartup(void)
{
	bool		found;
	HASHCTL		info;

	if (PrevShmemStartup)
		PrevShmemStartup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	StatsShared = ShmemInitStruct("eventbus stats", sizeof(EbStatsShared), &found);
	if (!found)
	{
		StatsShared->lock = &(GetNamedLWLockTranche("eventbus stats"))->lock;
		pg_atomic_init_u64(&StatsShared->dropped, 0);
	}
	info.keysize = sizeof(EbStatsKey);
	info.entrysize = sizeof(EbStatsEntry);
	StatsHash = ShmemInitHash("eventbus stats hash", eb_stats_max, eb_stats_max,
							  &info, HASH_ELEM | HASH_BLOBS);
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Finds the entry, creating it if there is room. Returns NULL when the
 * table is full. Never raises (it runs at commit); returns with the lock
 * held in shared mode.
 */
static EbStatsEntry *
FindEntry(Oid dboid, int kind, int32 id)
{
	EbStatsKey	key;
	EbStatsEntry *entry;
	bool		found;

	memset(&key, 0, sizeof(key));
	key.dboid = dboid;
	key.kind = kind;
	key.id = id;
	entry = hash_search(StatsHash, &key, HASH_FIND, NULL);
	if (entry != NULL)
		return entry;

	LWLockRelease(StatsShared->lock);
	LWLockAcquire(StatsShared->lock, LW_EXCLUSIVE);
	if (hash_get_num_entries(StatsHash) >= eb_stats_max)
		entry = hash_search(StatsHash, &key, HASH_FIND, NULL);
	else
	{
		entry = hash_search(StatsHash, &key, HASH_ENTER_NULL, &found);
		if (entry != NULL && !found)
		{
			SpinLockInit(&entry->mutex);
			memset(&entry->v, 0, sizeof(entry->v));
			entry->last_at = 0;
		}
	}
	LWLockRelease(StatsShared->lock);
	LWLockAcquire(StatsShared->lock, LW_SHARED);
	/* Another backend may have removed it meanwhile: look again. */
	return entry ? hash_search(StatsHash, &key, HASH_FIND, NULL) : NULL;
}

/* Adds one transaction's counts to shared memory (at commit). */
static void
Flush(void)
{
	HASH_SEQ_STATUS seq;
	EbPending  *p;
	TimestampTz now = GetCurrentTimestamp();

	LWLockAcquire(StatsShared->lock, LW_SHARED);
	hash_seq_init(&seq, Pending);
	while ((p = hash_seq_search(&seq)) != NULL)
	{
		EbStatsEntry *e;

		if (p->drop)
			continue;
		e = FindEntry(MyDatabaseId, p->key.kind, p->key.id);
		if (e == NULL)
		{
			pg_atomic_fetch_add_u64(&StatsShared->dropped, 1);
			continue;
		}
		SpinLockAcquire(&e->mutex);
		for (int i = 0; i < EB_SUB_NCOUNTERS; i++)
			e->v.c[i] += p->v.c[i];
		if (p->has_hist)
			for (int h = 0; h < EB_NHISTS; h++)
			{
				for (int b = 0; b < EB_HIST_BUCKETS; b++)
					e->v.hist[h][b] += p->v.hist[h][b];
				e->v.hist_sum[h] += p->v.hist_sum[h];
			}
		if (p->key.kind == EB_STATS_TOPIC)
			e->last_at = now;
		SpinLockRelease(&e->mutex);
	}
	LWLockRelease(StatsShared->lock);

	/* Dropped subscriptions. */
	hash_seq_init(&seq, Pending);
	while ((p = hash_seq_search(&seq)) != NULL)
	{
		EbStatsKey	key;

		if (!p->drop)
			continue;
		memset(&key, 0, sizeof(key));
		key.dboid = MyDatabaseId;
		key.kind = p->key.kind;
		key.id = p->key.id;
		LWLockAcquire(StatsShared->lock, LW_EXCLUSIVE);
		(void) hash_search(StatsHash, &key, HASH_REMOVE, NULL);
		LWLockRelease(StatsShared->lock);
	}
}

/* ---- the transaction's pending counts ---- */

/* Returns the current level's pending entry for (kind, id), made if new. */
static EbPending *
PendingEntry(int kind, int32 id)
{
	EbPendingKey key;
	EbPending  *p;
	bool		found;

	if (Pending == NULL)
	{
		HASHCTL		info;

		info.keysize = sizeof(EbPendingKey);
		info.entrysize = sizeof(EbPending);
		info.hcxt = TopMemoryContext;
		Pending = hash_create("eventbus pending stats", 16, &info,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	memset(&key, 0, sizeof(key));
	key.kind = kind;
	key.id = id;
	key.nest = GetCurrentTransactionNestLevel();
	p = hash_search(Pending, &key, HASH_ENTER, &found);
	if (!found)
	{
		p->drop = false;
		p->has_hist = false;
		memset(&p->v, 0, sizeof(p->v));
		PendingCount++;
	}
	PendingMaxNest = Max(PendingMaxNest, key.nest);
	return p;
}

/* Adds "from" to the entry of the same kind and id one level up. */
static void
MergeUp(EbPending *from)
{
	EbPendingKey key = from->key;
	EbPending  *to;
	bool		found;

	key.nest--;
	to = hash_search(Pending, &key, HASH_ENTER, &found);
	if (!found)
	{
		PendingCount++;
		to->drop = false;
		to->has_hist = false;
		memset(&to->v, 0, sizeof(to->v));
	}
	to->drop |= from->drop;
	to->has_hist |= from->has_hist;
	for (int i = 0; i < EB_SUB_NCOUNTERS; i++)
		to->v.c[i] += from->v.c[i];
	for (int h = 0; h < EB_NHISTS; h++)
	{
		for (int b = 0; b < EB_HIST_BUCKETS; b++)
			to->v.hist[h][b] += from->v.hist[h][b];
		to->v.hist_sum[h] += from->v.hist_sum[h];
	}
}

/* A subtransaction ends: its counts go to its parent, or away. */
static void
StatsSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
					 SubTransactionId parentSubid, void *arg)
{
	int			level;
	HASH_SEQ_STATUS seq;
	EbPending  *p;
	List	   *ended = NIL;
	ListCell   *lc;

	if (PendingCount == 0 ||
		(event != SUBXACT_EVENT_COMMIT_SUB && event != SUBXACT_EVENT_ABORT_SUB))
		return;
	level = GetCurrentTransactionNestLevel();
	if (level > PendingMaxNest)
		return;

	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		/* Removing the entry just returned is allowed during a scan. */
		hash_seq_init(&seq, Pending);
		while ((p = hash_seq_search(&seq)) != NULL)
			if (p->key.nest >= level)
			{
				(void) hash_search(Pending, &p->key, HASH_REMOVE, NULL);
				PendingCount--;
			}
		PendingMaxNest = level - 1;
		return;
	}
	hash_seq_init(&seq, Pending);
	while ((p = hash_seq_search(&seq)) != NULL)
		if (p->key.nest >= level)
			ended = lappend(ended, p);
	foreach(lc, ended)
	{
		p = lfirst(lc);
		MergeUp(p);
		(void) hash_search(Pending, &p->key, HASH_REMOVE, NULL);
		PendingCount--;
	}
	list_free(ended);
	PendingMaxNest = level - 1;
}

/* Empties the pending counts (removing during a scan is allowed). */
static void
ClearPending(void)
{
	HASH_SEQ_STATUS seq;
	EbPending  *p;

	hash_seq_init(&seq, Pending);
	while ((p = hash_seq_search(&seq)) != NULL)
		(void) hash_search(Pending, &p->key, HASH_REMOVE, NULL);
	PendingCount = 0;
	PendingMaxNest = 0;
}

/* The transaction ends: counts go to shared memory, or away. */
static void
StatsXactCallback(XactEvent event, void *arg)
{
	if (PendingCount == 0)
		return;
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			if (StatsShared != NULL)
				Flush();
			ClearPending();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			ClearPending();
			break;
		default:
			break;
	}
}

/* ---- counting (C callers) ---- */

/* Counts one event published on a topic, "bytes" long, at commit. */
void
EbStatsCountPublish(int32 topic_id, int64 bytes)
{
	EbPending  *p;

	if (StatsShared == NULL || !eb_track_stats)
		return;
	p = PendingEntry(EB_STATS_TOPIC, topic_id);
	p->v.c[EB_TOPIC_PUBLISHED]++;
	p->v.c[EB_TOPIC_BYTES] += bytes;
}

/* Counts n for one of a subscription's counters, at commit. */
void
EbStatsCountSub(int32 sub_id, EbSubCounter counter, int64 n)
{
	if (StatsShared == NULL || n == 0 || !eb_track_stats)
		return;
	PendingEntry(EB_STATS_SUB, sub_id)->v.c[counter] += n;
}

/* Records a latency (seconds) in one of a subscription's histograms, at commit. */
void
EbStatsObserve(int32 sub_id, EbHist hist, double seconds)
{
	EbStatsObserveN(sub_id, hist, seconds, 1);
}

/* Records n observations of the same latency (seconds), at commit. */
void
EbStatsObserveN(int32 sub_id, EbHist hist, double seconds, int64 n)
{
	EbPending  *p;
	int			b = 0;

	if (StatsShared == NULL || !eb_track_stats || n <= 0)
		return;
	if (!(seconds > 0))			/* also NaN */
		seconds = 0;
	while (b < EB_HIST_BUCKETS - 1 && seconds > HistBounds[b])
		b++;
	p = PendingEntry(EB_STATS_SUB, sub_id);
	p->has_hist = true;
	p->v.hist[hist][b] += n;
	p->v.hist_sum[hist] += seconds * n;
}

/* Adds an observation to a caller's histogram (added with EbStatsObserveAcc). */
void
EbHistAdd(EbHistAcc *acc, double seconds)
{
	int			b = 0;

	if (!(seconds > 0))
		seconds = 0;
	while (b < EB_HIST_BUCKETS - 1 && seconds > HistBounds[b])
		b++;
	acc->n[b]++;
	acc->sum += seconds;
	acc->any = true;
}

/* Adds a caller's histogram to one of a subscription's, at commit. */
void
EbStatsObserveAcc(int32 sub_id, EbHist hist, const EbHistAcc *acc)
{
	EbPending  *p;

	if (StatsShared == NULL || !eb_track_stats || !acc->any)
		return;
	p = PendingEntry(EB_STATS_SUB, sub_id);
	p->has_hist = true;
	for (int b = 0; b < EB_HIST_BUCKETS; b++)
		p->v.hist[hist][b] += acc->n[b];
	p->v.hist_sum[hist] += acc->sum;
}

/* Registers the shared memory (preload only) and the transaction callbacks. */
void
EbStatsInit(void)
{
	DefineCustomBoolVariable("eventbus.track_stats",
							 "Counts events published, delivered, acked ... in shared memory for the stats views.",
							 "Off: this session's work is not counted; what is pending is still shown.",
							 &eb_track_stats,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);
	/* A server-start setting can only be defined while preloading. */
	if (process_shared_preload_libraries_in_progress)
	{
		DefineCustomIntVariable("eventbus.stats_max",
								"Most topics and subscriptions (of all databases) the statistics keep counts for.",
								"Counts for others are not kept; eventbus_stats_dropped_total says how often that happened.",
								&eb_stats_max,
								5000,
								100,
								1000000,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);
		PrevShmemRequest = shmem_request_hook;
		shmem_request_hook = StatsShmemRequest;
		PrevShmemStartup = shmem_startup_hook;
		shmem_startup_hook = StatsShmemStartup;
	}
	RegisterXactCallback(StatsXactCallback, NULL);
	RegisterSubXactCallback(StatsSubXactCallback, NULL);
}

/* ---- SQL ---- */

/* Records the time of a poll at once, shown as last_poll_at (also with track_stats off). */
void
EbStatsPolled(int32 sub_id)
{
	EbStatsEntry *e;

	if (StatsShared == NULL)
		return;
	LWLockAcquire(StatsShared->lock, LW_SHARED);
	e = FindEntry(MyDatabaseId, EB_STATS_SUB, sub_id);
	if (e != NULL)
	{
		SpinLockAcquire(&e->mutex);
		e->last_at = GetCurrentTimestamp();
		SpinLockRelease(&e->mutex);
	}
	LWLockRelease(StatsShared->lock);
}

PG_FUNCTION_INFO_V1(eventbus_stats_drop_sub);

/* SQL eventbus._stats_drop_sub(sub_id): forget its counts when this transaction commits. */
Datum
eventbus_stats_drop_sub(PG_FUNCTION_ARGS)
{
	if (StatsShared != NULL && !PG_ARGISNULL(0))
		PendingEntry(EB_STATS_SUB, PG_GETARG_INT32(0))->drop = true;
	PG_RETURN_VOID();
}

/* Copies an entry's numbers under its mutex. */
static void
ReadEntry(EbStatsEntry *e, EbStatsValues *v, TimestampTz *last_at)
{
	SpinLockAcquire(&e->mutex);
	*v = e->v;
	*last_at = e->last_at;
	SpinLockRelease(&e->mutex);
}

/* Returns a histogram's buckets as a cumulative bigint[]. */
static Datum
CumulativeBuckets(const int64 *hist)
{
	Datum		d[EB_HIST_BUCKETS];
	int64		sum = 0;

	for (int b = 0; b < EB_HIST_BUCKETS; b++)
	{
		sum += hist[b];
		d[b] = Int64GetDatum(sum);
	}
	return PointerGetDatum(construct_array(d, EB_HIST_BUCKETS, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * Emits a row per entry of the given kind in this database. Topic rows:
 * (id, published, bytes, last_at). Subscription rows: (id, the eight
 * counters, last_at, delivery buckets, delivery sum, ack buckets, ack sum).
 */
static Datum
StatsRows(FunctionCallInfo fcinfo, int kind)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HASH_SEQ_STATUS seq;
	EbStatsEntry *e;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	if (StatsShared == NULL)
		return (Datum) 0;

	LWLockAcquire(StatsShared->lock, LW_SHARED);
	hash_seq_init(&seq, StatsHash);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		Datum		values[6 + EB_SUB_NCOUNTERS];
		bool		nulls[6 + EB_SUB_NCOUNTERS] = {0};
		EbStatsValues v;
		TimestampTz last_at;
		int			n = 0;

		if (e->key.dboid != MyDatabaseId || e->key.kind != kind)
			continue;
		ReadEntry(e, &v, &last_at);
		values[n++] = Int32GetDatum(e->key.id);
		if (kind == EB_STATS_TOPIC)
		{
			values[n++] = Int64GetDatum(v.c[EB_TOPIC_PUBLISHED]);
			values[n++] = Int64GetDatum(v.c[EB_TOPIC_BYTES]);
		}
		else
			for (int i = 0; i < EB_SUB_NCOUNTERS; i++)
				values[n++] = Int64GetDatum(v.c[i]);
		nulls[n] = (last_at == 0);
		values[n++] = TimestampTzGetDatum(last_at);
		if (kind == EB_STATS_SUB)
			for (int h = 0; h < EB_NHISTS; h++)
			{
				values[n++] = CumulativeBuckets(v.hist[h]);
				values[n++] = Float8GetDatum(v.hist_sum[h]);
			}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(StatsShared->lock);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(eventbus_stats_topics);

/* SQL eventbus._stats_topics(): this database's topic counters. */
Datum
eventbus_stats_topics(PG_FUNCTION_ARGS)
{
	return StatsRows(fcinfo, EB_STATS_TOPIC);
}

PG_FUNCTION_INFO_V1(eventbus_stats_subscriptions);

/* SQL eventbus._stats_subscriptions(): this database's subscription counters. */
Datum
eventbus_stats_subscriptions(PG_FUNCTION_ARGS)
{
	return StatsRows(fcinfo, EB_STATS_SUB);
}

PG_FUNCTION_INFO_V1(eventbus_stats_info);

/*
 * SQL eventbus._stats_info(OUT enabled, OUT stats_reset, OUT dropped,
 * OUT buckets): whether there are counters at all, when this database's
 * were reset, how many counts found no room, and the bucket bounds.
 */
Datum
eventbus_stats_info(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[4];
	bool		nulls[4] = {0};
	Datum		bounds[EB_HIST_BUCKETS];

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	for (int b = 0; b < EB_HIST_BUCKETS - 1; b++)
		bounds[b] = Float8GetDatum(HistBounds[b]);
	bounds[EB_HIST_BUCKETS - 1] = Float8GetDatum(get_float8_infinity());
	values[0] = BoolGetDatum(StatsShared != NULL);
	nulls[1] = nulls[2] = true;
	if (StatsShared != NULL)
	{
		EbStatsEntry *e;
		EbStatsKey	key;

		memset(&key, 0, sizeof(key));
		key.dboid = MyDatabaseId;
		key.kind = EB_STATS_DB;
		LWLockAcquire(StatsShared->lock, LW_SHARED);
		e = hash_search(StatsHash, &key, HASH_FIND, NULL);
		if (e != NULL)
		{
			SpinLockAcquire(&e->mutex);
			values[1] = TimestampTzGetDatum(e->last_at);
			SpinLockRelease(&e->mutex);
			nulls[1] = false;
		}
		LWLockRelease(StatsShared->lock);
		values[2] = Int64GetDatum((int64) pg_atomic_read_u64(&StatsShared->dropped));
		nulls[2] = false;
	}
	values[3] = PointerGetDatum(construct_array(bounds, EB_HIST_BUCKETS, FLOAT8OID, 8,
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

PG_FUNCTION_INFO_V1(eventbus_stats_reset);

/*
 * SQL eventbus._stats_reset(): forgets every topic and subscription count
 * of this database at once (not at commit, like pg_stat_reset), and
 * records when. reset_stats() resets the worker's counters beside it.
 */
Datum
eventbus_stats_reset(PG_FUNCTION_ARGS)
{
	HASH_SEQ_STATUS seq;
	EbStatsEntry *e;
	EbStatsKey	key;
	bool		found;

	if (StatsShared == NULL)
		PG_RETURN_VOID();
	LWLockAcquire(StatsShared->lock, LW_EXCLUSIVE);
	hash_seq_init(&seq, StatsHash);
	while ((e = hash_seq_search(&seq)) != NULL)
		if (e->key.dboid == MyDatabaseId)
			(void) hash_search(StatsHash, &e->key, HASH_REMOVE, NULL);
	memset(&key, 0, sizeof(key));
	key.dboid = MyDatabaseId;
	key.kind = EB_STATS_DB;
	e = hash_search(StatsHash, &key, HASH_ENTER_NULL, &found);
	if (e != NULL)
	{
		SpinLockInit(&e->mutex);
		memset(&e->v, 0, sizeof(e->v));
		e->last_at = GetCurrentTimestamp();
	}
	LWLockRelease(StatsShared->lock);
	PG_RETURN_VOID();
}

/* Removes every entry of a database (dropped, or its extension dropped). */
void
EbStatsForgetDatabase(Oid dboid)
{
	HASH_SEQ_STATUS seq;
	EbStatsEntry *e;

	if (StatsShared == NULL)
		return;
	LWLockAcquire(StatsShared->lock, LW_EXCLUSIVE);
	hash_seq_init(&seq, StatsHash);
	while ((e = hash_seq_search(&seq)) != NULL)
		if (e->key.dboid == dboid)
			(void) hash_search(StatsHash, &e->key, HASH_REMOVE, NULL);
	LWLockRelease(StatsShared->lock);
}

/* An integer[] argument as ids, NULLs as 0 (no id); NULL when the argument is. */
static int32 *
IdArray(FunctionCallInfo fcinfo, int argno, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	int32	   *ids;

	if (PG_ARGISNULL(argno))
		return NULL;
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(argno), INT4OID, 4, true, TYPALIGN_INT, &elems, &nulls, n);
	ids = palloc(sizeof(int32) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
		ids[i] = nulls[i] ? 0 : DatumGetInt32(elems[i]);
	return ids;
}

PG_FUNCTION_INFO_V1(eventbus_stats_prune);

/*
 * SQL eventbus._stats_prune(live integer[]): removes this database's
 * subscription entries whose id is not in "live" (left by a transaction
 * that counted for a subscription dropped meanwhile), here and in the
 * notification stamps (notify.c). Run by maintenance.
 */
Datum
eventbus_stats_prune(PG_FUNCTION_ARGS)
{
	HASH_SEQ_STATUS seq;
	EbStatsEntry *e;
	int			nlive;
	int32	   *live_ids = IdArray(fcinfo, 0, &nlive);

	if (live_ids == NULL)
		PG_RETURN_VOID();
	EbNotifyPrune(live_ids, nlive);
	if (StatsShared == NULL)
		PG_RETURN_VOID();
	LWLockAcquire(StatsShared->lock, LW_EXCLUSIVE);
	hash_seq_init(&seq, StatsHash);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		bool		live = false;

		if (e->key.dboid != MyDatabaseId || e->key.kind != EB_STATS_SUB)
			continue;
		for (int i = 0; i < nlive && !live; i++)
			live = live_ids[i] == e->key.id;
		if (!live)
			(void) hash_search(StatsHash, &e->key, HASH_REMOVE, NULL);
	}
	LWLockRelease(StatsShared->lock);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(eventbus_stats_move_topics);

/*
 * SQL eventbus._stats_move_topics(from integer[], to integer[]): the
 * counts of each dictionary id "from" dropped by maintenance go to the id
 * "to" of the same topic (NULL: the topic is gone, and so are its counts),
 * so that topic_stats keeps what a topic published before it got a new id
 * (src/topicdict.c). At once, not at commit.
 */
Datum
eventbus_stats_move_topics(PG_FUNCTION_ARGS)
{
	int			n;
	int			nto;
	int32	   *from = IdArray(fcinfo, 0, &n);
	int32	   *to = IdArray(fcinfo, 1, &nto);

	for (int i = 0; StatsShared != NULL && from != NULL && to != NULL && i < Min(n, nto); i++)
	{
		EbStatsKey	key = {MyDatabaseId, EB_STATS_TOPIC, from[i]};
		EbStatsEntry *e;
		EbStatsValues v;
		TimestampTz last_at = 0;

		LWLockAcquire(StatsShared->lock, LW_EXCLUSIVE);
		e = hash_search(StatsHash, &key, HASH_FIND, NULL);
		if (e != NULL)
		{
			v = e->v;			/* under the exclusive lock: nobody adds to it */
			last_at = e->last_at;
			(void) hash_search(StatsHash, &key, HASH_REMOVE, NULL);
		}
		LWLockRelease(StatsShared->lock);
		if (e == NULL || to[i] == 0)
			continue;
		LWLockAcquire(StatsShared->lock, LW_SHARED);
		if ((e = FindEntry(MyDatabaseId, EB_STATS_TOPIC, to[i])) == NULL)
			pg_atomic_fetch_add_u64(&StatsShared->dropped, 1);
		else
		{
			SpinLockAcquire(&e->mutex);
			for (int c = 0; c < EB_SUB_NCOUNTERS; c++)
				e->v.c[c] += v.c[c];
			e->last_at = Max(e->last_at, last_at);
			SpinLockRelease(&e->mutex);
		}
		LWLockRelease(StatsShared->lock);
	}
	PG_RETURN_VOID();
}
