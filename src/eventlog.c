/*-------------------------------------------------------------------------
 *
 * eventlog.c
 *	  The chunked event log: where an event row goes and how it gets there.
 *
 * The log is a ring of EB_NUM_CHUNKS tables (eventbus.event_log_N) under
 * the parent eventbus.event_log; eventbus.chunk says which one is current.
 * Every backend caches the current chunk's OID; whoever moves the ring on
 * invalidates eventbus.chunk's relcache entry, which empties every cache.
 * A transaction that still appends to the previous chunk after a move is
 * harmless: readers read the parent, and a chunk is only truncated while
 * holding its AccessExclusiveLock and after checking what is in it.
 *
 * Rows are written through the table AM (heap insert plus index inserts),
 * not SPI: no parse or plan per event, no permission check on the tables
 * (EXECUTE on publish is the gate), and no search_path involved.
 *
 * Why no gaps: each row records the top-level transaction's full xid, so
 * readers can cut the log in commit order with snapshots (docs/
 * architecture.md); ids are only unique, never used as a position.
 *
 * Locking: an insert holds RowExclusiveLock on the current chunk;
 * reading the ring takes AccessShareLock on eventbus.chunk. Maintenance
 * truncates a chunk only under its AccessExclusiveLock, taken without
 * waiting, so a writer still holding the chunk delays its truncation and
 * is never blocked by it.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"

#include <limits.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_inherits.h"
#include "commands/sequence.h"
#include "executor/executor.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

/* Chunk settings, read by maintenance through current_setting(). */
static int	eb_retention = 0;	/* s */
static int	eb_chunk_interval = 600;	/* s */
static int	eb_chunk_size = 128 * 1024; /* kB */

/* Attribute numbers of eventbus.event_log (sql/00_log.sql). */
enum
{
	LOG_ID,
	LOG_TXID,
	LOG_PUBLISHED_AT,
	LOG_TOPIC_ID,
	LOG_KEY,
	LOG_PAYLOAD,
	LOG_HEADERS,
	LOG_DELIVER_AT,
	LOG_EXPIRES_AT,
	LOG_REJECTED_BY,
	LOG_NATTS
};

struct EbRowWriter
{
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
};

struct EbLogWriter
{
	EbRowWriter *rows;
	Oid			seqid;
	int64		generation;		/* of the chunk written to (topicdict.c) */
};

/* Cached OIDs; all reset when any of our relations is invalidated. */
static Oid	SchemaOid = InvalidOid;
static Oid	ChunkRegistryOid = InvalidOid;
static Oid	CurrentChunkOid = InvalidOid;
static int64 CurrentChunkGeneration = 0;

/* Counts invalidations, so that a lookup never caches what one made stale. */
static uint64 InvalCount = 0;
static Oid	EventSeqOid = InvalidOid;

/* Returns the OID of schema eventbus. */
Oid
EbSchemaOid(void)
{
	if (!OidIsValid(SchemaOid))
	{
		SchemaOid = get_namespace_oid(EB_SCHEMA, true);
		if (!OidIsValid(SchemaOid))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("extension \"eventbus\" is not installed in this database"),
					 errhint("Run CREATE EXTENSION eventbus.")));
	}
	return SchemaOid;
}

/* Returns the OID of a relation in schema eventbus, which must exist. */
Oid
EbRelid(const char *relname)
{
	Oid			relid = get_relname_relid(relname, EbSchemaOid());

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("relation \"%s.%s\" of extension eventbus is missing",
						EB_SCHEMA, relname),
				 errhint("Reinstall the extension: DROP EXTENSION eventbus; CREATE EXTENSION eventbus.")));
	return relid;
}

/*
 * Opens a relation of the extension by OID. One dropped meanwhile (DROP
 * EXTENSION committed while this statement waited for its lock) gives a
 * clear error rather than "could not open relation with OID".
 */
Relation
EbTableOpen(Oid relid, LOCKMODE lockmode)
{
	Relation	rel = try_table_open(relid, lockmode);

	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"eventbus\" was dropped while this statement ran"),
				 errhint("Run CREATE EXTENSION eventbus, then try again.")));
	return rel;
}

