/*-------------------------------------------------------------------------
 *
 * context.c
 *	  Context propagation: the backend's current context is the event E
 *	  being handled. While it is set, every event published gets E's
 *	  causation and correlation ids and a child of E's W3C trace context
 *	  as headers, unless the publisher set them itself. Handler processes
 *	  set it around each handler call (handler.c); a poll consumer sets it
 *	  with eventbus.set_context(event_id) for the rest of its transaction.
 *	  Also the lookup of one stored event by id, with the visibility rule
 *	  of eventbus.events, which set_context and to_cloudevent share.
 *
 * The context lives in TopTransactionContext and is cleared by a
 * transaction callback at commit, abort and prepare, so it never leaks
 * into the next transaction. Publish checks one global bool
 * (EbContextActive) and does nothing else when no context is set.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "context.h"

#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/skey.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/pg_bswap.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

/* Attribute numbers of eventbus.event_log (sql/00_log.sql). */
#define LOG_ATT_ID				1
#define LOG_ATT_PUBLISHED_AT	3
#define LOG_ATT_TOPIC_ID		4
#define LOG_ATT_KEY				5
#define LOG_ATT_PAYLOAD			6
#define LOG_ATT_HEADERS			7
#define LOG_ATT_EXPIRES_AT		9

/* Attribute numbers of the type eventbus.event (handler.c builds it). */
#define EVENT_ATT_ID			1
#define EVENT_ATT_HEADERS		5

bool		EbContextActive = false;

/* The current context: what the events published meanwhile inherit. */
static char *CtxCausation;		/* E's id, as text */
static char *CtxCorrelation;	/* E's correlation_id, else its id */
static char CtxTraceId[33];		/* E's trace id; "" without a valid traceparent */
static char CtxTraceFlags[3];
static char *CtxTraceState;		/* E's tracestate, or NULL */

/* Returns a string header's value (palloc'd), or NULL when it has none. */
const char *
EbJsonbGetString(Datum headers, bool headers_null, const char *name)
{
	Jsonb	   *jb;
	JsonbValue *v;

	if (headers_null)
		return NULL;
	jb = DatumGetJsonbP(headers);
	if (!JB_ROOT_IS_OBJECT(jb))
		return NULL;
	v = getKeyJsonValueFromContainer(&jb->root, name, strlen(name), NULL);
	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* Whether s is n lowercase hex digits, not all zeros when nonzero is set. */
static bool
IsLowerHex(const char *s, int n, bool nonzero)
{
	bool		zero = true;

	for (int i = 0; i < n; i++)
	{
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
		if (s[i] != '0')
			zero = false;
	}
	return !(nonzero && zero);
}

/*
 * Takes the trace id and flags of a W3C traceparent (version 00: 32 hex
 * trace id, 16 hex parent id, neither all zeros, 2 hex flags). Returns
 * false, leaving nothing, for anything else.
 */
static bool
ParseTraceparent(const char *tp, char *trace_id, char *flags)
{
	if (tp == NULL || strlen(tp) != 55 ||
		tp[0] != '0' || tp[1] != '0' || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' ||
		!IsLowerHex(tp + 3, 32, true) || !IsLowerHex(tp + 36, 16, true) ||
		!IsLowerHex(tp + 53, 2, false))
		return false;
	memcpy(trace_id, tp + 3, 32);
	trace_id[32] = '\0';
	memcpy(flags, tp + 53, 2);
	flags[2] = '\0';
	return true;
}

/*
 * Sets the current context to event "event_id" with these headers, for
 * the rest of the transaction or until EbContextLeave. No check: the
 * caller is the handler process, or set_context after its checks.
 */
void
EbContextEnter(int64 event_id, Datum headers, bool headers_null)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	const char *correlation = EbJsonbGetString(headers, headers_null, "correlation_id");
	const char *tracestate = EbJsonbGetString(headers, headers_null, "tracestate");

	EbContextLeave();
	CtxCausation = psprintf(INT64_FORMAT, event_id);
	CtxCorrelation = correlation ? pstrdup(correlation) : CtxCausation;
	if (!ParseTraceparent(EbJsonbGetString(headers, headers_null, "traceparent"),
						  CtxTraceId, CtxTraceFlags))
		CtxTraceId[0] = '\0';
	CtxTraceState = tracestate ? pstrdup(tracestate) : NULL;
	MemoryContextSwitchTo(old);
	EbContextActive = true;
}

