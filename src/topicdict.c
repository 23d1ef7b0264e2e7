/*-------------------------------------------------------------------------
 *
 * topicdict.c
 *	  The topic dictionary: each distinct topic is stored once in
 *	  eventbus.topic and events carry its integer id, so that readers match
 *	  patterns once per distinct topic rather than once per event.
 *
 * Each backend caches topic -> id. A miss looks the topic up through the
 * index on eventbus.topic(topic) and, if absent, inserts a row. There is no
 * unique index on the text, so two transactions introducing the same new
 * topic never wait for each other; the worst a race does is give one topic
 * two ids, which readers treat alike.
 *
 * Unused topics are dropped (maintenance, sql/60_workers.sql), so that a
 * publisher of ever new topics cannot grow the dictionary without bound.
 * The danger is a publisher that still holds a dropped id in its cache:
 * its event would name no topic. The protocol that rules it out rests on
 * chunk generations: each time a chunk of the log becomes the current one
 * it gets the next generation number (eventbus.chunk.generation), and the
 * number is cleared when the chunk is truncated.
 *
 *	1. A cached id is only used for events written to a chunk of the
 *	   generation it was looked up for. Writing to a chunk of another
 *	   generation looks the topic up again (once per topic, backend and
 *	   generation), after the writer has read the chunk's generation.
 *	2. Maintenance first retires a topic: it sets retired_gen to the
 *	   current generation G. A lookup never returns a retired row; it
 *	   inserts a new one (a new id for the same topic).
 *	3. A retired row is deleted only when no chunk has a generation <= G
 *	   (all were truncated since, or became current after the retirement).
 *
 * Why that is safe: a lookup that returned the row happened before the
 * retirement committed, so the writer had read a generation <= G, and every
 * event it writes with that id goes to a chunk of a generation <= G. Such a
 * chunk is truncated before the row is deleted; truncation takes the
 * chunk's AccessExclusiveLock, so no writer of it is still open.
 *
 * Retiring a topic that is still in use costs only a new id. To retire
 * mostly unused ones, a lookup for a newer generation than the row's
 * used_gen records the use in eventbus.topic_use (an insert, so publishers
 * never wait for each other or for maintenance); maintenance folds these
 * into used_gen and retires topics not used in any live generation.
 *
 * A dictionary row inserted by a transaction that then aborts disappears, so
 * the cache is emptied on any abort of a transaction (or subtransaction)
 * that inserted one. It is also emptied when eventbus.topic is invalidated
 * (DROP EXTENSION), since ids restart with a new extension.
 *
 * Locking: a lookup reads eventbus.topic under AccessShareLock; a new
 * topic, or a use, is inserted under RowExclusiveLock. No unique index, so
 * no transaction waits for another's new topic.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_collation.h"
#include "commands/sequence.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/snapshot.h"

/* Columns of eventbus.topic; version 0.1.0 had the first three only. */
#define TOPIC_ID			1
#define TOPIC_TEXT			2
#define TOPIC_USED_GEN		4
#define TOPIC_RETIRED_GEN	5
#define TOPIC_NATTS			5
#define TOPIC_NATTS_0_1		3

/* Bounds on the per-backend caches: past them, a cache starts afresh. */
#define EB_TOPIC_CACHE_MAX	10000
#define EB_NAME_CACHE_MAX	50000
/* A missing name loads the names of the ids that follow it too. */
#define EB_NAME_BATCH		256

typedef struct TopicCacheEntry
{
	char		topic[EB_TOPIC_MAX_BYTES + 1];	/* hash key */
	int32		id;
	int64		generation;		/* the chunk generation it is valid for */
} TopicCacheEntry;

static HTAB *TopicCache = NULL;
static Oid	TopicRelid = InvalidOid;

/* The other way round: id -> topic, for readers (ids are never reused). */
typedef struct TopicNameEntry
{
	int32		id;				/* hash key */
	char	   *topic;			/* in TopicNameCxt */
} TopicNameEntry;

static HTAB *TopicNames = NULL;
static MemoryContext TopicNameCxt = NULL;
static bool InsertedInXact = false;