/*
 * Reads eventbus.chunk and returns the OID of the current chunk table, and
 * in *generation its generation: the number of the chunk's turn as the
 * current one, which the topic dictionary needs (topicdict.c). A table
 * without the column (version 0.1.0 before its update) gives 0.
 */
static Oid
LookupCurrentChunk(int64 *generation)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;
	Oid			registry = EbRelid("chunk");
	Oid			chunk;
	char	   *relname = NULL;
	AttrNumber	genattr;

	/*
	 * SnapshotSelf: the committed ring, without an SSI predicate lock. A
	 * rotation committing during the scan can hide both the old and the new
	 * current row from it (they are two rows); a second scan sees the result.
	 */
	rel = EbTableOpen(registry, AccessShareLock);
	genattr = get_attnum(registry, "generation");
	*generation = 0;
	for (int attempt = 0; attempt < 3 && relname == NULL; attempt++)
	{
		scan = table_beginscan(rel, SnapshotSelf, 0, NULL);
		while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
		{
			bool		isnull;
			Datum		current = heap_getattr(tuple, 3, RelationGetDescr(rel), &isnull);

			if (!isnull && DatumGetBool(current))
			{
				Datum		name = heap_getattr(tuple, 2, RelationGetDescr(rel), &isnull);

				relname = pstrdup(NameStr(*DatumGetName(name)));
				if (genattr != InvalidAttrNumber)
				{
					Datum		gen = heap_getattr(tuple, genattr, RelationGetDescr(rel), &isnull);

					*generation = isnull ? 0 : DatumGetInt64(gen);
				}
				break;
			}
		}
		table_endscan(scan);
	}
	table_close(rel, AccessShareLock);

	if (relname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("eventbus.chunk has no current chunk"),
				 errhint("Reinstall the extension, or mark one chunk current in eventbus.chunk.")));
	chunk = EbRelid(relname);
	if (!typeInheritsFrom(get_rel_type_id(chunk), get_rel_type_id(EbRelid("event_log"))))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("current chunk \"%s.%s\" is not a chunk of eventbus.event_log",
						EB_SCHEMA, relname),
				 errhint("Reinstall the extension; eventbus.chunk must name event_log_0, _1 or _2.")));
	/* Set only now: opening the registry may have processed invalidations. */
	ChunkRegistryOid = registry;
	return chunk;
}

/*
 * Opens a relation for row inserts through the table AM. "natts" is the
 * number of columns the caller fills; a table of another shape (a column
 * added or dropped by hand or by a missing upgrade) is refused rather than
 * written with garbage.
 */
EbRowWriter *
EbRowWriterOpen(Oid relid, int natts)
{
	EbRowWriter *w = palloc(sizeof(EbRowWriter));
	RangeTblEntry *rte;
	TupleDesc	desc;

	w->rel = EbTableOpen(relid, RowExclusiveLock);
	desc = RelationGetDescr(w->rel);
	for (int i = 0; i < desc->natts; i++)
		if (TupleDescAttr(desc, i)->attisdropped)
			natts = -1;
	if (desc->natts != natts)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s.%s\" does not have the columns eventbus expects",
						EB_SCHEMA, RelationGetRelationName(w->rel)),
				 errdetail("Its columns were changed outside the extension's scripts."),
				 errhint("Reinstall the extension, or run ALTER EXTENSION eventbus UPDATE.")));
	w->estate = CreateExecutorState();

	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = relid;
	rte->relkind = w->rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	ExecInitRangeTable(w->estate, list_make1(rte));

	w->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(w->rri, w->rel, 1, NULL, 0);
	ExecOpenIndices(w->rri, false);
	w->slot = ExecInitExtraTupleSlot(w->estate, RelationGetDescr(w->rel),
									 &TTSOpsVirtual);
	return w;
}