/* Sets the context to a value of type eventbus.event (a handler's argument). */
void
EbContextEnterEvent(Datum event)
{
	HeapTupleHeader tup = DatumGetHeapTupleHeader(event);
	bool		id_null;
	bool		headers_null;
	Datum		id = GetAttributeByNum(tup, EVENT_ATT_ID, &id_null);
	Datum		headers = GetAttributeByNum(tup, EVENT_ATT_HEADERS, &headers_null);

	if (!id_null)
		EbContextEnter(DatumGetInt64(id), headers, headers_null);
}

/* Clears the current context. Allocates nothing: safe in a commit callback. */
void
EbContextLeave(void)
{
	EbContextActive = false;
	CtxCausation = NULL;
	CtxCorrelation = NULL;
	CtxTraceId[0] = '\0';
	CtxTraceState = NULL;
}

/* Clears the context when the transaction ends (its memory goes with it). */
static void
ContextXactCallback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			EbContextLeave();
			break;
		default:
			break;
	}
}

/* Adds one string pair to an object being built. */
static void
PushPair(JsonbParseState **state, const char *name, const char *value)
{
	JsonbValue	k;
	JsonbValue	v;

	k.type = jbvString;
	k.val.string.val = (char *) name;
	k.val.string.len = strlen(name);
	v.type = jbvString;
	v.val.string.val = (char *) value;
	v.val.string.len = strlen(value);
	(void) pushJsonbValue(state, WJB_KEY, &k);
	(void) pushJsonbValue(state, WJB_VALUE, &v);
}

/*
 * Adds the context's headers to one event's: causation_id, correlation_id,
 * a traceparent with E's trace id and a new span id, E's tracestate. The
 * publisher's own headers win (the right side of jsonb ||). Headers that
 * are not an object are left as they are, for publish to refuse.
 */
void
EbContextApply(Datum *headers, bool *headers_null)
{
	JsonbParseState *state = NULL;
	JsonbValue *res;
	Datum		ours;

	Assert(EbContextActive);
	if (!*headers_null)
	{
		Jsonb	   *jb = DatumGetJsonbP(*headers);

		if (!JB_ROOT_IS_OBJECT(jb) || JB_ROOT_IS_SCALAR(jb))
			return;
	}
	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	PushPair(&state, "causation_id", CtxCausation);
	PushPair(&state, "correlation_id", CtxCorrelation);
	if (CtxTraceId[0] != '\0')
	{
		uint64		span = 0;
		char		tp[56];

		while (span == 0)		/* an all-zero span id is invalid */
			if (!pg_strong_random(&span, sizeof(span)))
				elog(ERROR, "could not generate a random span id");
		snprintf(tp, sizeof(tp), "00-%s-%016llx-%s", CtxTraceId,
				 (unsigned long long) span, CtxTraceFlags);
		PushPair(&state, "traceparent", tp);
	}
	if (CtxTraceState != NULL)
		PushPair(&state, "tracestate", CtxTraceState);
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	ours = JsonbPGetDatum(JsonbValueToJsonb(res));
	if (*headers_null)
		*headers = ours;
	else
		*headers = DirectFunctionCall2(jsonb_concat, ours, *headers);
	*headers_null = false;
}

/* Raises 42501 unless the current user may read the events view at all. */
static void
CheckEventsPrivilege(int64 event_id)
{
	if (pg_class_aclcheck(EbRelid("events"), GetUserId(), ACL_SELECT) == ACLCHECK_OK)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied for event " INT64_FORMAT, event_id),
			 errdetail("Role %s may not read eventbus.events.", GetUserNameFromId(GetUserId(), false)),
			 errhint("Grant it SELECT ON eventbus.events (docs/security.md).")));
}

/*
 * Finds a stored event by id in the chunks of the log, as the active
 * snapshot sees them, with the visibility rule of eventbus.events: SELECT
 * on the view, and a subscribe pattern matching the topic when topic ACLs
 * restrict subscribing. Raises 42501, 42704 (none) or 55000 (expired).
 * There is no index on id alone (publish would pay for it): this reads
 * the chunks with a scan key.
 */