/*
 * eventbus.max_topics, and this backend's bound on the dictionary's size:
 * CountBase rows when the id sequence stood at CountSeq. Each id drawn
 * since may be one more row, so CountBase + (id - CountSeq) never
 * undercounts; only when it passes the limit is the table counted again.
 */
static int	eb_max_topics = 100000;
static int64 CountBase = 0;
static int64 CountSeq = 0;

/* Drops the cached topic ids. */
static void
ResetTopicIds(void)
{
	if (TopicCache)
		hash_destroy(TopicCache);
	TopicCache = NULL;
	TopicRelid = InvalidOid;
}

/* Drops the cached topic names. */
static void
ResetTopicNames(void)
{
	if (TopicNames)
		hash_destroy(TopicNames);
	TopicNames = NULL;
	if (TopicNameCxt)
		MemoryContextDelete(TopicNameCxt);
	TopicNameCxt = NULL;
}

/* Drops every cached topic id and name. */
static void
ResetTopicCache(void)
{
	ResetTopicIds();
	ResetTopicNames();
	CountBase = CountSeq = 0;
}

/* Creates the backend's topic cache. */
static void
CreateTopicCache(void)
{
	HASHCTL		ctl;

	ctl.keysize = EB_TOPIC_MAX_BYTES + 1;
	ctl.entrysize = sizeof(TopicCacheEntry);
	ctl.hcxt = CacheMemoryContext;
	TopicCache = hash_create("eventbus topic ids", 256, &ctl,
							 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

/*
 * Finds a committed (or our own) dictionary id for the topic that is not
 * retired, or -1; *used_gen gets its used_gen.
 */
static int32
LookupTopic(Relation rel, text *topic, int64 *used_gen)
{
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	TupleDesc	desc = RelationGetDescr(rel);
	bool		legacy = desc->natts < TOPIC_NATTS;
	int32		id = -1;

	/* The topic column and its index use the "C" collation. */
	ScanKeyEntryInitialize(&key, 0, 2, BTEqualStrategyNumber, InvalidOid,
						   C_COLLATION_OID, F_TEXTEQ, PointerGetDatum(topic));

	/*
	 * SnapshotSelf: committed rows plus our own, even from the current
	 * command; never other sessions' uncommitted ones. Not MVCC, so no SSI
	 * predicate lock: two SERIALIZABLE publishers of a new topic must not
	 * fail each other. A row being retired by maintenance right now still
	 * shows its old version: that is a lookup before the retirement
	 * commits, which the protocol (file header) allows.
	 */
	*used_gen = 0;
	scan = systable_beginscan(rel, EbRelid("topic_topic_idx"), true,
							  SnapshotSelf, 1, &key);
	while (id < 0 && HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		bool		isnull;

		if (!legacy)
		{
			(void) heap_getattr(tuple, TOPIC_RETIRED_GEN, desc, &isnull);
			if (!isnull)
				continue;		/* retired: never handed out again */
			*used_gen = DatumGetInt64(heap_getattr(tuple, TOPIC_USED_GEN, desc, &isnull));
		}
		id = DatumGetInt32(heap_getattr(tuple, TOPIC_ID, desc, &isnull));
	}
	systable_endscan(scan);
	return id;
}

/* Counts the rows of the dictionary (committed ones and ours). */
static int64
CountTopics(Oid relid)
{
	Relation	rel = EbTableOpen(relid, AccessShareLock);
	TableScanDesc scan = table_beginscan(rel, SnapshotSelf, 0, NULL);
	int64		n = 0;

	while (heap_getnext(scan, ForwardScanDirection) != NULL)
		n++;
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	return n;
}

/*
 * Adds the topic to the dictionary, valid from chunk generation
 * "generation", and returns its new id; raises 54000 past
 * eventbus.max_topics rows. natts: the table's columns (version 0.1.0
 * had fewer).
 */
static int32
InsertTopic(Oid relid, int natts, text *topic, int64 generation)
{
	EbRowWriter *writer;
	Datum		values[TOPIC_NATTS];
	bool		nulls[TOPIC_NATTS] = {false, false, false, false, true};
	int64		next = nextval_internal(EbRelid("topic_id_seq"), false);
	int64		rows;

	if (CountBase + (next - CountSeq) > eb_max_topics)
	{
		CountBase = CountTopics(relid);
		CountSeq = next - 1;
	}
	rows = CountBase + (next - CountSeq);
	if (rows > eb_max_topics)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many distinct topics: eventbus.max_topics (%d) reached", eb_max_topics),
				 errdetail("Topic \"%s\" would be number " INT64_FORMAT " of the topic dictionary, which keeps the topics of the events stored.",
						   text_to_cstring(topic), rows),
				 errhint("Put what varies per event (ids, customers) in the payload or the key, not in the topic; topics of reclaimed chunks are dropped; or have a superuser raise eventbus.max_topics.")));
	writer = EbRowWriterOpen(relid, natts);
	values[0] = Int32GetDatum((int32) next);
	values[1] = PointerGetDatum(topic);
	values[2] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	values[3] = Int64GetDatum(generation);
	values[4] = (Datum) 0;
	EbRowWrite(writer, values, nulls);
	EbRowWriterClose(writer);
	InsertedInXact = true;
	return (int32) next;
}

