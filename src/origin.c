/*-------------------------------------------------------------------------
 *
 * origin.c
 *	  Data restored from another cluster: detect it and have it adopted.
 *
 * Events and cursors store xids and snapshots of the cluster that wrote
 * them; in another cluster they would be meaningless (PgQ delivers nothing
 * after such a restore). eventbus.origin holds the system identifier of the
 * cluster the data belongs to. The first publish, subscribe or poll of a
 * backend checks it; if it names another cluster, it calls
 * eventbus._adopt_restored() (sql/50_restore.sql) before going on.
 * A backend that found nothing to adopt does not check again until
 * eventbus.origin is invalidated (DROP EXTENSION).
 *
 * Locking: the check reads eventbus.origin under AccessShareLock; the
 * adoption itself (SQL) locks eventbus.origin in EXCLUSIVE mode, so one
 * backend adopts and the others find the work done.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/inval.h"
#include "utils/snapmgr.h"

static bool OriginChecked = false;
static Oid	OriginRelid = InvalidOid;

/* Says whether eventbus.origin names a cluster other than this one. */
static bool
HasForeignOrigin(void)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;
	Oid			relid = EbRelid("origin");
	int64		self = (int64) GetSystemIdentifier();
	bool		foreign = false;
	int			rows = 0;

	rel = EbTableOpen(relid, AccessShareLock);
	scan = table_beginscan(rel, SnapshotSelf, 0, NULL);
	while (!foreign && (tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		bool		isnull;
		Datum		d = heap_getattr(tuple, 1, RelationGetDescr(rel), &isnull);

		foreign = !isnull && DatumGetInt64(d) != self;
		rows++;
	}
	/* A restore into this same cluster adds a second row: settle it too. */
	foreign |= rows > 1;
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	/* Set only now: opening the table may have processed invalidations. */
	OriginRelid = relid;
	return foreign;
}

/* Adopts restored data if eventbus.origin names another cluster. */
void
EbCheckOrigin(void)
{
	Oid			adopt;

	if (OriginChecked)
		return;
	if (!HasForeignOrigin())
	{
		OriginChecked = true;
		return;
	}
	/* Called through fmgr: SECURITY DEFINER applies, no EXECUTE check. */
	adopt = LookupFuncName(list_make2(makeString(EB_SCHEMA), makeString("_adopt_restored")),
						   0, NULL, false);
	(void) OidFunctionCall0(adopt);
	/* Not cached: if this transaction rolls back, the next call adopts. */
}

PG_FUNCTION_INFO_V1(eventbus_check_origin);

/* SQL eventbus._check_origin(): EbCheckOrigin for the SQL functions. */
Datum
eventbus_check_origin(PG_FUNCTION_ARGS)
{
	EbCheckOrigin();
	PG_RETURN_VOID();
}

/* Checks again after eventbus.origin changes identity (DROP EXTENSION). */
static void
OriginRelcacheCallback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == OriginRelid)
	{
		OriginChecked = false;
		OriginRelid = InvalidOid;
	}
}

/* Registers the callback; called once from _PG_init. */
void
EbOriginInit(void)
{
	CacheRegisterRelcacheCallback(OriginRelcacheCallback, (Datum) 0);
}
