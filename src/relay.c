/*-------------------------------------------------------------------------
 *
 * relay.c
 *	  Relay processes: each sends its relay's events to the sink (Kafka,
 *	  kafka.c) and records them only once the sink acknowledged them.
 *
 * A relay is a subscription with a sink (sql/65_relays.sql). The
 * database's worker runs one relay process per relay that is not paused
 * (subproc.c), and restarts it, waiting longer each time, when it stops on
 * an error: a broker that is down or slow never holds up the worker's
 * ticks, notifications, handlers or maintenance, nor another relay, and
 * never publishing, which only appends to the log.
 *
 * A relay process loops over rounds:
 *
 *	 1. In a transaction, it reads its relay's settings, the server's and
 *		the owner's user mapping's options (a change since the last round
 *		makes it open a new producer), and polls a batch (up to
 *		eventbus.relay_batch events, waiting up to a second): the batch is
 *		leased to it; each event becomes a message with its CloudEvents
 *		attributes as headers (binary content mode). It commits.
 *	 2. It hands the messages to the producer in commit order and serves
 *		the delivery reports until each message has one, extending the
 *		lease meanwhile. A message that failed for now (a timeout, a
 *		producer that must be made again) is sent again after the relay's
 *		backoff, and with it every later message of the batch with the
 *		same key, so that a key's last copy in Kafka comes in commit order.
 *	 3. In a transaction, it acks the events the broker acknowledged, and
 *		makes a dead letter of each event the broker refused for good (too
 *		large, not authorized, no such topic), with the broker's error.
 *
 * So an event is recorded only after the broker acknowledged it. A crash
 * between 2 and 3 sends the batch again (at least once; consumers dedupe
 * by ce_id); nothing is lost. SIGTERM ends the round in progress (waiting
 * up to EB_RELAY_STOP_MS for reports) and the process.
 *
 * Each relay process reports what it does in shared memory (its state,
 * what it produced, its last error), which eventbus.relays shows, also
 * after the process ended on an error.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "cloudevent.h"
#include "consume.h"
#include "relay.h"
#include "sink.h"
#include "subproc.h"

#include <limits.h>
#include <signal.h>

#include "access/xact.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "foreign/foreign.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

/* eventbus.relay_batch */
static int	eb_relay_batch = 1000;

/* After SIGTERM, how long a round still waits for the reports of what it sent. */
#define EB_RELAY_STOP_MS	5000
/* Reports a round waits for longer than this make its state "waiting". */
#define EB_RELAY_SLOW_MS	1000

/* ---- the relay process ---- */

void		eventbus_relay_main(Datum arg);

static volatile sig_atomic_t StopRequested = false;

/*
 * What a round allocates outside its transactions (a commit leaves
 * TopMemoryContext current) goes here, reset before each round.
 */
static MemoryContext RoundCxt = NULL;

/* The relay's name, once read. */
static char RelayName[NAMEDATALEN * 2];

static void
RelaySigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	StopRequested = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

/* A relay's settings, as of the start of a round. */
typedef struct Relay
{
	char	   *name;
	const EbSinkOps *ops;		/* its sink */
	char	   *topic;			/* Kafka topic or URL path, or a template of one */
	char	   *source;			/* ce_source; NULL: the default */
	int64		backoff_initial;	/* microseconds */
	int64		backoff_max;
	Interval	lease;
	EbSinkProp	props[EB_MAX_SINK_PROPS];
	int			nprops;
	uint64		fingerprint;	/* of the properties */
} Relay;

/* One round's batch. */
typedef struct Batch
{
	int			n;
	EbMsg	   *msgs;
	int64		token;			/* the poll's lease token */
} Batch;

static void
RunSql(const char *sql, int nargs, Oid *types, Datum *values)
{
	int			ret = SPI_execute_with_args(sql, nargs, types, values, NULL, false, 0);

	if (ret < 0)
		elog(ERROR, "eventbus relay query failed: %s", SPI_result_code_string(ret));
}

/* Appends the options of a server or user mapping to the relay's properties. */
static void
AddProps(Relay *r, List *options)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = lfirst(lc);

		if (r->nprops >= EB_MAX_SINK_PROPS)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("relay \"%s\" has more than %d properties", r->name, EB_MAX_SINK_PROPS)));
		r->props[r->nprops].name = def->defname;
		r->props[r->nprops].value = defGetString(def);
		r->nprops++;
	}
}