/* Inserts one row (heap and indexes). */
void
EbRowWrite(EbRowWriter *w, Datum *values, bool *nulls)
{
	TupleTableSlot *slot = w->slot;
	int			natts = slot->tts_tupleDescriptor->natts;

	ExecClearTuple(slot);
	memcpy(slot->tts_values, values, natts * sizeof(Datum));
	memcpy(slot->tts_isnull, nulls, natts * sizeof(bool));
	ExecStoreVirtualTuple(slot);

	table_tuple_insert(w->rel, slot, GetCurrentCommandId(true), 0, NULL);
	if (w->rri->ri_NumIndices > 0)
	{
		List	   *recheck = ExecInsertIndexTuples(w->rri, slot, w->estate,
													false, false, NULL, NIL);

		list_free(recheck);
	}
	ResetPerTupleExprContext(w->estate);
}

/*
 * Replaces the row at tid, which this transaction has locked (so no other
 * can have changed it), with new values; indexes only when not HOT.
 */
void
EbRowUpdate(EbRowWriter *w, ItemPointer tid, Datum *values, bool *nulls)
{
	TupleTableSlot *slot = w->slot;
	int			natts = slot->tts_tupleDescriptor->natts;
	TM_FailureData tmfd;
	LockTupleMode lockmode;
	bool		update_indexes;
	TM_Result	result;

	ExecClearTuple(slot);
	memcpy(slot->tts_values, values, natts * sizeof(Datum));
	memcpy(slot->tts_isnull, nulls, natts * sizeof(bool));
	ExecStoreVirtualTuple(slot);
	result = table_tuple_update(w->rel, tid, slot, GetCurrentCommandId(true),
								GetActiveSnapshot(), InvalidSnapshot, true,
								&tmfd, &lockmode, &update_indexes);
	if (result != TM_Ok && result != TM_SelfModified)
		elog(ERROR, "eventbus: unexpected result %d updating a locked row of \"%s\"",
			 (int) result, RelationGetRelationName(w->rel));
	if (result == TM_Ok && update_indexes && w->rri->ri_NumIndices > 0)
		list_free(ExecInsertIndexTuples(w->rri, slot, w->estate, true, false, NULL, NIL));
	ResetPerTupleExprContext(w->estate);
}

/* Deletes the row at tid, which this transaction has locked. */
void
EbRowDelete(EbRowWriter *w, ItemPointer tid)
{
	TM_FailureData tmfd;
	TM_Result	result;

	result = table_tuple_delete(w->rel, tid, GetCurrentCommandId(true), GetActiveSnapshot(),
								InvalidSnapshot, true, &tmfd, false);
	if (result != TM_Ok && result != TM_SelfModified)
		elog(ERROR, "eventbus: unexpected result %d deleting a locked row of \"%s\"",
			 (int) result, RelationGetRelationName(w->rel));
}

/* The relation a row writer writes. */
Relation
EbRowWriterRelation(EbRowWriter *w)
{
	return w->rel;
}

/* Closes a row writer, keeping the lock until the end of the transaction. */
void
EbRowWriterClose(EbRowWriter *w)
{
	ExecCloseIndices(w->rri);
	ExecResetTupleTable(w->estate->es_tupleTable, false);
	FreeExecutorState(w->estate);
	table_close(w->rel, NoLock);
	pfree(w);
}

/* Opens the current chunk of the log for appending events. */
EbLogWriter *
EbLogWriterOpen(void)
{
	EbLogWriter *w = palloc(sizeof(EbLogWriter));

	Oid			chunk = CurrentChunkOid;
	int64		generation = CurrentChunkGeneration;
	Oid			seq = EventSeqOid;
	uint64		inval = InvalCount;

	/* Locals: a lookup may process invalidations that reset the statics. */
	if (!OidIsValid(chunk))
		chunk = LookupCurrentChunk(&generation);
	if (!OidIsValid(seq))
		seq = EbRelid("event_id_seq");
	w->seqid = seq;
	w->generation = generation;
	w->rows = EbRowWriterOpen(chunk, LOG_NATTS);
	/*
	 * Cached only if no invalidation arrived meanwhile (opening the chunk
	 * processes them): a ring that moved is looked up again next time. This
	 * transaction may still write to the chunk it looked up; maintenance
	 * only reclaims a chunk without open writers.
	 */
	if (InvalCount == inval)
	{
		CurrentChunkOid = chunk;
		CurrentChunkGeneration = generation;
		EventSeqOid = seq;
	}
	return w;
}

