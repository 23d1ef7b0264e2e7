/*-------------------------------------------------------------------------
 *
 * backlog.c
 *	  max_backlog with on_overflow => 'reject': publish refuses an event
 *	  while a subscription it would reach is over its backlog.
 *
 * Each backend caches the subscriptions that have such a limit (usually
 * none: then the check costs one test of a flag), with their compiled
 * patterns. For a matching subscription, the backlog is counted by
 * eventbus._backlog() (sql/40_consume.sql) at most once per
 * eventbus.backlog_check_interval; events this backend publishes meanwhile
 * are added to the count, so within one session the limit is exact and
 * across sessions it may be overshot by what others publish within the
 * interval. Subscription changes invalidate the cache through a relcache
 * invalidation of eventbus.subscription (eventbus._subscriptions_changed).
 *
 * Locking: reloading the cache reads eventbus.subscription under
 * AccessShareLock with SnapshotSelf (no SSI predicate lock for
 * SERIALIZABLE publishers); a publish takes no lock of its own.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

/* eventbus.backlog_check_interval, in milliseconds */
/* eventbus.backlog_check_interval, in milliseconds */
static int	eb_backlog_check_interval = 1000;

typedef struct LimitedSub
{
	int32		id;
	char	   *name;
	int64		max_backlog;
	int			npatterns;
	EbPattern  *patterns;
	bool		counted_valid;
	int64		counted;		/* backlog as last counted, capped at max + 1 */
	TimestampTz counted_at;
	int64		added;			/* events this backend published since */
	/* Events published by the current command: the count cannot see them. */
	uint64		cmd_xact;
	CommandId	cmd_id;
	int64		added_in_cmd;
} LimitedSub;

static LimitedSub *Limited = NULL;
static int	NLimited = 0;
static bool LimitedValid = false;
static MemoryContext LimitedCxt = NULL;
static Oid	SubscriptionRelid = InvalidOid;
static Oid	BacklogFunc = InvalidOid;
static uint64 XactSerial = 0;	/* transactions ended in this backend */
static uint64 InvalGeneration = 0;	/* invalidations of eventbus.subscription seen */

/* Columns of eventbus.subscription the cache reads. */
typedef enum SubColumn
{
	SUB_ID,
	SUB_NAME,
	SUB_PATTERNS,
	SUB_MAX_BACKLOG,
	SUB_ON_OVERFLOW,
	SUB_NCOLUMNS
} SubColumn;

static const char *const SubColumnNames[SUB_NCOLUMNS] = {
	"id", "name", "patterns", "max_backlog", "on_overflow"
};

/* Finds the columns, or raises 55000 if one was dropped or renamed by hand. */
static void
SubColumnNumbers(Oid relid, AttrNumber *attnos)
{
	for (int i = 0; i < SUB_NCOLUMNS; i++)
	{
		attnos[i] = get_attnum(relid, SubColumnNames[i]);
		if (attnos[i] == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("eventbus.subscription has no column \"%s\"", SubColumnNames[i]),
					 errhint("Reinstall the extension: DROP EXTENSION eventbus; CREATE EXTENSION eventbus.")));
	}
}