/*
 * Reads the relay's settings (in cxt), in the round's transaction. False
 * when it is no longer wanted: dropped, paused, the extension gone.
 */
static bool
LoadRelay(int32 sub_id, Relay *r, MemoryContext cxt)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1];
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Oid			owner;
	char	   *server;
	ForeignServer *srv;
	Datum		d;
	MemoryContext old;

	values[0] = Int32GetDatum(sub_id);
	RunSql("SELECT s.name, s.owner::pg_catalog.oid, s.sink_server, s.sink_topic, s.sink_options, "
		   "       (extract(epoch FROM s.backoff_initial) * 1000000)::pg_catalog.int8, "
		   "       (extract(epoch FROM s.backoff_max) * 1000000)::pg_catalog.int8, s.lease, s.sink "
		   "  FROM eventbus.subscription s "
		   " WHERE s.id OPERATOR(pg_catalog.=) $1 AND NOT s.paused AND s.sink IS NOT NULL",
		   1, types, values);
	if (SPI_processed != 1)
		return false;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	old = MemoryContextSwitchTo(cxt);
	memset(r, 0, sizeof(Relay));
	r->name = SPI_getvalue(tup, desc, 1);
	owner = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
	server = SPI_getvalue(tup, desc, 3);
	r->topic = SPI_getvalue(tup, desc, 4);
	d = SPI_getbinval(tup, desc, 5, &isnull);
	r->backoff_initial = DatumGetInt64(SPI_getbinval(tup, desc, 6, &isnull));
	r->backoff_max = DatumGetInt64(SPI_getbinval(tup, desc, 7, &isnull));
	r->lease = *DatumGetIntervalP(SPI_getbinval(tup, desc, 8, &isnull));
	r->ops = strcmp(SPI_getvalue(tup, desc, 9), "http") == 0 ? &EbHttpSink : &EbKafkaSink;

	srv = GetForeignServerByName(server, true);
	if (srv == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("server \"%s\" of relay \"%s\" does not exist", server, r->name),
				 errhint("Create it again, or point the relay to another with eventbus.alter_relay(name, server => ...).")));
	if (strcmp(GetForeignDataWrapper(srv->fdwid)->fdwname, psprintf("eventbus_%s", r->ops->name)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("server \"%s\" of relay \"%s\" is not a server of eventbus_%s", server, r->name, r->ops->name)));
	AddProps(r, srv->options);
	AddProps(r, GetUserMapping(owner, srv->serverid)->options);
	if (!isnull)
	{
		Jsonb	   *options = DatumGetJsonbP(d);
		JsonbValue *src;

		r->nprops = EbSinkJsonProps(options, r->props, r->nprops, EB_MAX_SINK_PROPS, true);
		src = getKeyJsonValueFromContainer(&options->root, "source", 6, NULL);
		if (src != NULL && src->type == jbvString)
			r->source = pnstrdup(src->val.string.val, src->val.string.len);
	}
	for (int i = 0; i < r->nprops; i++)
	{
		r->fingerprint = hash_combine64(r->fingerprint, hash_bytes_extended((const unsigned char *) r->props[i].name,
																			strlen(r->props[i].name), 0));
		r->fingerprint = hash_combine64(r->fingerprint, hash_bytes_extended((const unsigned char *) r->props[i].value,
																			strlen(r->props[i].value), 1));
	}
	MemoryContextSwitchTo(old);
	return true;
}

/*
 * At the start of a relay process, in its first round: what its
 * predecessor (crashed, stopped) left leased is due at once, so that it
 * goes before newer events of the same keys, and that lease does not count
 * as an attempt: a broker outage across a restart or a pause makes no dead
 * letters. Only the relay process consumes its relay, and the worker
 * starts one after the last stopped.
 */
