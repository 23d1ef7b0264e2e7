/*-------------------------------------------------------------------------
 *
 * schemareg.c
 *	  Registered schemas: the check of payloads at publish against the
 *	  schemas whose pattern matches the topic, lookup by URI (for $ref), and
 *	  the SQL functions eventbus.validate and validation_errors.
 *
 * eventbus.schema holds the schemas (sql/70_schemas.sql). Each backend
 * caches the topic schemas with their compiled patterns; a schema itself is
 * compiled (src/jsonschema/) the first time a publish needs it. The cache
 * is dropped by a relcache invalidation of eventbus.schema, which
 * register_schema and drop_schema send. With no schema registered, publish
 * pays one test of a flag.
 *
 * A payload that fails a schema with on_invalid 'reject' raises 23514,
 * naming the schema, the JSON path and the keyword of the first failure.
 * With 'dead_letter' the event is written with rejected_by set (readers
 * skip it) and becomes a dead letter (reason 'schema') of every
 * subscription it would have reached (eventbus._schema_dead_letter).
 *
 * Locking: loading the cache and resolving $ref read eventbus.schema
 * under AccessShareLock; nothing is locked per publish.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "jsonschema.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

typedef struct TopicSchema
{
	EbPattern	pattern;
	char	   *name;			/* the pattern, as registered */
	bool		dead_letter;	/* on_invalid 'dead_letter' */
	Jsonb	   *document;
	EbSchema   *compiled;		/* NULL until first needed */
} TopicSchema;

static TopicSchema *Schemas = NULL;
static int	NSchemas = 0;
static bool SchemasValid = false;
static MemoryContext SchemasCxt = NULL;
static Oid	SchemaRelid = InvalidOid;
static uint64 InvalGeneration = 0;

/* Columns of eventbus.schema (sql/70_schemas.sql). */
typedef enum SchemaColumn
{
	SCH_PATTERN,
	SCH_URI,
	SCH_SCHEMA,
	SCH_ON_INVALID,
	SCH_NCOLUMNS
} SchemaColumn;

static const char *const SchemaColumnNames[SCH_NCOLUMNS] = {
	"pattern", "uri", "schema", "on_invalid"
};

/* Opens eventbus.schema and finds its columns, or raises 55000. */
static Relation
OpenSchemaTable(AttrNumber *attnos)
{
	Oid			relid = EbRelid("schema");
	Relation	rel = EbTableOpen(relid, AccessShareLock);

	for (int i = 0; i < SCH_NCOLUMNS; i++)
	{
		attnos[i] = get_attnum(relid, SchemaColumnNames[i]);
		if (attnos[i] == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("eventbus.schema has no column \"%s\"", SchemaColumnNames[i]),
					 errhint("Reinstall the extension: DROP EXTENSION eventbus; CREATE EXTENSION eventbus.")));
	}
	SchemaRelid = relid;
	return rel;
}

/* The OID of eventbus._with_base(jsonb, text). */
static Oid
WithBaseFunc(void)
{
	Oid			argtypes[2] = {JSONBOID, TEXTOID};

	return LookupFuncName(list_make2(makeString(EB_SCHEMA), makeString("_with_base")),
						  2, argtypes, false);
}

/* Loads the schemas that have a topic pattern. */
static void
LoadSchemas(void)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;
	AttrNumber	attnos[SCH_NCOLUMNS];
	TupleDesc	desc;
	int			allocated = 0;
	uint64		generation = InvalGeneration;

	if (SchemasCxt == NULL)
		SchemasCxt = AllocSetContextCreate(CacheMemoryContext, "eventbus schemas",
										   ALLOCSET_SMALL_SIZES);
	MemoryContextReset(SchemasCxt);	/* compiled schemas are its children */
	Schemas = NULL;
	NSchemas = 0;
	SchemasValid = false;

	/* SnapshotSelf: every committed schema, and no SSI predicate lock. */
	rel = OpenSchemaTable(attnos);
	desc = RelationGetDescr(rel);
	scan = table_beginscan(rel, SnapshotSelf, 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		bool		isnull;
		Datum		pattern = heap_getattr(tuple, attnos[SCH_PATTERN], desc, &isnull);
		TopicSchema *ts;
		MemoryContext old;
		text	   *p;

		if (isnull)
			continue;			/* only referenced by URI */
		old = MemoryContextSwitchTo(SchemasCxt);
		if (NSchemas == allocated)
		{
			allocated = Max(4, allocated * 2);
			Schemas = Schemas ? repalloc(Schemas, sizeof(TopicSchema) * allocated)
				: palloc(sizeof(TopicSchema) * allocated);
		}
		ts = &Schemas[NSchemas++];
		memset(ts, 0, sizeof(TopicSchema));
		p = DatumGetTextPP(pattern);
		ts->name = text_to_cstring(p);
		EbCompilePattern(VARDATA_ANY(p), VARSIZE_ANY_EXHDR(p), &ts->pattern);
		{
			Datum		doc = heap_getattr(tuple, attnos[SCH_SCHEMA], desc, &isnull);
			Datum		uri = heap_getattr(tuple, attnos[SCH_URI], desc, &isnull);

			/* Relative $refs resolve against its URI (eventbus._with_base). */
			if (!isnull)
				doc = OidFunctionCall2(WithBaseFunc(), doc, uri);
			ts->document = DatumGetJsonbPCopy(doc);
		}
		ts->dead_letter = strcmp(TextDatumGetCString(heap_getattr(tuple, attnos[SCH_ON_INVALID],
																  desc, &isnull)),
								 "dead_letter") == 0;
		MemoryContextSwitchTo(old);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	/* Valid unless an invalidation arrived while loading. */
	SchemasValid = (generation == InvalGeneration);
}

