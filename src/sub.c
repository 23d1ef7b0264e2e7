/*-------------------------------------------------------------------------
 *
 * sub.c
 *	  A subscription as the consuming code sees it: its options loaded
 *	  from eventbus.subscription, its patterns matched once per topic id,
 *	  its filter, its backoff.
 *
 * Locking: a lookup reads eventbus.subscription and its unique indexes
 * under AccessShareLock with the active snapshot.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "sub.h"
#include "access.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonpath.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

/* Columns of eventbus.subscription (sql/30_subscriptions.sql), 1-based. */
enum
{
	SUB_ID = 1,
	SUB_NAME,
	SUB_PATTERNS,
	SUB_MAX_ATTEMPTS,
	SUB_BACKOFF_INITIAL,
	SUB_BACKOFF_MAX,
	SUB_LEASE,
	SUB_ORDERED,
	SUB_FILTER,
	SUB_MAX_BACKLOG,
	SUB_ON_OVERFLOW,
	SUB_PAUSED,
	SUB_CREATED_AT,
	SUB_HANDLER,
	SUB_CONCURRENCY,
	SUB_OWNER,
	SUB_CONSUMERS,
	SUB_MANAGERS,
	SUB_SINK
};

/* An interval in microseconds (a month counted as 30 days). */
static int64
IntervalUsecs(const Interval *iv)
{
	return iv->time + (int64) iv->day * USECS_PER_DAY +
		(int64) iv->month * DAYS_PER_MONTH * USECS_PER_DAY;
}

/* Reads a regrole[] into an array of OIDs (NULL elements skipped). */
static int
RoleArray(Datum d, Oid **out)
{
	ArrayType  *arr = DatumGetArrayTypeP(d);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			k = 0;

	deconstruct_array(arr, REGROLEOID, sizeof(Oid), true, TYPALIGN_INT, &elems, &nulls, &n);
	*out = palloc(sizeof(Oid) * Max(n, 1));
	for (int i = 0; i < n; i++)
		if (!nulls[i])
			(*out)[k++] = DatumGetObjectId(elems[i]);
	return k;
}

/* Fills in rights from the columns owner, consumers and managers (arrays may be (Datum) 0: none). */
void
EbRightsFromArrays(EbRights *rights, Oid owner, Datum consumers, Datum managers)
{
	rights->owner = owner;
	rights->nconsumers = consumers ? RoleArray(consumers, &rights->consumers) : 0;
	rights->nmanagers = managers ? RoleArray(managers, &rights->managers) : 0;
}

/* Takes a subscription row apart. */
static EbSub *
SubFromTuple(HeapTuple tuple, TupleDesc desc)
{
	EbSub	   *sub = palloc0(sizeof(EbSub));
	bool		isnull;
	Datum		d;
	ArrayType  *patterns;
	Datum	   *elems;
	bool	   *enulls;
	int			n;

	if (desc->natts < SUB_SINK)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("eventbus.subscription has %d columns, this library reads %d", desc->natts, SUB_SINK),
				 errhint("Run ALTER EXTENSION eventbus UPDATE in this database.")));
	sub->id = DatumGetInt32(heap_getattr(tuple, SUB_ID, desc, &isnull));
	sub->name = TextDatumGetCString(heap_getattr(tuple, SUB_NAME, desc, &isnull));
	patterns = DatumGetArrayTypeP(heap_getattr(tuple, SUB_PATTERNS, desc, &isnull));
	deconstruct_array(patterns, TEXTOID, -1, false, TYPALIGN_INT, &elems, &enulls, &n);
	sub->patterns = palloc(sizeof(EbPattern) * Max(n, 1));
	for (int i = 0; i < n; i++)
		if (!enulls[i])
		{
			text	   *p = DatumGetTextPP(elems[i]);

			EbCompilePattern(VARDATA_ANY(p), VARSIZE_ANY_EXHDR(p), &sub->patterns[sub->npatterns++]);
		}
	sub->max_attempts = DatumGetInt32(heap_getattr(tuple, SUB_MAX_ATTEMPTS, desc, &isnull));
	sub->backoff_initial = IntervalUsecs(DatumGetIntervalP(heap_getattr(tuple, SUB_BACKOFF_INITIAL, desc, &isnull)));
	sub->backoff_max = IntervalUsecs(DatumGetIntervalP(heap_getattr(tuple, SUB_BACKOFF_MAX, desc, &isnull)));
	sub->lease = *DatumGetIntervalP(heap_getattr(tuple, SUB_LEASE, desc, &isnull));
	sub->ordered = DatumGetBool(heap_getattr(tuple, SUB_ORDERED, desc, &isnull));
	d = heap_getattr(tuple, SUB_FILTER, desc, &isnull);
	sub->has_filter = !isnull;
	if (!isnull)
		sub->filter = PointerGetDatum(PG_DETOAST_DATUM_COPY(d));
	d = heap_getattr(tuple, SUB_MAX_BACKLOG, desc, &isnull);
	sub->max_backlog = isnull ? 0 : DatumGetInt64(d);
	d = heap_getattr(tuple, SUB_ON_OVERFLOW, desc, &isnull);
	sub->drop_oldest = !isnull && strcmp(TextDatumGetCString(d), "drop_oldest") == 0;
	sub->paused = DatumGetBool(heap_getattr(tuple, SUB_PAUSED, desc, &isnull));
	(void) heap_getattr(tuple, SUB_SINK, desc, &isnull);
	sub->relay = !isnull;
	{
		bool		cnull;
		bool		mnull;
		Oid			owner = DatumGetObjectId(heap_getattr(tuple, SUB_OWNER, desc, &isnull));
		Datum		consumers = heap_getattr(tuple, SUB_CONSUMERS, desc, &cnull);
		Datum		managers = heap_getattr(tuple, SUB_MANAGERS, desc, &mnull);

		EbRightsFromArrays(&sub->rights, owner, cnull ? (Datum) 0 : consumers,
						   mnull ? (Datum) 0 : managers);
	}
	return sub;
}