static void
ReclaimLeases(int32 sub_id)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1];

	values[0] = Int32GetDatum(sub_id);
	RunSql("UPDATE eventbus.batch SET lease_until = pg_catalog.now(), "
		   "       attempt = GREATEST(attempt OPERATOR(pg_catalog.-) 1, 0) "
		   " WHERE sub_id OPERATOR(pg_catalog.=) $1 AND leased",
		   1, types, values);
	RunSql("UPDATE eventbus.delivery SET available_at = pg_catalog.now(), "
		   "       attempt = GREATEST(attempt OPERATOR(pg_catalog.-) 1, 0) "
		   " WHERE sub_id OPERATOR(pg_catalog.=) $1 AND state OPERATOR(pg_catalog.=) 'leased'",
		   1, types, values);
	CommandCounterIncrement();
}

/*
 * An event's headers (a JSON object of strings) appended to a message's,
 * but for those named like the sink's CloudEvents attributes (ce_ for
 * Kafka, ce- for HTTP): the attributes are there already.
 */
static void
AddEventHeaders(EbMsg *m, Jsonb *headers, int max, const char *ce_prefix)
{
	int			room = JsonContainerSize(&headers->root);
	EbSinkProp *h = palloc(sizeof(EbSinkProp) * Max(room, 1));
	int			n = EbSinkJsonProps(headers, h, 0, room, false);

	for (int i = 0; i < n && m->nheaders < max; i++)
	{
		/* ce_* headers (a CloudEvent published as one) are the attributes already. */
		if (strncmp(h[i].name, "ce_", 3) == 0 || pg_strncasecmp(h[i].name, ce_prefix, strlen(ce_prefix)) == 0)
			continue;
		m->hnames[m->nheaders] = h[i].name;
		m->hvalues[m->nheaders] = h[i].value;
		m->nheaders++;
	}
}

/*
 * Polls a batch of the relay (in the round's transaction) and makes each
 * event a message (in cxt): its Kafka topic, key, payload, and headers
 * (CloudEvents attributes, then the event's own).
 */
static void
PollBatch(Relay *r, EbSink *sink, Batch *b, MemoryContext cxt)
{
	bool		structured = r->ops->structured(sink);

	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		values[2];
	MemoryContext old;

	values[0] = CStringGetTextDatum(r->name);
	values[1] = Int32GetDatum(eb_relay_batch);
	RunSql("SELECT e.event_id, e.topic, e.key, e.payload::pg_catalog.text, e.headers, e.published_at, e.lease_token, "
		   "       e.payload "
		   "  FROM eventbus.poll($1, $2, wait => '1 second') e",
		   2, types, values);
	old = MemoryContextSwitchTo(cxt);
	b->n = (int) SPI_processed;
	b->msgs = palloc0(sizeof(EbMsg) * Max(b->n, 1));
	for (int i = 0; i < b->n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		EbMsg	   *m = &b->msgs[i];
		bool		isnull;
		bool		hnull;
		char	   *topic = SPI_getvalue(tup, desc, 2);
		Datum		headers = SPI_getbinval(tup, desc, 5, &hnull);
		TimestampTz published_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 6, &isnull));
		EbCeAttr	attrs[EB_CE_MAX_ATTRS];
		int			nattrs;
		int			max;
		char		why[EB_MSG_ERROR_LEN];

		m->event_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		m->key = SPI_getvalue(tup, desc, 3);
		m->payload = SPI_getvalue(tup, desc, 4);
		m->payload_len = strlen(m->payload);
		b->token = DatumGetInt64(SPI_getbinval(tup, desc, 7, &isnull));
		m->topic = topic;
		m->dest = r->ops->dest(sink, r->topic, topic, why, sizeof(why));
		if (m->dest == NULL)
		{
			m->status = EB_MSG_DEAD;
			snprintf(m->error, EB_MSG_ERROR_LEN, "relay topic \"%s\" gives no valid %s destination for \"%s\": %s",
					 r->topic, r->ops->name, topic, why);
			continue;
		}
		nattrs = EbCloudEventAttrs(m->event_id, topic, m->key, headers, hnull, published_at, r->source, attrs);
		if (structured)
			m->ce_json = JsonbToCString(NULL, &EbCloudEventStructured(attrs, nattrs, SPI_getbinval(tup, desc, 8, &isnull),
																	  headers, hnull)->root, 0);
		max = nattrs + (hnull ? 0 : (int) JsonContainerSize(&DatumGetJsonbP(headers)->root));
		m->hnames = palloc(sizeof(char *) * Max(max, 1));
		m->hvalues = palloc(sizeof(char *) * Max(max, 1));
		for (int a = 0; a < nattrs; a++)
		{
			/* The bindings: datacontenttype is content-type, the others ce_<name> (Kafka), ce-<name> (HTTP). */
			if (strcmp(attrs[a].name, "id") == 0)
				m->ce_id = attrs[a].value;
			m->hnames[m->nheaders] = strcmp(attrs[a].name, "datacontenttype") == 0 ? "content-type" :
				psprintf("%s%s", r->ops->ce_prefix, attrs[a].name);
			m->hvalues[m->nheaders] = attrs[a].value;
			m->nheaders++;
		}
		if (!hnull)
			AddEventHeaders(m, DatumGetJsonbP(headers), max, r->ops->ce_prefix);
	}
	MemoryContextSwitchTo(old);
}