/* Records that the topic is used in chunk generation "generation". */
static void
InsertTopicUse(int32 id, int64 generation)
{
	EbRowWriter *writer = EbRowWriterOpen(EbRelid("topic_use"), 2);
	Datum		values[2] = {Int32GetDatum(id), Int64GetDatum(generation)};
	bool		nulls[2] = {false, false};

	EbRowWrite(writer, values, nulls);
	EbRowWriterClose(writer);
}

/*
 * Reads the names of the ids from "id" to id + EB_NAME_BATCH - 1 into the
 * name cache: new topics come in increasing ids, so a reader that meets
 * one soon meets the next ones. Returns the name of "id", or NULL when no
 * committed row has it. Valid until the next call.
 */
static const char *
LoadTopicNames(int32 id)
{
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tuple;
	Relation	rel;
	int32		last = id > PG_INT32_MAX - EB_NAME_BATCH ? PG_INT32_MAX : id + EB_NAME_BATCH;
	int32		ids[EB_NAME_BATCH];
	char	   *names[EB_NAME_BATCH];
	int			n = 0;
	const char *result = NULL;

	/* Opening the table may reset the caches: read first, cache after. */
	rel = EbTableOpen(EbRelid("topic"), AccessShareLock);
	ScanKeyInit(&keys[0], TOPIC_ID, BTGreaterEqualStrategyNumber, F_INT4GE, Int32GetDatum(id));
	ScanKeyInit(&keys[1], TOPIC_ID, BTLessStrategyNumber, F_INT4LT, Int32GetDatum(last));
	scan = systable_beginscan(rel, EbRelid("topic_pkey"), true, SnapshotSelf, 2, keys);
	while (n < EB_NAME_BATCH && HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		bool		isnull;
		Datum		d = heap_getattr(tuple, TOPIC_TEXT, RelationGetDescr(rel), &isnull);

		if (isnull)
			continue;
		ids[n] = DatumGetInt32(heap_getattr(tuple, TOPIC_ID, RelationGetDescr(rel), &isnull));
		names[n++] = TextDatumGetCString(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	if (TopicNames != NULL && hash_get_num_entries(TopicNames) + n > EB_NAME_CACHE_MAX)
		ResetTopicNames();
	if (TopicNames == NULL)
	{
		HASHCTL		ctl;

		TopicNameCxt = AllocSetContextCreate(CacheMemoryContext, "eventbus topic names",
											 ALLOCSET_DEFAULT_SIZES);
		ctl.keysize = sizeof(int32);
		ctl.entrysize = sizeof(TopicNameEntry);
		ctl.hcxt = TopicNameCxt;
		TopicNames = hash_create("eventbus topic names", 256, &ctl,
								 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	for (int i = 0; i < n; i++)
	{
		bool		found;
		TopicNameEntry *entry = hash_search(TopicNames, &ids[i], HASH_ENTER, &found);

		if (!found)
			entry->topic = MemoryContextStrdup(TopicNameCxt, names[i]);
		if (ids[i] == id)
			result = entry->topic;
		pfree(names[i]);
	}
	return result;
}

/*
 * Returns the topic of a dictionary id (cached per backend), or NULL when
 * no committed row has it. Valid until the next call.
 */
const char *
EbTopicName(int32 id)
{
	TopicNameEntry *entry;

	if (TopicNames != NULL &&
		(entry = hash_search(TopicNames, &id, HASH_FIND, NULL)) != NULL)
		return entry->topic;
	return LoadTopicNames(id);
}

/*
 * Returns the dictionary id of a valid topic for an event written to a
 * chunk of generation "generation" (0: a table of version 0.1.0), adding
 * the topic to the dictionary (in the current transaction) if it is new or
 * retired. See the file header for why the generation matters.
 */
int32
EbTopicId(const char *topic, int len, int64 generation)
{
	char		keybuf[EB_TOPIC_MAX_BYTES + 1];
	TopicCacheEntry *entry;
	bool		found;
	Relation	rel;
	Oid			relid;
	text	   *topic_text;
	int32		id;
	int64		used_gen;
	int			natts;

	Assert(len <= EB_TOPIC_MAX_BYTES);
	memcpy(keybuf, topic, len);
	keybuf[len] = '\0';

	if (TopicCache == NULL)
		CreateTopicCache();
	entry = hash_search(TopicCache, keybuf, HASH_FIND, NULL);
	if (entry && entry->generation == generation)
		return entry->id;

	/*
	 * Opening the table may process invalidations, which can reset the
	 * cache and TopicRelid: work with a local OID and rebuild afterwards.
	 */
	relid = EbRelid("topic");
	topic_text = cstring_to_text_with_len(topic, len);
	rel = EbTableOpen(relid, AccessShareLock);
	id = LookupTopic(rel, topic_text, &used_gen);
	natts = RelationGetDescr(rel)->natts < TOPIC_NATTS ? TOPIC_NATTS_0_1 : TOPIC_NATTS;
	table_close(rel, AccessShareLock);
	if (id < 0)
		id = InsertTopic(relid, natts, topic_text, generation);
	else if (generation > used_gen)
		InsertTopicUse(id, generation);

	if (TopicCache != NULL && hash_get_num_entries(TopicCache) >= EB_TOPIC_CACHE_MAX)
		ResetTopicIds();
	if (TopicCache == NULL)
		CreateTopicCache();
	TopicRelid = relid;
	entry = hash_search(TopicCache, keybuf, HASH_ENTER, &found);
	entry->id = id;
	entry->generation = generation;
	return id;
}

/* Forgets ids that an aborted (sub)transaction may have added. */
static void
TopicXactCallback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* a prepared transaction may still be rolled back */
			if (InsertedInXact)
				ResetTopicCache();
			InsertedInXact = false;
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			InsertedInXact = false;
			break;
		default:
			break;
	}
}

/* Forgets ids on a subtransaction abort, for the same reason. */
static void
TopicSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
					 SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB && InsertedInXact)
		ResetTopicCache();
}

/* Forgets everything when eventbus.topic changes identity (DROP EXTENSION). */
static void
TopicRelcacheCallback(Datum arg, Oid relid)
{
	if (TopicCache != NULL && (relid == InvalidOid || relid == TopicRelid))
		ResetTopicCache();
}

/* Registers the dictionary's callbacks; called once from _PG_init. */
void
EbTopicDictInit(void)
{
	DefineCustomIntVariable("eventbus.max_topics",
							"Most distinct topics the topic dictionary takes.",
							"A publish of one more new topic fails with SQLSTATE 54000. Valid range: 100 to 100000000.",
							&eb_max_topics,
							100000,
							100,
							100000000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);
	RegisterXactCallback(TopicXactCallback, NULL);
	RegisterSubXactCallback(TopicSubXactCallback, NULL);
	CacheRegisterRelcacheCallback(TopicRelcacheCallback, (Datum) 0);
}