/*
 * The generation of the chunk a writer writes to: the topic ids of its
 * events must be looked up for it (EbTopicId, topicdict.c).
 */
int64
EbLogWriterGeneration(EbLogWriter *w)
{
	return w->generation;
}

/* Appends one event to the log and returns its id. */
int64
EbLogWrite(EbLogWriter *w, const EbEvent *ev)
{
	Datum		values[LOG_NATTS];
	bool		nulls[LOG_NATTS];
	int64		id = nextval_internal(w->seqid, false);

	memset(nulls, 0, sizeof(nulls));
	values[LOG_ID] = Int64GetDatum(id);
	values[LOG_TXID] = FullTransactionIdGetDatum(GetTopFullTransactionId());
	values[LOG_PUBLISHED_AT] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	values[LOG_TOPIC_ID] = Int32GetDatum(ev->topic_id);
	values[LOG_KEY] = PointerGetDatum(ev->key);
	nulls[LOG_KEY] = (ev->key == NULL);
	values[LOG_PAYLOAD] = ev->payload;
	values[LOG_HEADERS] = ev->headers;
	nulls[LOG_HEADERS] = ev->headers_null;
	values[LOG_DELIVER_AT] = TimestampTzGetDatum(ev->deliver_at);
	nulls[LOG_DELIVER_AT] = ev->deliver_at_null;
	values[LOG_EXPIRES_AT] = TimestampTzGetDatum(ev->expires_at);
	nulls[LOG_EXPIRES_AT] = ev->expires_at_null;
	values[LOG_REJECTED_BY] = ev->rejected_by ? CStringGetTextDatum(ev->rejected_by) : (Datum) 0;
	nulls[LOG_REJECTED_BY] = (ev->rejected_by == NULL);

	Assert(RelationGetDescr(w->rows->rel)->natts == LOG_NATTS);
	EbRowWrite(w->rows, values, nulls);
	return id;
}

/* Closes a log writer. */
void
EbLogWriterClose(EbLogWriter *w)
{
	EbRowWriterClose(w->rows);
	pfree(w);
}

/*
 * Forgets cached OIDs when one of our relations is invalidated: the chunk
 * registry when the ring moves, or anything when the extension is dropped.
 */
static void
EventLogRelcacheCallback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == ChunkRegistryOid ||
		relid == CurrentChunkOid || relid == EventSeqOid)
	{
		SchemaOid = InvalidOid;
		ChunkRegistryOid = InvalidOid;
		CurrentChunkOid = InvalidOid;
		EventSeqOid = InvalidOid;
		InvalCount++;
	}
}

/* Registers the log's callbacks; called once from _PG_init. */
void
EbEventLogInit(void)
{
	/* Read by maintenance (eventbus._maintain) through current_setting(). */
	DefineCustomIntVariable("eventbus.retention",
							"How long events are kept at least, even when every subscription is done with them.",
							"0 reclaims a chunk as soon as no subscription needs its events. Valid range: 0 to 2147483647 s.",
							&eb_retention,
							0,
							0,
							INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("eventbus.chunk_interval",
							"Age at which maintenance moves publishing on to the next chunk of the log.",
							"Valid range: 1 to 2147483647 s.",
							&eb_chunk_interval,
							600,
							1,
							INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("eventbus.chunk_size",
							"Size at which maintenance moves publishing on to the next chunk of the log.",
							"Valid range: 64kB to 2TB.",
							&eb_chunk_size,
							128 * 1024,
							64,
							INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_KB,
							NULL, NULL, NULL);
	CacheRegisterRelcacheCallback(EventLogRelcacheCallback, (Datum) 0);
}

PG_FUNCTION_INFO_V1(eventbus_chunks_changed);

/* SQL eventbus._chunks_changed(): every backend re-reads the current chunk. */
Datum
eventbus_chunks_changed(PG_FUNCTION_ARGS)
{
	CacheInvalidateRelcacheByRelid(EbRelid("chunk"));
	PG_RETURN_VOID();
}