/* Makes the lease of the batch's events end a lease from now, for those still unrecorded. */
static void
ExtendLease(Relay *r, Batch *b)
{
	Oid			types[4] = {TEXTOID, INT8ARRAYOID, INTERVALOID, INT8OID};
	Datum		values[4];
	Datum	   *ids;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	ids = palloc(sizeof(Datum) * b->n);		/* in the transaction: a long wait extends often */
	for (int i = 0; i < b->n; i++)
		ids[i] = Int64GetDatum(b->msgs[i].event_id);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	values[0] = CStringGetTextDatum(r->name);
	values[1] = PointerGetDatum(construct_array(ids, b->n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[2] = IntervalPGetDatum(&r->lease);
	values[3] = Int64GetDatum(b->token);
	RunSql("SELECT eventbus.extend_lease($1, $2, $3, $4)", 4, types, values);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(RoundCxt);
}

/*
 * Waits until every message sent has its report (or, after SIGTERM, up to
 * EB_RELAY_STOP_MS), extending the lease every third of it. Returns false
 * when the producer broke (a fatal error): what has no report is to be
 * sent again with a new one.
 */
static bool
AwaitReports(EbSink *k, Relay *r, Batch *b)
{
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz extend_at = start + (r->lease.time + r->lease.day * USECS_PER_DAY) / 3;
	TimestampTz stop_at = 0;
	char		error[EB_MSG_ERROR_LEN];
	bool		slow = false;

	while (r->ops->serve(k, 100) > 0)
	{
		TimestampTz now = GetCurrentTimestamp();

		if (r->ops->broken(k, error, sizeof(error)))
		{
			EbRelayStatusSet("retrying", error);
			return false;
		}
		if (!slow && now - start > EB_RELAY_SLOW_MS * 1000)
		{
			EbRelayStatusSet("waiting", error);
			slow = true;
		}
		else if (slow)
			EbRelayStatusSet(NULL, error);
		if (StopRequested && stop_at == 0)
			stop_at = now + EB_RELAY_STOP_MS * 1000;
		if (stop_at != 0 && now >= stop_at)
			return true;
		if (now >= extend_at)
		{
			ExtendLease(r, b);
			extend_at = now + (r->lease.time + r->lease.day * USECS_PER_DAY) / 3;
		}
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
	return true;
}

/*
 * After a failure for now: marks for sending again every later message of
 * the batch with a key that failed, so its last copy comes in commit
 * order. Returns how many are to be sent again (those that failed and
 * those that follow them).
 */
static int
MarkRetries(Batch *b)
{
	int			n = 0;

	for (int i = 0; i < b->n; i++)
	{
		EbMsg	   *m = &b->msgs[i];

		if (m->status != EB_MSG_RETRY)
			continue;
		n++;
		for (int j = i + 1; m->key != NULL && j < b->n; j++)
			if (b->msgs[j].status == EB_MSG_DONE && b->msgs[j].key != NULL &&
				strcmp(b->msgs[j].key, m->key) == 0)
				b->msgs[j].status = EB_MSG_RETRY;
	}
	if (n == 0)
		return 0;
	n = 0;
	for (int i = 0; i < b->n; i++)
		if (b->msgs[i].status == EB_MSG_RETRY)
		{
			b->msgs[i].status = EB_MSG_PENDING;
			n++;
		}
	return n;
}

/* Sleeps the relay's backoff before the attempt-th sending again (unless SIGTERM comes). */
static void
Backoff(Relay *r, Batch *b, int attempt)
{
	int64		delay = r->backoff_initial;
	TimestampTz until;

	for (int i = 1; i < attempt && delay < r->backoff_max; i++)
		delay *= 2;
	delay = Min(delay, r->backoff_max);
	/* A sink that said when to come back (HTTP Retry-After) is not asked sooner. */
	for (int i = 0; i < b->n; i++)
		if (b->msgs[i].status == EB_MSG_PENDING)
			delay = Max(delay, (int64) b->msgs[i].retry_after_ms * 1000);
	until = GetCurrentTimestamp() + delay;
	while (!StopRequested)
	{
		TimestampTz now = GetCurrentTimestamp();
		long		ms = (until - now) / 1000;

		if (ms <= 0)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(ms, 5000), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		ExtendLease(r, b);
	}
}

/*
 * Records the round in a transaction: acks what the broker acknowledged,
 * makes dead letters of what it refused for good. Messages without a
 * report (SIGTERM came first) stay leased: their lease brings them back.
 */
static int
Record(Relay *r, Batch *b)
{
	Datum	   *ids;
	int			nok = 0;
	Datum		name;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	/* In the transaction's memory: outside, palloc is TopMemoryContext's, for good. */
	ids = palloc(sizeof(Datum) * Max(b->n, 1));
	name = CStringGetTextDatum(r->name);
	pgstat_report_activity(STATE_RUNNING, "eventbus relay: record");
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	for (int i = 0; i < b->n; i++)
		if (b->msgs[i].status == EB_MSG_DONE)
			ids[nok++] = Int64GetDatum(b->msgs[i].event_id);
	if (nok > 0)
	{
		Oid			types[3] = {TEXTOID, INT8ARRAYOID, INT8OID};
		Datum		values[3];

		values[0] = name;
		values[1] = PointerGetDatum(construct_array(ids, nok, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		values[2] = Int64GetDatum(b->token);
		RunSql("SELECT eventbus.ack($1, $2, $3)", 3, types, values);
	}
	for (int i = 0; i < b->n; i++)
	{
		Oid			types[4] = {TEXTOID, INT8OID, TEXTOID, INT8OID};
		Datum		values[4];

		if (b->msgs[i].status != EB_MSG_DEAD)
			continue;
		values[0] = name;
		values[1] = Int64GetDatum(b->msgs[i].event_id);
		values[2] = CStringGetTextDatum(b->msgs[i].error);
		values[3] = Int64GetDatum(b->token);
		RunSql("SELECT eventbus.nack($1, $2, $3, lease_token => $4, dead => true)", 4, types, values);
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(RoundCxt);
	return nok;
}

/*
 * Between two tries of a batch: reads the relay's settings again, and when
 * its server, user mapping or options changed (the fix of what made the
 * sink fail, say), opens a new client and makes the messages' destinations
 * again. False when the relay is no longer wanted (dropped, paused).
 */
static bool
Reconfigure(int32 sub_id, Relay **r, EbSink **k, const EbSinkOps **kops, uint64 *fingerprint,
			Batch *b, MemoryContext cxt)
{
	/* Kept only when something changed: a long outage retries often. */
	MemoryContext load = AllocSetContextCreate(cxt, "eventbus relay settings", ALLOCSET_SMALL_SIZES);
	Relay	   *nr = MemoryContextAllocZero(load, sizeof(Relay));
	bool		wanted;
	bool		changed;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	wanted = LoadRelay(sub_id, nr, load);
	changed = wanted && (nr->fingerprint != *fingerprint || nr->ops != *kops ||
						 strcmp(nr->topic, (*r)->topic) != 0);
	if (changed)
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);
		bool		structured = (*kops)->structured(*k);

		(*kops)->close(*k, 0);
		*k = NULL;
		*k = nr->ops->open(nr->name, nr->props, nr->nprops);
		*kops = nr->ops;
		*fingerprint = nr->fingerprint;
		/*
		 * The messages were made for the other content mode (binary or
		 * structured): the process ends, and the next one takes back the
		 * batch first and makes it again.
		 */
		if (nr->ops->structured(*k) != structured)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("relay \"%s\" changed its content mode while sending a batch again", nr->name),
					 errdetail("Its relay process starts again and sends the batch in the new mode.")));
		for (int i = 0; i < b->n; i++)
		{
			EbMsg	   *m = &b->msgs[i];
			char		why[EB_MSG_ERROR_LEN];

			if (m->status != EB_MSG_PENDING)
				continue;
			m->dest = nr->ops->dest(*k, nr->topic, m->topic, why, sizeof(why));
			if (m->dest == NULL)
			{
				m->status = EB_MSG_DEAD;
				snprintf(m->error, EB_MSG_ERROR_LEN, "relay topic \"%s\" gives no valid %s destination for \"%s\": %s",
						 nr->topic, nr->ops->name, m->topic, why);
			}
		}
		MemoryContextSwitchTo(old);
		*r = nr;
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(RoundCxt);
	if (!changed)
		MemoryContextDelete(load);
	return wanted;
}

/*
 * One round (see the file header). Returns false when the relay is no
 * longer wanted. *k is the producer, opened or opened again as needed.
 */
static bool
Round(int32 sub_id, EbSink **k, const EbSinkOps **kops, uint64 *fingerprint, MemoryContext cxt)
{
	Relay	   *r = MemoryContextAllocZero(cxt, sizeof(Relay));
	Batch		b = {0};
	int			attempt = 0;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, "eventbus relay: poll");
	if (!OidIsValid(get_extension_oid("eventbus", true)))
	{
		CommitTransactionCommand();
		MemoryContextSwitchTo(RoundCxt);
		return false;
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	if (!LoadRelay(sub_id, r, cxt))
	{
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		MemoryContextSwitchTo(RoundCxt);
		return false;
	}
	if (RelayName[0] == '\0')
		ReclaimLeases(sub_id);
	strlcpy(RelayName, r->name, sizeof(RelayName));
	if (*k != NULL && (*fingerprint != r->fingerprint || *kops != r->ops))
	{
		(*kops)->close(*k, 0);
		*k = NULL;
	}
	if (*k == NULL)
	{
		*k = r->ops->open(r->name, r->props, r->nprops);
		*kops = r->ops;
		*fingerprint = r->fingerprint;
		EbRelayStatusSet("running", NULL);
	}
	PollBatch(r, *k, &b, cxt);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(RoundCxt);
	pgstat_report_activity(STATE_IDLE, NULL);
	if (b.n == 0)
	{
		(void) r->ops->serve(*k, 0);
		return true;
	}

	for (;;)
	{
		char		error[EB_MSG_ERROR_LEN];
		int			again;

		pgstat_report_activity(STATE_RUNNING, "eventbus relay: produce");
		r->ops->send(*k, b.msgs, b.n);
		/*
		 * A broken producer (also one that broke with its last reports, or
		 * before the batch was handed to it): a new one sends what has no
		 * report yet, or failed for now.
		 */
		if (!AwaitReports(*k, r, &b) || r->ops->broken(*k, NULL, 0))
		{
			for (int i = 0; i < b.n; i++)
				if (b.msgs[i].status == EB_MSG_PENDING)
					b.msgs[i].status = EB_MSG_RETRY;
			r->ops->close(*k, 0);
			*k = r->ops->open(r->name, r->props, r->nprops);
		}
		/*
		 * Also after SIGTERM, when what has no report yet counts as failed:
		 * a later message of a failed key must not be acked before it.
		 */
		if (StopRequested)
			for (int i = 0; i < b.n; i++)
				if (b.msgs[i].status == EB_MSG_PENDING)
					b.msgs[i].status = EB_MSG_RETRY;
		again = MarkRetries(&b);
		if (StopRequested || again == 0)
			break;
		attempt++;
		error[0] = '\0';
		for (int i = 0; i < b.n && error[0] == '\0'; i++)
			if (b.msgs[i].status == EB_MSG_PENDING && b.msgs[i].error[0] != '\0')
				strlcpy(error, b.msgs[i].error, sizeof(error));
		EbRelayStatusSet("retrying", error);
		/* Each may reach the sink twice: counted in eventbus.relays.resent. */
		EbRelayStatusCount(0, again);
		ereport(LOG,
				(errmsg_plural("eventbus relay \"%s\" sends %d message again (attempt %d)",
							   "eventbus relay \"%s\" sends %d messages again (attempt %d)",
							   again, r->name, again, attempt + 1),
				 error[0] != '\0' ? errdetail_internal("%s", error) : 0));
		Backoff(r, &b, attempt);
		if (StopRequested)
			break;
		if (!Reconfigure(sub_id, &r, k, kops, fingerprint, &b, cxt))
			break;
	}
	if (StopRequested)
	{
		/* What has no report stays leased; nothing may touch it any more. */
		r->ops->close(*k, 0);
		*k = NULL;
	}
	EbRelayStatusCount(Record(r, &b), 0);
	for (int i = 0; i < b.n; i++)
		if (b.msgs[i].status == EB_MSG_DEAD && b.msgs[i].dest != NULL)
		{
			EbRelayStatusSet(NULL, b.msgs[i].error);
			/*
			 * librdkafka keeps a topic's error (authorization, unknown
			 * topic) until its next metadata refresh: a redrive after the
			 * cause was mended would fail at once. The next round makes
			 * a new producer.
			 */
			if (*k != NULL && r->ops->keeps_refusals)
			{
				r->ops->close(*k, 0);
				*k = NULL;
			}
		}
	EbRelayStatusSet("running", NULL);
	pgstat_report_activity(STATE_IDLE, NULL);
	return true;
}

/* A relay process: sends its relay's events until no longer wanted or SIGTERM. */
void
eventbus_relay_main(Datum arg)
{
	EbProcArgs a;
	MemoryContext cxt;
	EbSink	   *volatile k = NULL;
	static const EbSinkOps *kops = NULL;
	static uint64 fingerprint = 0;
	static bool named = false;

	memcpy(&a, MyBgworkerEntry->bgw_extra, sizeof(a));
	EbProcTakeSlot(a.slot);
	pqsignal(SIGTERM, RelaySigterm);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(a.dboid, InvalidOid, 0);
	pgstat_report_appname("eventbus relay");
	eb_relay_process = true;
	EbRelayStatusClaim(a.sub_id);

	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_read_only", "off", PGC_SUSET, PGC_S_OVERRIDE);
	/*
	 * Its transactions (a poll's lease, an ack) need not wait for their
	 * WAL flush: one lost in a crash only makes the relay send a batch
	 * again, which at-least-once allows; the next round waits less.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);

	cxt = AllocSetContextCreate(TopMemoryContext, "eventbus relay round", ALLOCSET_DEFAULT_SIZES);
	RoundCxt = cxt;
	PG_TRY();
	{
		while (!StopRequested)
		{
			EbSink	   *producer = k;
			bool		wanted;

			CHECK_FOR_INTERRUPTS();
			if (ConfigReloadPending)
			{
				ConfigReloadPending = false;
				ProcessConfigFile(PGC_SIGHUP);
			}
			MemoryContextSwitchTo(TopMemoryContext);
			MemoryContextReset(cxt);
			MemoryContextSwitchTo(cxt);
			wanted = Round(a.sub_id, &producer, &kops, &fingerprint, cxt);
			k = producer;
			if (!wanted)
				break;
			if (!named && RelayName[0] != '\0')
			{
				/* Named after its relay in pg_stat_activity. */
				pgstat_report_appname(psprintf("eventbus relay %s", RelayName));
				named = true;
			}
		}
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* The error shows in eventbus.relays; the worker starts the process again. */
		HOLD_INTERRUPTS();
		MemoryContextSwitchTo(TopMemoryContext);
		edata = CopyErrorData();
		EbRelayStatusSet("failed", edata->message);
		RESUME_INTERRUPTS();
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (k != NULL)
		kops->close(k, EB_RELAY_STOP_MS);
	proc_exit(0);
}

/* Defines the settings of relays; with preloading, their status in shared memory (relaystatus.c). */
void
EbRelayInit(void)
{
	EbRelayStatusInit();
	DefineCustomIntVariable("eventbus.relay_batch",
							"Most events a relay process takes in one poll and sends before it records them.",
							"Valid range: 1 to 10000.",
							&eb_relay_batch,
							1000,
							1,
							10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
}