/* Looks a subscription up through one of its unique indexes; NULL when absent. */
static EbSub *
SubLookup(const char *indexname, ScanKey key)
{
	Relation	rel = EbTableOpen(EbRelid("subscription"), AccessShareLock);
	SysScanDesc scan;
	HeapTuple	tuple;
	EbSub	   *sub = NULL;

	scan = systable_beginscan(rel, EbRelid(indexname), true, GetActiveSnapshot(), 1, key);
	if (HeapTupleIsValid(tuple = systable_getnext(scan)))
		sub = SubFromTuple(tuple, RelationGetDescr(rel));
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return sub;
}

/* Returns the subscription of that name, or NULL. */
EbSub *
EbSubFind(const char *name)
{
	ScanKeyData key;

	ScanKeyInit(&key, SUB_NAME, BTEqualStrategyNumber, F_TEXTEQ, CStringGetTextDatum(name));
	key.sk_collation = DEFAULT_COLLATION_OID;
	return SubLookup("subscription_name_key", &key);
}

/* Returns the subscription of that name, or raises 42704 naming it. */
EbSub *
EbSubByName(const char *name)
{
	EbSub	   *sub = EbSubFind(name);

	if (sub == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("subscription \"%s\" does not exist", name),
				 errhint("Create it with eventbus.subscribe(name, patterns); list them in eventbus.subscriptions.")));
	return sub;
}

/* Returns the subscription with that id, or NULL. */
EbSub *
EbSubById(int32 id)
{
	ScanKeyData key;

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(id));
	return SubLookup("subscription_pkey", &key);
}

/* Whether the subscription's patterns match a topic id (matched once per id). */
bool
EbSubMatchesTopic(EbSub *sub, int32 topic_id)
{
	struct
	{
		int32		id;
		bool		matches;
	}		   *entry;
	bool		found;

	if (sub->topics == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(int32);
		ctl.entrysize = sizeof(*entry);
		ctl.hcxt = CurrentMemoryContext;
		sub->topics = hash_create("eventbus subscription topics", 64, &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	entry = hash_search(sub->topics, &topic_id, HASH_ENTER, &found);
	if (!found)
	{
		const char *topic = EbTopicName(topic_id);

		entry->matches = false;
		for (int i = 0; topic != NULL && i < sub->npatterns && !entry->matches; i++)
			entry->matches = EbPatternMatches(&sub->patterns[i], topic, strlen(topic));
	}
	return entry->matches;
}

/*
 * The delay before retry number attempt + 1, in microseconds:
 * backoff_initial * 2^(attempt-1), capped at backoff_max before it can
 * overflow, then a random 50-100% of it (jitter).
 */
int64
EbBackoff(const EbSub *sub, int attempt)
{
	int64		d = sub->backoff_initial;

	for (int i = 1; i < attempt && d < sub->backoff_max; i++)
		d = d > sub->backoff_max / 2 ? sub->backoff_max : d * 2;
	d = Min(d, sub->backoff_max);
	return (int64) (d * (0.5 + pg_prng_double(&pg_global_prng_state) * 0.5));
}

/* Whether a payload passes the subscription's jsonpath filter (payload @@ filter). */
bool
EbSubPassesFilter(EbSub *sub, Datum payload)
{
	LOCAL_FCINFO(fcinfo, 2);
	Datum		result;

	InitFunctionCallInfoData(*fcinfo, NULL, 2, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = payload;
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = sub->filter;
	fcinfo->args[1].isnull = false;
	result = jsonb_path_match_opr(fcinfo);
	return !fcinfo->isnull && DatumGetBool(result);
}

/* Prepares (once per backend) and keeps an SPI plan. */
SPIPlanPtr
EbKeepPlan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, types);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "eventbus: could not prepare \"%s\": %s", sql,
				 SPI_result_code_string(SPI_result));
		*plan = p;
	}
	return *plan;
}
