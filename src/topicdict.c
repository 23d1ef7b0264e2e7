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
 * A dictionary row inserted by a transaction that then aborts disappears, so
 * the cache is emptied on any abort of a transaction (or subtransaction)
 * that inserted one. It is also emptied when eventbus.topic is invalidated
 * (DROP EXTENSION), since ids restart with a new extension.
 *
 * Locking: a lookup reads eventbus.topic under AccessShareLock; a new
 * topic is inserted under RowExclusiveLock. No unique index, so no
 * transaction waits for another's new topic.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
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

typedef struct TopicCacheEntry
{
	char		topic[EB_TOPIC_MAX_BYTES + 1];	/* hash key */
	int32		id;
} TopicCacheEntry;

static HTAB *TopicCache = NULL;
static Oid	TopicRelid = InvalidOid;

/* The other way round: id -> topic, for readers (ids are never reused). */
typedef struct TopicNameEntry
{
	int32		id;				/* hash key */
	char		topic[EB_TOPIC_MAX_BYTES + 1];
} TopicNameEntry;

static HTAB *TopicNames = NULL;
static bool InsertedInXact = false;

/* eventbus.max_topics */
static int	eb_max_topics = 100000;

/* Drops every cached topic id. */
static void
ResetTopicCache(void)
{
	if (TopicCache)
		hash_destroy(TopicCache);
	TopicCache = NULL;
	if (TopicNames)
		hash_destroy(TopicNames);
	TopicNames = NULL;
	TopicRelid = InvalidOid;
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

/* Finds a committed (or our own) dictionary id for the topic, or -1. */
static int32
LookupTopic(Relation rel, text *topic)
{
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	int32		id = -1;

	/* The topic column and its index use the "C" collation. */
	ScanKeyEntryInitialize(&key, 0, 2, BTEqualStrategyNumber, InvalidOid,
						   C_COLLATION_OID, F_TEXTEQ, PointerGetDatum(topic));

	/*
	 * SnapshotSelf: committed rows plus our own, even from the current
	 * command; never other sessions' uncommitted ones. Not MVCC, so no SSI
	 * predicate lock: two SERIALIZABLE publishers of a new topic must not
	 * fail each other.
	 */
	scan = systable_beginscan(rel, EbRelid("topic_topic_idx"), true,
							  SnapshotSelf, 1, &key);
	if (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		bool		isnull;

		id = DatumGetInt32(heap_getattr(tuple, 1, RelationGetDescr(rel), &isnull));
	}
	systable_endscan(scan);
	return id;
}

/*
 * Adds the topic to the dictionary and returns its new id; raises 54000
 * past eventbus.max_topics. Topics are never removed, so the id, drawn
 * from a sequence, bounds how many there are (ids of rolled-back new
 * topics count too: the bound errs on the safe side).
 */
static int32
InsertTopic(Oid relid, text *topic)
{
	EbRowWriter *writer;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	int64		next = nextval_internal(EbRelid("topic_id_seq"), false);
	int32		id;

	if (next > eb_max_topics)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many distinct topics: eventbus.max_topics (%d) reached", eb_max_topics),
				 errdetail("Topic \"%s\" would be number " INT64_FORMAT " of the topic dictionary, which keeps every topic ever published.",
						   text_to_cstring(topic), next),
				 errhint("Put what varies per event (ids, customers) in the payload or the key, not in the topic; or have a superuser raise eventbus.max_topics.")));
	id = (int32) next;
	writer = EbRowWriterOpen(relid, 3);

	values[0] = Int32GetDatum(id);
	values[1] = PointerGetDatum(topic);
	values[2] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	EbRowWrite(writer, values, nulls);
	EbRowWriterClose(writer);
	InsertedInXact = true;
	return id;
}

/*
 * Returns the topic of a dictionary id (cached per backend), or NULL when
 * no committed row has it.
 */
const char *
EbTopicName(int32 id)
{
	TopicNameEntry *entry;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	Relation	rel;
	Oid			relid;
	char	   *found = NULL;
	bool		isnew;

	if (TopicNames != NULL &&
		(entry = hash_search(TopicNames, &id, HASH_FIND, NULL)) != NULL)
		return entry->topic;

	/* Opening the table may reset the caches: look up first, cache after. */
	relid = EbRelid("topic");
	rel = table_open(relid, AccessShareLock);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(id));
	scan = systable_beginscan(rel, EbRelid("topic_pkey"), true, SnapshotSelf, 1, &key);
	if (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		bool		isnull;
		Datum		d = heap_getattr(tuple, 2, RelationGetDescr(rel), &isnull);

		if (!isnull)
			found = TextDatumGetCString(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (found == NULL)
		return NULL;

	if (TopicNames == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(int32);
		ctl.entrysize = sizeof(TopicNameEntry);
		ctl.hcxt = CacheMemoryContext;
		TopicNames = hash_create("eventbus topic names", 256, &ctl,
								 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	entry = hash_search(TopicNames, &id, HASH_ENTER, &isnew);
	strlcpy(entry->topic, found, sizeof(entry->topic));
	pfree(found);
	return entry->topic;
}

/*
 * Returns the dictionary id of a valid topic, adding it to the dictionary
 * (in the current transaction) if it is new.
 */
int32
EbTopicId(const char *topic, int len)
{
	char		keybuf[EB_TOPIC_MAX_BYTES + 1];
	TopicCacheEntry *entry;
	bool		found;
	Relation	rel;
	Oid			relid;
	text	   *topic_text;
	int32		id;

	Assert(len <= EB_TOPIC_MAX_BYTES);
	memcpy(keybuf, topic, len);
	keybuf[len] = '\0';

	if (TopicCache == NULL)
		CreateTopicCache();
	entry = hash_search(TopicCache, keybuf, HASH_FIND, NULL);
	if (entry)
		return entry->id;

	/*
	 * Opening the table may process invalidations, which can reset the
	 * cache and TopicRelid: work with a local OID and rebuild afterwards.
	 */
	relid = EbRelid("topic");
	topic_text = cstring_to_text_with_len(topic, len);
	rel = table_open(relid, AccessShareLock);
	id = LookupTopic(rel, topic_text);
	table_close(rel, AccessShareLock);
	if (id < 0)
		id = InsertTopic(relid, topic_text);

	if (TopicCache == NULL)
		CreateTopicCache();
	TopicRelid = relid;
	entry = hash_search(TopicCache, keybuf, HASH_ENTER, &found);
	entry->id = id;
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