/* Loads the subscriptions with max_backlog and on_overflow 'reject'. */
static void
LoadLimited(void)
{
	Oid			relid = EbRelid("subscription");
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;
	Oid			argtypes[2] = {INT4OID, INT8OID};
	int			allocated = 0;
	uint64		generation = InvalGeneration;
	AttrNumber	attnos[SUB_NCOLUMNS];
	TupleDesc	desc;

	if (LimitedCxt == NULL)
		LimitedCxt = AllocSetContextCreate(CacheMemoryContext, "eventbus backlog limits",
										   ALLOCSET_SMALL_SIZES);
	MemoryContextReset(LimitedCxt);
	Limited = NULL;
	NLimited = 0;
	/* Invalid until loaded in full: an error part-way leaves it invalid. */
	LimitedValid = false;
	SubscriptionRelid = relid;

	/*
	 * SnapshotSelf: every committed subscription (and our own), and no SSI
	 * predicate lock on eventbus.subscription for SERIALIZABLE publishers.
	 */
	rel = EbTableOpen(relid, AccessShareLock);
	SubColumnNumbers(relid, attnos);
	desc = RelationGetDescr(rel);
	scan = table_beginscan(rel, SnapshotSelf, 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		bool		isnull;
		Datum		d = heap_getattr(tuple, attnos[SUB_MAX_BACKLOG], desc, &isnull);
		LimitedSub *sub;
		MemoryContext old;
		Datum	   *elems;
		bool	   *nulls;
		int			n;

		if (isnull)
			continue;
		if (strcmp(TextDatumGetCString(heap_getattr(tuple, attnos[SUB_ON_OVERFLOW], desc, &isnull)), "reject") != 0)
			continue;
		old = MemoryContextSwitchTo(LimitedCxt);
		if (NLimited == allocated)
		{
			allocated = Max(4, allocated * 2);
			Limited = Limited ? repalloc(Limited, sizeof(LimitedSub) * allocated)
				: palloc(sizeof(LimitedSub) * allocated);
		}
		sub = &Limited[NLimited++];
		memset(sub, 0, sizeof(LimitedSub));
		sub->max_backlog = DatumGetInt64(d);
		sub->id = DatumGetInt32(heap_getattr(tuple, attnos[SUB_ID], desc, &isnull));
		sub->name = TextDatumGetCString(heap_getattr(tuple, attnos[SUB_NAME], desc, &isnull));
		deconstruct_array(DatumGetArrayTypeP(heap_getattr(tuple, attnos[SUB_PATTERNS], desc, &isnull)),
						  TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
		sub->patterns = palloc(sizeof(EbPattern) * Max(n, 1));
		for (int i = 0; i < n; i++)
		{
			text	   *p;

			if (nulls[i])
				continue;
			p = DatumGetTextPP(elems[i]);
			EbCompilePattern(VARDATA_ANY(p), VARSIZE_ANY_EXHDR(p), &sub->patterns[sub->npatterns++]);
		}
		MemoryContextSwitchTo(old);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);

	BacklogFunc = LookupFuncName(list_make2(makeString(EB_SCHEMA), makeString("_backlog")),
								 2, argtypes, false);
	/* Valid unless an invalidation arrived while loading. */
	LimitedValid = (generation == InvalGeneration);
}

/* Says whether the topic matches one of the subscription's patterns. */
static bool
SubMatches(const LimitedSub *sub, const char *topic, int len)
{
	for (int i = 0; i < sub->npatterns; i++)
		if (EbPatternMatches(&sub->patterns[i], topic, len))
			return true;
	return false;
}

/*
 * Raises 53400 if publishing one event on the topic would take a
 * subscription with on_overflow 'reject' over its max_backlog; otherwise
 * counts the event against each such subscription the topic reaches.
 */
void
EbCheckBacklog(const char *topic, int len)
{
	if (!LimitedValid)
		LoadLimited();
	for (int i = 0; i < NLimited; i++)
	{
		LimitedSub *sub = &Limited[i];
		TimestampTz now;

		if (!SubMatches(sub, topic, len))
			continue;
		if (sub->cmd_xact != XactSerial || sub->cmd_id != GetCurrentCommandId(false))
		{
			sub->cmd_xact = XactSerial;
			sub->cmd_id = GetCurrentCommandId(false);
			sub->added_in_cmd = 0;
		}
		now = GetCurrentTimestamp();
		if (!sub->counted_valid ||
			TimestampDifferenceExceeds(sub->counted_at, now, eb_backlog_check_interval))
		{
			/* Through fmgr: SECURITY DEFINER applies, no EXECUTE check. */
			int64		n = DatumGetInt64(OidFunctionCall2(BacklogFunc,
														   Int32GetDatum(sub->id),
														   Int64GetDatum(sub->max_backlog + 1)));

			/* The call may have processed invalidations: start over. */
			if (!LimitedValid)
			{
				EbCheckBacklog(topic, len);
				return;
			}
			sub->counted = n;
			sub->counted_at = now;
			/* The count sees earlier commands of this transaction, not this one. */
			sub->added = sub->added_in_cmd;
			sub->counted_valid = true;
		}
		if (sub->counted + sub->added >= sub->max_backlog)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("subscription \"%s\" is over its max_backlog of " INT64_FORMAT " events",
							sub->name, sub->max_backlog),
					 errdetail("Publishing to topic \"%.*s\" is refused while the subscription has "
							   INT64_FORMAT " or more pending events (on_overflow => 'reject').",
							   len, topic, sub->max_backlog),
					 errhint("Consume the subscription's events, raise its limit with "
							 "eventbus.alter_subscription(), or use on_overflow => 'drop_oldest'.")));
		sub->added++;
		sub->added_in_cmd++;
	}
}

/* Recounts after a rollback to a savepoint, too. */
static void
BacklogSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		for (int i = 0; i < NLimited; i++)
			Limited[i].counted_valid = false;
}

/* Recounts after a rollback: the events counted as added are gone. */
static void
BacklogXactCallback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		for (int i = 0; i < NLimited; i++)
			Limited[i].counted_valid = false;
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PREPARE)
		XactSerial++;
}

/* Reloads the limits after eventbus.subscription changes. */
static void
BacklogRelcacheCallback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == SubscriptionRelid)
	{
		LimitedValid = false;
		InvalGeneration++;
	}
}

/* Registers the callbacks; called once from _PG_init. */
void
EbBacklogInit(void)
{
	DefineCustomIntVariable("eventbus.backlog_check_interval",
							"How old a subscription's counted backlog may be when publish compares it with max_backlog.",
							"0 counts on every publish. Only subscriptions with max_backlog and on_overflow 'reject' are counted. Valid range: 0 to 1 hour.",
							&eb_backlog_check_interval,
							1000,
							0,
							3600 * 1000,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	CacheRegisterRelcacheCallback(BacklogRelcacheCallback, (Datum) 0);
	RegisterXactCallback(BacklogXactCallback, NULL);
	RegisterSubXactCallback(BacklogSubXactCallback, NULL);
}

PG_FUNCTION_INFO_V1(eventbus_subscriptions_changed);

/* SQL eventbus._subscriptions_changed(): every backend reloads at commit. */
Datum
eventbus_subscriptions_changed(PG_FUNCTION_ARGS)
{
	CacheInvalidateRelcacheByRelid(EbRelid("subscription"));
	PG_RETURN_VOID();
}