/* Names the registered schema that failed to compile at publish. */
static void
SchemaCompileContext(void *arg)
{
	errcontext("compiling the schema registered for \"%s\" (eventbus.schemas), to check a payload at publish",
			   (const char *) arg);
}

/*
 * Checks a payload against every schema whose pattern matches the topic.
 * Raises 23514 for a schema with on_invalid 'reject'; for 'dead_letter',
 * marks the event (ev->rejected_by, ev->schema_error) and goes on.
 */
void
EbCheckSchema(const char *topic, int len, Datum payload, EbEvent *ev)
{
	if (!SchemasValid)
		LoadSchemas();
	for (int i = 0; i < NSchemas; i++)
	{
		TopicSchema *ts = &Schemas[i];
		List	   *errors = NIL;
		EbSchemaError *e;

		if (!EbPatternMatches(&ts->pattern, topic, len))
			continue;
		if (ts->compiled == NULL)
		{
			ErrorContextCallback errcb;

			/* e.g. a schema it refers to by URI was dropped since */
			errcb.callback = SchemaCompileContext;
			errcb.arg = ts->name;
			errcb.previous = error_context_stack;
			error_context_stack = &errcb;
			ts->compiled = EbSchemaCompile(ts->document, EbSchemaLookupUri, NULL, SchemasCxt);
			error_context_stack = errcb.previous;
		}
		if (EbSchemaValidate(ts->compiled, DatumGetJsonbP(payload), false, &errors))
			continue;
		e = linitial(errors);
		if (!ts->dead_letter)
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("payload for topic \"%.*s\" does not match schema \"%s\"",
							len, topic, ts->name),
					 errdetail("at %s: %s (keyword \"%s\")", e->path, e->message, e->keyword),
					 errhint("SELECT * FROM eventbus.validation_errors(schema, payload) lists every failure; the schema is in eventbus.schemas.")));
		if (ev->rejected_by == NULL)
		{
			ev->rejected_by = pstrdup(ts->name);
			ev->schema_error = psprintf("payload does not match schema \"%s\": at %s: %s (keyword \"%s\")",
										ts->name, e->path, e->message, e->keyword);
		}
	}
}

/*
 * After writing an event that failed a schema with on_invalid
 * 'dead_letter': makes it a dead letter of every subscription it reaches.
 * Called through fmgr: the function is SECURITY DEFINER, and publishers
 * need no EXECUTE on it.
 */
