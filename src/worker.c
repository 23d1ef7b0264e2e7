/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The background worker of one database: ticks, cutting batches,
 *	  handler processes and maintenance. The launcher (launcher.c) starts
 *	  one per database that has the extension.
 *
 * The worker sleeps on its latch. Transactions that make events pollable
 * (publish, nack, redrive, ...) set it at commit (wake.c), and may name the
 * subscriptions concerned ("kicks", kept in the database's slot). Each
 * round, the worker ticks: in one short transaction, it reads the topics of
 * the events committed since the previous tick (window.c), cuts batches
 * for the subscriptions that consumers poll (cut.c), and sends at most one
 * NOTIFY per subscription with something new (tick.c; notify.c decides
 * which need one). Polls that found nothing to claim ask it to
 * tick now and wait for that tick to commit (launcher.c). It keeps the
 * handler processes of handler subscriptions and relay processes running
 * (subproc.c), and
 * runs maintenance every eventbus.maintenance_interval. It sleeps until
 * the next due retry or lease end, at most eventbus.tick_interval.
 *
 * Under a stream of commits, ticks are at least eventbus.tick_min_interval
 * and EB_TICK_SPACING times their own cost apart: the commits in between
 * are taken by one tick, and the worker ticks at most 1/EB_TICK_SPACING of
 * the time however long ticks get.
 *
 * Signals: SIGTERM sets a flag and cancels the work in progress (a tick,
 * maintenance); the worker then stops its handler processes and leaves
 * its loop. An error
 * ends the process; the launcher starts it again after
 * eventbus.worker_restart_delay. SIGHUP rereads the configuration.
 *
 * Locking: each transaction takes a share lock on the extension
 * (ExtensionPresent), so DROP EXTENSION waits for the worker's current
 * transaction to end, and the worker finds the extension gone at its next
 * one. The slot is only touched through launcher.h.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "batch.h"
#include "cut.h"
#include "sub.h"
#include "window.h"
#include "subproc.h"
#include "launcher.h"
#include "notify.h"
#include "stats.h"
#include "tick.h"
#include "worker.h"

#include <signal.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "commands/vacuum.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_node.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/fmgrprotos.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/* Ticks are this many times their own cost apart, at least (under load). */
#define EB_TICK_SPACING		3

/* A subscription polled within this long has batches cut ahead for it. */
#define EB_ACTIVE_MS		60000

/* Events of the log a tick reads per subscription, at most (ticks stay short). */
#define EB_CUT_ROWS			50000

/* Batch size for a subscription whose pollers' max_events is unknown. */
#define EB_DEFAULT_BATCH	100

/* Settings (EbWorkerInit defines them). */
static int	eb_tick_interval = 1000;	/* ms */
static int	eb_tick_min_interval = 2;	/* ms */
static int	eb_maintenance_interval = 60;	/* s */

/* Set by the signal handler. */
static volatile sig_atomic_t GotSigterm = false;

/* True while the worker works in a transaction: SIGTERM cancels it. */
static volatile sig_atomic_t InWork = false;

void		eventbus_worker_main(Datum arg);

/* SIGTERM: stop after the current round, cancelling its work. */
static void
HandleSigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	GotSigterm = true;
	SetLatch(MyLatch);
	/* Also cancel the work in progress: a tick, maintenance. */
	if (InWork)
	{
		InterruptPending = true;
		QueryCancelPending = true;
	}
	errno = save_errno;
}

/*
 * In a transaction: whether the extension is installed. Takes a share lock
 * on it, so a DROP EXTENSION waits for the end of this transaction.
 */
static bool
ExtensionPresent(void)
{
	Oid			extoid = get_extension_oid("eventbus", true);

	if (!OidIsValid(extoid))
		return false;
	LockDatabaseObject(ExtensionRelationId, extoid, 0, AccessShareLock);
	return get_extension_oid("eventbus", true) == extoid;
}

/*
 * In a transaction: whether the installed extension's version is this
 * library's. After a new library is installed and before ALTER EXTENSION
 * eventbus UPDATE, the worker waits (and says so, once) instead of
 * failing on the old functions.
 */