void
EbFetchVisibleEvent(int64 event_id, EbStoredEvent *ev)
{
	bool		found = false;
	bool		expired = false;

	CheckEventsPrivilege(event_id);
	for (int c = 0; c < EB_NUM_CHUNKS && !found; c++)
	{
		char		name[NAMEDATALEN];
		Relation	rel;
		TableScanDesc scan;
		TupleTableSlot *slot;
		ScanKeyData key;

		snprintf(name, sizeof(name), "event_log_%d", c);
		rel = EbTableOpen(EbRelid(name), AccessShareLock);
		ScanKeyInit(&key, LOG_ATT_ID, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(event_id));
		scan = table_beginscan(rel, GetActiveSnapshot(), 1, &key);
		slot = table_slot_create(rel, NULL);
		while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
		{
			bool		isnull;
			Datum		d;

			slot_getallattrs(slot);
			if (slot->tts_isnull[LOG_ATT_ID - 1] ||
				DatumGetInt64(slot->tts_values[LOG_ATT_ID - 1]) != event_id)
				continue;
			found = true;
			ev->id = event_id;
			ev->published_at = DatumGetTimestampTz(slot_getattr(slot, LOG_ATT_PUBLISHED_AT, &isnull));
			ev->topic = EbTopicName(DatumGetInt32(slot_getattr(slot, LOG_ATT_TOPIC_ID, &isnull)));
			if (ev->topic == NULL)
				elog(ERROR, "event " INT64_FORMAT " has a topic id that is not in eventbus.topic", event_id);
			ev->topic = pstrdup(ev->topic);
			d = slot_getattr(slot, LOG_ATT_KEY, &isnull);
			ev->key = isnull ? NULL : DatumGetTextPCopy(d);
			ev->payload = PointerGetDatum(DatumGetJsonbPCopy(slot_getattr(slot, LOG_ATT_PAYLOAD, &isnull)));
			d = slot_getattr(slot, LOG_ATT_HEADERS, &ev->headers_null);
			ev->headers = ev->headers_null ? (Datum) 0 : PointerGetDatum(DatumGetJsonbPCopy(d));
			d = slot_getattr(slot, LOG_ATT_EXPIRES_AT, &isnull);
			expired = !isnull && DatumGetTimestampTz(d) <= GetCurrentTransactionStartTimestamp();
			break;
		}
		ExecDropSingleTupleTableSlot(slot);
		table_endscan(scan);
		table_close(rel, AccessShareLock);
	}
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("event " INT64_FORMAT " does not exist", event_id),
				 errdetail("No stored event this transaction can see has that id: it was never published, its transaction has not committed, or its chunk of the log was reclaimed."),
				 errhint("Pass the id of a stored event, e.g. the event_id a poll returned, or one listed in eventbus.events.")));
	if (!EbMayReadTopic(ev->topic, strlen(ev->topic)))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for event " INT64_FORMAT, event_id),
				 errdetail("Role %s may not read topic \"%s\": no subscribe pattern of the role matches it.",
						   GetUserNameFromId(GetUserId(), false), ev->topic),
				 errhint("A superuser grants more with eventbus.grant_subscribe(role, pattern).")));
	if (expired)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("event " INT64_FORMAT " has expired", event_id),
				 errdetail("Its ttl has passed: it is no longer handed out to consumers."),
				 errhint("Pass the id of an event that has not expired.")));
}

PG_FUNCTION_INFO_V1(eventbus_set_context);

/*
 * SQL eventbus.set_context(event_id): makes the event the current context
 * for the rest of the transaction; NULL clears it.
 */
Datum
eventbus_set_context(PG_FUNCTION_ARGS)
{
	EbStoredEvent ev;

	if (PG_ARGISNULL(0))
	{
		EbContextLeave();
		PG_RETURN_VOID();
	}
	EbFetchVisibleEvent(PG_GETARG_INT64(0), &ev);
	EbContextEnter(ev.id, ev.headers, ev.headers_null);
	PG_RETURN_VOID();
}

/* Registers the transaction callback; called once from _PG_init. */
void
EbContextInit(void)
{
	RegisterXactCallback(ContextXactCallback, NULL);
}