void
EbSchemaDeadLetter(int64 event_id, const char *topic, int len, const EbEvent *ev)
{
	Oid			argtypes[4] = {INT8OID, TEXTOID, JSONBOID, TEXTOID};
	Oid			fn = LookupFuncName(list_make2(makeString(EB_SCHEMA),
											   makeString("_schema_dead_letter")),
									4, argtypes, false);

	FmgrInfo	flinfo;
	LOCAL_FCINFO(fcinfo, 4);

	/* Not OidFunctionCall4: the function returns void (a NULL datum). */
	fmgr_info(fn, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 4, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = Int64GetDatum(event_id);
	fcinfo->args[1].value = PointerGetDatum(cstring_to_text_with_len(topic, len));
	fcinfo->args[2].value = ev->payload;
	fcinfo->args[3].value = CStringGetTextDatum(ev->schema_error);
	for (int i = 0; i < 4; i++)
		fcinfo->args[i].isnull = false;
	(void) FunctionCallInvoke(fcinfo);
}

/* Finds a registered schema document by URI; NULL if none. */
Jsonb *
EbSchemaLookupUri(const char *uri, void *arg)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;
	AttrNumber	attnos[SCH_NCOLUMNS];
	TupleDesc	desc;
	Jsonb	   *found = NULL;

	rel = OpenSchemaTable(attnos);
	desc = RelationGetDescr(rel);
	scan = table_beginscan(rel, SnapshotSelf, 0, NULL);
	while (found == NULL && (tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		bool		isnull;
		Datum		u = heap_getattr(tuple, attnos[SCH_URI], desc, &isnull);

		if (!isnull && strcmp(TextDatumGetCString(u), uri) == 0)
			found = DatumGetJsonbPCopy(heap_getattr(tuple, attnos[SCH_SCHEMA], desc, &isnull));
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/* Drops the cache when eventbus.schema changes (or anything, on reset). */
static void
SchemaRelcacheCallback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == SchemaRelid)
	{
		SchemasValid = false;
		InvalGeneration++;
	}
}

/* Registers the callback; called once from _PG_init. */
void
EbSchemaRegInit(void)
{
	CacheRegisterRelcacheCallback(SchemaRelcacheCallback, (Datum) 0);
}

PG_FUNCTION_INFO_V1(eventbus_schemas_changed);

/* SQL eventbus._schemas_changed(): every backend reloads its schemas. */
Datum
eventbus_schemas_changed(PG_FUNCTION_ARGS)
{
	CacheInvalidateRelcacheByRelid(EbRelid("schema"));
	PG_RETURN_VOID();
}

/* The compiled schema of the last call, kept in fn_extra. */
typedef struct SchemaCache
{
	Jsonb	   *key;			/* copy of the schema argument */
	EbSchema   *schema;
} SchemaCache;

/* Returns the compiled schema for the argument, compiling on change only. */
static EbSchema *
CachedSchema(FunctionCallInfo fcinfo, Jsonb *schema)
{
	FmgrInfo   *flinfo = fcinfo->flinfo;
	SchemaCache *cache = flinfo->fn_extra;

	if (cache == NULL)
	{
		cache = MemoryContextAllocZero(flinfo->fn_mcxt, sizeof(SchemaCache));
		flinfo->fn_extra = cache;
	}
	if (cache->schema && VARSIZE(cache->key) == VARSIZE(schema) &&
		memcmp(cache->key, schema, VARSIZE(schema)) == 0)
		return cache->schema;

	if (cache->schema)
	{
		EbSchema   *old = cache->schema;

		cache->schema = NULL;
		EbSchemaFree(old);
	}
	cache->schema = EbSchemaCompile(schema, EbSchemaLookupUri, NULL,
									flinfo->fn_mcxt);
	cache->key = MemoryContextAlloc(EbSchemaContext(cache->schema),
									VARSIZE(schema));
	memcpy(cache->key, schema, VARSIZE(schema));
	return cache->schema;
}

PG_FUNCTION_INFO_V1(eventbus_validate);

/*
 * SQL eventbus.validate(schema jsonb, document jsonb) RETURNS boolean
 */
Datum
eventbus_validate(PG_FUNCTION_ARGS)
{
	Jsonb	   *schema = PG_GETARG_JSONB_P(0);
	Jsonb	   *doc = PG_GETARG_JSONB_P(1);
	EbSchema   *s = CachedSchema(fcinfo, schema);

	PG_RETURN_BOOL(EbSchemaValidate(s, doc, false, NULL));
}

PG_FUNCTION_INFO_V1(eventbus_validation_errors);

/*
 * SQL eventbus.validation_errors(schema jsonb, document jsonb)
 *	 RETURNS TABLE(path text, keyword text, message text)
 */
Datum
eventbus_validation_errors(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Jsonb	   *schema = PG_GETARG_JSONB_P(0);
	Jsonb	   *doc = PG_GETARG_JSONB_P(1);
	EbSchema   *s;
	List	   *errors = NIL;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	s = CachedSchema(fcinfo, schema);
	EbSchemaValidate(s, doc, true, &errors);
	foreach(lc, errors)
	{
		EbSchemaError *err = lfirst(lc);
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		values[0] = CStringGetTextDatum(err->path);
		values[1] = CStringGetTextDatum(err->keyword);
		values[2] = CStringGetTextDatum(err->message);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