static bool
VersionMatches(void)
{
	static bool warned = false;
	Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	char	   *version = NULL;

	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("eventbus"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	if (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_extension_extversion, RelationGetDescr(rel), &isnull);

		if (!isnull)
			version = TextDatumGetCString(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (version != NULL && strcmp(version, EB_VERSION) != 0)
	{
		if (!warned)
			ereport(LOG,
					(errmsg("eventbus worker for database \"%s\" waits: the extension is version %s, the library %s",
							get_database_name(MyDatabaseId), version, EB_VERSION),
					 errhint("Run ALTER EXTENSION eventbus UPDATE in that database.")));
		warned = true;
		return false;
	}
	warned = false;
	return true;
}

/* Adds "eventbus worker" to the context of every message of a worker. */
static void
WorkerErrorContext(void *arg)
{
	errcontext("eventbus background worker for database %u", MyDatabaseId);
}

/* When the worker looks at its handler processes again. */
static TimestampTz NextHandlerCheck = 0;

/* Stops the handler processes when the worker exits. */
static void
WorkerOnExit(int code, Datum arg)
{
	EbProcsStop();
}

/* The last cut request a committed tick served. */
/* More of the topic dictionary's upkeep to do (Maintain), a step at most this often. */
static bool TopicsPending = false;
#define EB_TOPIC_STEP_MS 200
static uint64 LastCutServed = 0;

/* Subscriptions the tick cut to the end or not, and whether some are not there yet. */
static List *CaughtUp = NIL;
static List *NotCaughtUp = NIL;
static bool MoreToCut = false;

/* The query listing subscriptions to cut for, prepared once per worker. */
static SPIPlanPtr SubsPlan = NULL;

/*
 * The subscriptions known to be cut to the end as of the previous tick
 * (sub_id -> true); forgotten when the worker starts, so that its first
 * tick cuts every active subscription.
 */
static HTAB *UpToDate = NULL;

/* Whether the subscription was cut to the end as of the previous tick. */
static bool
WasUpToDate(int32 sub_id)
{
	return UpToDate != NULL && hash_search(UpToDate, &sub_id, HASH_FIND, NULL) != NULL;
}

/* Records (after commit) whether the subscription is cut to the end. */
static void
SetUpToDate(int32 sub_id, bool up_to_date)
{
	if (UpToDate == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(int32);
		ctl.entrysize = sizeof(int32);
		ctl.hcxt = TopMemoryContext;
		UpToDate = hash_create("eventbus subscriptions cut to the end", 64, &ctl,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	(void) hash_search(UpToDate, &sub_id, up_to_date ? HASH_ENTER : HASH_REMOVE, NULL);
}

/* Whether any of the topics is matched by the subscription. */
static bool
MatchesAny(EbSub *sub, const int32 *topics, int ntopics)
{
	for (int i = 0; i < ntopics; i++)
		if (EbSubMatchesTopic(sub, topics[i]))
			return true;
	return false;
}

/*
 * Cuts batches, in the tick's transaction, for every subscription that is
 * not paused and was polled lately (or has a handler): what their
 * consumers will claim. A subscription that was cut to the end at the
 * previous tick, and matches none of the topics of this tick's window,
 * was not named by a committed transaction (seek, alter) and is not
 * known to be behind, is left alone: still cut to the end, nothing
 * written. Returns whether any event was cut.
 */
static bool
CutActive(const int32 *topics, int ntopics, const int32 *kicks, int nkicks, bool kick_all)
{
	EbLog	   *log = NULL;
	bool		any = false;
	uint64		n;
	int32	   *ids;
	bool	   *handlers;

	if (SubsPlan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare("SELECT id, handler IS NOT NULL FROM eventbus.subscription "
									   "WHERE NOT paused ORDER BY id", 0, NULL);

		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not prepare the cut: %s", SPI_result_code_string(SPI_result));
		SubsPlan = plan;
	}
	if (SPI_execute_plan(SubsPlan, NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "eventbus: could not list the subscriptions");
	n = SPI_processed;
	ids = palloc(sizeof(int32) * Max(n, 1));
	handlers = palloc(sizeof(bool) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;

		ids[i] = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		handlers[i] = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
	}
	for (uint64 i = 0; i < n; i++)
	{
		int			want = 0;
		bool		caught_up;
		bool		kicked = kick_all;
		EbSub	   *sub;
		MemoryContext old;

		if (!EbNotifyRecentPoll(ids[i], EB_ACTIVE_MS, &want) && !handlers[i])
			continue;
		sub = EbSubById(ids[i]);
		if (sub == NULL || sub->paused)
			continue;
		for (int k = 0; k < nkicks && !kicked; k++)
			kicked = kicks[k] == ids[i];
		if (!kicked && WasUpToDate(ids[i]) && !MatchesAny(sub, topics, ntopics))
			caught_up = true;	/* nothing new for it */
		else
		{
			if (log == NULL)
				log = EbLogOpen();
			if (EbCut(sub, log, want > 0 ? want : EB_DEFAULT_BATCH, EB_CUT_ROWS, &caught_up) > 0)
				any = true;
		}
		/* Marked once the transaction commits (Tick). */
		old = MemoryContextSwitchTo(TopMemoryContext);
		if (caught_up)
			CaughtUp = lappend_int(CaughtUp, ids[i]);
		else
		{
			NotCaughtUp = lappend_int(NotCaughtUp, ids[i]);
			MoreToCut = true;
		}
		MemoryContextSwitchTo(old);
	}
	if (log != NULL)
		EbLogClose(log);
	return any;
}

/*
 * The topics of the events committed after snapshot prev and by snapshot
 * snap (window.c), rejected ones aside: what the tick notifies for.
 */
static int32 *
WindowTopics(const char *prev, const EbSnap *snap, int *ntopics)
{
	EbLog	   *log = EbLogOpen();
	EbSnap	   *lo = EbSnapFromDatum(DirectFunctionCall1(pg_snapshot_in, CStringGetDatum(prev)));
	EbWindowScan *ws = EbWindowBegin(log, lo, snap, NULL);
	TupleTableSlot *slot;
	EbPos		pos;
	int			max = 16;
	int32	   *topics = palloc(sizeof(int32) * max);
	int32		last = -1;
	HASHCTL		ctl;
	HTAB	   *seen;

	/* A set, not a list search: a window may hold 100,000s of topics. */
	ctl.keysize = sizeof(int32);
	ctl.entrysize = sizeof(int32);
	ctl.hcxt = CurrentMemoryContext;
	seen = hash_create("eventbus window topics", 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	*ntopics = 0;
	while ((slot = EbWindowNext(ws, &pos)) != NULL)
	{
		bool		isnull;
		bool		found;
		int32		t;

		(void) slot_getattr(slot, EB_LOG_REJECTED_BY, &isnull);
		if (!isnull)
			continue;
		t = DatumGetInt32(slot_getattr(slot, EB_LOG_TOPIC_ID, &isnull));
		if (t == last)
			continue;			/* the common case: a run of one topic */
		last = t;
		(void) hash_search(seen, &t, HASH_ENTER, &found);
		if (found)
			continue;
		if (*ntopics == max)
		{
			max *= 2;
			topics = repalloc(topics, sizeof(int32) * max);
		}
		topics[(*ntopics)++] = t;
	}
	hash_destroy(seen);
	EbWindowEnd(ws);
	EbLogClose(log);
	return topics;
}

/* The tick's query, prepared once per worker. */

/* The state a tick leaves for the next one. */
typedef struct EbTickState
{
	char	   *snapshot;		/* text of the previous tick's snapshot; NULL at first */
	TimestampTz at;				/* its time */
	TimestampTz next_due;		/* next retry or lease end; 0: none */
	MemoryContext cxt;			/* holds the above */
} EbTickState;

/*
 * One tick, in its own transaction: notifies the subscriptions with
 * something new (tick.c) and cuts batches for those being consumed.
 * Returns false when the extension is gone.
 */
static bool
Tick(EbTickState *ts)
{
	int32		kicks[EB_MAX_KICKS];
	int			nkicks;
	bool		kick_all = EbSlotTakeKicks(kicks, &nkicks);
	uint64		cut_seq;
	uint64		cut_epoch;
	TimestampTz now_ts = GetCurrentTimestamp();
	int32	   *topics = NULL;
	int			ntopics = 0;
	EbSnap	   *snap;
	bool		present;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, "eventbus tick");
	/* Before the snapshot: it then sees all that the requesters missed. */
	cut_seq = EbSlotCutRequested();
	cut_epoch = EbCutEpoch();
	present = ExtensionPresent();
	if (present && VersionMatches())
	{
		EbTickResult res;
		MemoryContext old;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		PushActiveSnapshot(GetTransactionSnapshot());
		snap = EbSnapCurrent();
		/* The topics of the new events: read once, here (window.c). */
		if (ts->snapshot != NULL)
			topics = WindowTopics(ts->snapshot, snap, &ntopics);
		EbTickNotify(ts->snapshot != NULL ? ts->at : 0, kicks, nkicks, kick_all,
					 topics, ntopics, &res);
		EbSlotCountTick(res.notified, res.tick_at);

		MemoryContextReset(ts->cxt);
		old = MemoryContextSwitchTo(ts->cxt);
		ts->snapshot = pstrdup(DatumGetCString(DirectFunctionCall1(pg_snapshot_out, EbSnapToDatum(snap))));
		MemoryContextSwitchTo(old);
		ts->at = res.tick_at;
		ts->next_due = res.next_due;

		/* Handler processes: every half second, or when named. */
		if (nkicks > 0 || kick_all || now_ts >= NextHandlerCheck)
		{
			EbProcsEnsure();
			NextHandlerCheck = TimestampTzPlusMilliseconds(now_ts, 500);
		}
		/* Batches for the consumers, committed with the notifications. */
		if (CutActive(topics, ntopics, kicks, nkicks, kick_all))
			EbWakeAtCommit();	/* waiting pollers look again */
		SPI_finish();
		PopActiveSnapshot();
	}
	CommitTransactionCommand();
	/* What was cut to the end is up to date as of the epoch read before. */
	{
		ListCell   *lc;

		foreach(lc, CaughtUp)
		{
			EbNotifySetCutEpoch(lfirst_int(lc), cut_epoch);
			SetUpToDate(lfirst_int(lc), true);
		}
		foreach(lc, NotCaughtUp)
			SetUpToDate(lfirst_int(lc), false);
		list_free(CaughtUp);
		list_free(NotCaughtUp);
		CaughtUp = NotCaughtUp = NIL;
	}
	if (MoreToCut)
	{
		MoreToCut = false;
		SetLatch(MyLatch);		/* tick again soon: a backlog is being cut */
	}
	/* Polls that asked for this cut may claim now. */
	if (present && cut_seq > LastCutServed)
	{
		EbSlotSetCutDone(cut_seq);
		LastCutServed = cut_seq;
		EbWakeAll();
	}
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return present;
}

/*
 * Runs an internal SQL function of maintenance in its own transaction and
 * returns its boolean result (false when the extension is gone).
 */
static bool
RunMaintenanceStep(const char *query, const char *activity)
{
	bool		result = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, activity);
	if (ExtensionPresent() && VersionMatches())
	{
		bool		isnull;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		PushActiveSnapshot(GetTransactionSnapshot());
		if (SPI_execute(query, false, 0) != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "%s failed", query);
		result = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) && !isnull;
		SPI_finish();
		PopActiveSnapshot();
	}
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return result;
}

/*
 * One round of maintenance (eventbus._maintain()), in its own transaction.
 * It takes one step of the topic dictionary's upkeep; the worker takes the
 * next ones, one per loop between its ticks (TopicsPending), so that
 * dropping 100,000s of topics never holds the ticks up.
 */
static void
Maintain(void)
{
	(void) RunMaintenanceStep("SELECT true FROM eventbus._maintain()", "eventbus maintenance");
	TopicsPending = true;
}

/*
 * The tables consuming updates and deletes rows of: batches (claimed,
 * finished), deliveries (retries, dead letters), cursors (each cut),
 * expiry counts (folded by maintenance). The worker vacuums them itself,
 * as pgqd does PgQ's, so that they stay a few pages large whatever
 * autovacuum is set to.
 */
static const char *const ConsumeTables[] = {"batch", "delivery", "cursor", "expiry"};

/*
 * Dead rows that make a consume table worth a VACUUM before maintenance:
 * this many plus a fifth of its live rows (a batch row holds up to
 * max_events ids: a hundred of them are a few hundred kB).
 */
#define EB_VACUUM_DEAD_ROWS		100

/* How often the worker looks at the dead rows of those tables. */
#define EB_VACUUM_CHECK_MS		1000

/*
 * VACUUMs the consume tables with enough dead rows (any, when "all"), as
 * the statistics count them. Never waits for a lock
 * (SKIP_LOCKED: autovacuum or a user may be at it). Outside any
 * transaction: VACUUM runs its own, as from a client.
 */
static void
VacuumConsumeTables(bool all)
{
	static MemoryContext VacuumCxt = NULL;
	List	   *rels = NIL;
	Oid			nsp;
	MemoryContext old;

	/*
	 * The statement and its relations outlive the transactions VACUUM
	 * commits (it keeps pointers to them, as to a client's statement in
	 * its portal): not in the transaction's memory.
	 */
	if (VacuumCxt == NULL)
		VacuumCxt = AllocSetContextCreate(TopMemoryContext, "eventbus vacuum", ALLOCSET_SMALL_SIZES);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	MemoryContextReset(VacuumCxt);	/* what an error left */
	old = MemoryContextSwitchTo(VacuumCxt);
	nsp = get_namespace_oid("eventbus", true);
	if (OidIsValid(nsp) && ExtensionPresent() && VersionMatches())
	{
		for (int i = 0; i < lengthof(ConsumeTables); i++)
		{
			Oid			relid = get_relname_relid(ConsumeTables[i], nsp);
			PgStat_StatTabEntry *t = OidIsValid(relid) ? pgstat_fetch_stat_tabentry(relid) : NULL;

			if (t != NULL && t->n_dead_tuples >= (all ? 1 : EB_VACUUM_DEAD_ROWS + t->n_live_tuples / 5))
				rels = lappend(rels, makeVacuumRelation(makeRangeVar("eventbus", (char *) ConsumeTables[i], -1),
														relid, NIL));
		}
	}
	if (rels != NIL)
	{
		VacuumStmt *stmt = makeNode(VacuumStmt);
		ParseState *pstate = make_parsestate(NULL);

		pgstat_report_activity(STATE_RUNNING, "eventbus vacuum");
		pstate->p_sourcetext = "VACUUM (SKIP_LOCKED) eventbus consume tables";
		stmt->options = list_make1(makeDefElem("skip_locked", NULL, -1));
		stmt->rels = rels;
		stmt->is_vacuumcmd = true;
		ExecVacuum(pstate, stmt, true);	/* commits, and starts a transaction (and its memory) again */
	}
	else
		MemoryContextSwitchTo(old);
	CommitTransactionCommand();
	MemoryContextReset(VacuumCxt);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* When maintenance is due after a round at "last" (0: never ran). */
static TimestampTz
NextMaintenance(TimestampTz last)
{
	return last == 0 ? 0 : TimestampTzPlusMilliseconds(last, eb_maintenance_interval * 1000L);
}

/* The worker of one database. */
void
eventbus_worker_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);
	ErrorContextCallback errcb;
	EbTickState ts = {0};
	volatile TimestampTz last_maintenance = 0;
	volatile TimestampTz last_vacuum_check = 0;
	volatile TimestampTz last_topic_step = 0;
	volatile TimestampTz last_tick = 0;
	volatile int64 last_tick_cost = 0;	/* us */
	volatile bool present;

	pqsignal(SIGTERM, HandleSigterm);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("eventbus worker");

	/*
	 * Whatever the database or the configuration says: names resolve in
	 * pg_catalog only (the worker is a superuser; nobody's objects may
	 * capture its queries), each statement sees what committed before it
	 * (maintenance and ticks rely on it), and the worker may write.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_read_only", "off", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * Its commits need not wait for the WAL flush: a tick's NOTIFY gives
	 * its transaction an xid (and its commit a flush to wait for) though
	 * nothing of it must survive a crash; maintenance is redone; and a
	 * handler's writes commit or are lost together with its ack, so a lost
	 * commit means the event is handed out again. Publishers' flushes are
	 * not shared with the worker's then.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);

	/* Claim the database's slot; leave if it was stopped or another worker has it. */
	if (!EbSlotClaim(dboid))
		proc_exit(0);
	before_shmem_exit(WorkerOnExit, (Datum) 0);

	/* Is the extension there? */
	StartTransactionCommand();
	present = ExtensionPresent();
	if (present)
		ereport(LOG, (errmsg("eventbus worker started for database \"%s\"",
							 get_database_name(MyDatabaseId))));
	CommitTransactionCommand();
	if (!present)
	{
		EbSlotSetState(EB_DB_ABSENT);
		proc_exit(0);
	}
	EbSlotSetState(EB_DB_RUNNING);

	errcb.callback = WorkerErrorContext;
	errcb.arg = NULL;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;


	ts.cxt = AllocSetContextCreate(TopMemoryContext, "eventbus tick", ALLOCSET_SMALL_SIZES);
	for (;;)
	{
		TimestampTz now;
		TimestampTz round_start;
		long		sleep_ms;
		MemoryContext loopcxt = CurrentMemoryContext;

		CHECK_FOR_INTERRUPTS();
		if (GotSigterm)
			break;
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		/*
		 * Under a stream of commits, tick at most every tick_min_interval,
		 * and leave at least EB_TICK_SPACING times the last tick's cost
		 * between two ticks (the worker ticks at most 1/EB_TICK_SPACING of
		 * the time, however long ticks get): the commits in between are
		 * taken by one tick.
		 */
		if (eb_tick_min_interval > 0 && last_tick != 0)
		{
			long		gap_ms = Max((long) eb_tick_min_interval,
									 (long) (EB_TICK_SPACING * last_tick_cost / 1000));
			TimestampTz until = TimestampTzPlusMilliseconds(last_tick, gap_ms);
			long		ms;

			/*
			 * Not on the latch: every commit sets it, and waking for each
			 * would cost the publishers CPU. Commits meanwhile are taken by
			 * the tick that follows. In slices, so that SIGTERM (which
			 * cannot end a wait without a latch) is seen within 100 ms.
			 */
			while (!GotSigterm &&
				   (ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until)) > 0)
			{
				(void) WaitLatch(NULL, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, Min(ms, 100),
								 PG_WAIT_EXTENSION);
				CHECK_FOR_INTERRUPTS();
			}
			if (GotSigterm)
				break;
		}
		last_tick = GetCurrentTimestamp();
		ResetLatch(MyLatch);

		/* An error ends the worker (the launcher restarts it); keep its text. */
		round_start = GetCurrentTimestamp();
		InWork = true;
		PG_TRY();
		{
			bool		ticked = Tick(&ts);

			last_tick_cost = GetCurrentTimestamp() - last_tick;
			if (!ticked)
				present = false;
			now = GetCurrentTimestamp();
			if (present && now >= NextMaintenance(last_maintenance))
			{
				Maintain();
				VacuumConsumeTables(true);
				last_maintenance = last_vacuum_check = now;
			}
			else if (present && now >= TimestampTzPlusMilliseconds(last_vacuum_check, EB_VACUUM_CHECK_MS))
			{
				VacuumConsumeTables(false);
				last_vacuum_check = now;
			}
			else if (present && TopicsPending &&
					 now >= TimestampTzPlusMilliseconds(last_topic_step, EB_TOPIC_STEP_MS))
			{
				TopicsPending = RunMaintenanceStep("SELECT more FROM eventbus._maintain_topics()",
												   "eventbus topic upkeep");
				last_topic_step = now;
			}
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(loopcxt);
			edata = CopyErrorData();
			/* Cancelled by SIGTERM: a stop, not an error. */
			if (GotSigterm)
				EbSlotSetSigterm();
			else
				EbSlotSetError(edata->message);
			PG_RE_THROW();
		}
		PG_END_TRY();
		InWork = false;
		EbSlotCountRound((double) (GetCurrentTimestamp() - round_start) / USECS_PER_SEC);
		if (!present)
		{
			error_context_stack = errcb.previous;
			ereport(LOG, (errmsg("eventbus worker stopping: the extension was dropped from database %u",
								 MyDatabaseId)));
			EbStatsForgetDatabase(MyDatabaseId);
			EbNotifyForgetDatabase(MyDatabaseId);
			EbSlotSetState(EB_DB_ABSENT);
			proc_exit(0);
		}
		now = GetCurrentTimestamp();

		sleep_ms = eb_tick_interval;
		if (TopicsPending)
			sleep_ms = Min(sleep_ms, EB_TOPIC_STEP_MS);
		if (ts.next_due != 0)
			sleep_ms = Min(sleep_ms, TimestampDifferenceMilliseconds(now, ts.next_due) + 1);
		sleep_ms = Min(sleep_ms, TimestampDifferenceMilliseconds(now, NextMaintenance(last_maintenance)) + 1);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(sleep_ms, 1), PG_WAIT_EXTENSION);
	}

	/* SIGTERM: stopped on purpose, or killed (the launcher restarts it). */
	EbSlotSetSigterm();
	proc_exit(0);
}

/* Defines the worker's settings. */
void
EbWorkerInit(void)
{
	DefineCustomIntVariable("eventbus.tick_interval",
							"Longest time the background worker sleeps between two ticks when nothing wakes it.",
							"Publishing commits wake it at once; this bounds how late it notices anything else. Valid range: 10 ms to 60 s.",
							&eb_tick_interval,
							1000,
							10,
							60 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("eventbus.tick_min_interval",
							"Shortest time between two ticks of the background worker.",
							"Commits within it are taken by one tick: fewer ticks under load, a little more notification latency. Valid range: 0 to 1000 ms.",
							&eb_tick_min_interval,
							2,
							0,
							1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("eventbus.maintenance_interval",
							"Time between two rounds of maintenance (chunk rotation and reclaim) by the background worker.",
							"Valid range: 1 s to 1 day.",
							&eb_maintenance_interval,
							60,
							1,
							24 * 3600,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
}
