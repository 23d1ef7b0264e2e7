/*-------------------------------------------------------------------------
 *
 * publish.c
 *	  eventbus.publish and eventbus.publish_batch: the hot path.
 *
 * Publishing checks its arguments, maps the topic to its dictionary id
 * (cached per backend), and appends one row per event to the current chunk
 * of the log through the table AM. Nothing else: no NOTIFY, no write per
 * subscription, no lock beyond the row insert's RowExclusiveLock. The event
 * exists if and only if the publishing transaction commits, because it is
 * an ordinary row written by that transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "context.h"
#include "stats.h"

#include "access/detoast.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"

/* eventbus.max_payload_size, in bytes */
static int	eb_max_payload_size = 1024 * 1024;
static int	eb_max_delay = 30 * SECS_PER_DAY;

/* Longest ordering key, in bytes. */
#define EB_KEY_MAX_BYTES	1024

/* The arguments every published event shares or has its own copy of. */
typedef struct PublishArgs
{
	text	   *topic;
	Datum		payload;
	bool		payload_null;
	text	   *key;
	Datum		headers;
	bool		headers_null;
	bool		deliver_at_null;
	TimestampTz deliver_at;
	bool		ttl_null;
	Interval   *ttl;
} PublishArgs;

/* Raises 22004 for a NULL argument that must not be NULL. */
static void
RejectNull(const char *what, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
			 errmsg("%s must not be NULL", what),
			 errhint("%s", hint)));
}

/* Checks that headers are a JSON object whose values are all strings. */
static void
CheckHeaders(Datum headers)
{
	Jsonb	   *jb = DatumGetJsonbP(headers);
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *lastkey = NULL;

	if (!JB_ROOT_IS_OBJECT(jb) || JB_ROOT_IS_SCALAR(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event headers must be a JSON object of strings"),
				 errdetail("The headers given are a JSON %s.",
						   JB_ROOT_IS_ARRAY(jb) && !JB_ROOT_IS_SCALAR(jb) ? "array" : "scalar"),
				 errhint("Pass e.g. '{\"traceparent\": \"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\"}'.")));

	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			lastkey = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE && v.type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("event headers must be a JSON object of strings"),
					 errdetail("Header \"%s\" is not a string.", lastkey ? lastkey : ""),
					 errhint("Convert the value to a JSON string, e.g. with to_jsonb(value::text).")));
	}
}

/* Returns a datum's size in bytes once detoasted, without detoasting it. */
static Size
DatumBytes(Datum d)
{
	return toast_raw_datum_size(d) - VARHDRSZ;
}

/* Returns an interval as text, for messages. */
static char *
IntervalText(Interval *iv)
{
	return DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(iv)));
}

/*
 * Checks one event's arguments and fills "ev" for the log. Raises on any
 * invalid argument, so nothing is written for an event that fails.
 */
static void
PrepareEvent(PublishArgs *a, EbEvent *ev)
{
	const char *topic;
	int			topic_len;
	Size		payload_bytes;
	Size		headers_bytes = 0;
	Size		key_bytes = 0;

	if (a->topic == NULL)
		RejectNull("topic", "Pass a topic such as 'orders.eu.created'.");
	if (a->payload_null)
		RejectNull("payload", "Pass a JSON value, e.g. '{}' or 'null'::jsonb for an empty payload.");

	/* The event being handled, if any, gives its ids and trace (context.c). */
	if (unlikely(EbContextActive))
		EbContextApply(&a->headers, &a->headers_null);

	topic = VARDATA_ANY(a->topic);
	topic_len = VARSIZE_ANY_EXHDR(a->topic);
	EbCheckTopic(topic, topic_len);
	EbCheckPublishAcl(topic, topic_len);

	if (a->key)
	{
		key_bytes = VARSIZE_ANY_EXHDR(a->key);
		if (key_bytes > EB_KEY_MAX_BYTES)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("event key is too long: %zu bytes", key_bytes),
					 errdetail("The limit is %d bytes.", EB_KEY_MAX_BYTES),
					 errhint("Use a short identifier as the key, e.g. the order id.")));
	}
	/* Sizes first: they need no detoasting, the headers walk does. */
	if (!a->headers_null)
		headers_bytes = DatumBytes(a->headers);
	payload_bytes = DatumBytes(a->payload);
	if (payload_bytes + headers_bytes + key_bytes > (Size) eb_max_payload_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("event for topic \"%.*s\" is too large: %zu bytes",
						topic_len, topic, payload_bytes + headers_bytes + key_bytes),
				 errdetail("Payload %zu bytes, headers %zu bytes, key %zu bytes; eventbus.max_payload_size is %d bytes.",
						   payload_bytes, headers_bytes, key_bytes, eb_max_payload_size),
				 errhint("Store large data elsewhere and publish a reference to it, or raise eventbus.max_payload_size.")));
	if (!a->headers_null)
		CheckHeaders(a->headers);

	ev->bytes = payload_bytes + headers_bytes + key_bytes;
	ev->payload = a->payload;
	ev->key = a->key;
	ev->headers = a->headers;
	ev->headers_null = a->headers_null;
	ev->deliver_at_null = a->deliver_at_null;
	ev->deliver_at = a->deliver_at;
	ev->expires_at_null = true;
	ev->expires_at = 0;

	if (!a->deliver_at_null && TIMESTAMP_NOT_FINITE(a->deliver_at))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("deliver_at must be a finite time"),
				 errhint("Pass NULL to deliver at once, or a time such as now() + interval '5 minutes'.")));
	if (!a->deliver_at_null &&
		a->deliver_at - GetCurrentTransactionStartTimestamp() > (int64) eb_max_delay * USECS_PER_SEC)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("deliver_at is more than eventbus.max_delay (%s) ahead",
						GetConfigOptionByName("eventbus.max_delay", NULL, false)),
				 errdetail("A delayed event keeps its chunk of the log from being reclaimed until it is delivered."),
				 errhint("Publish it closer to its time (e.g. with eventbus.schedule), or have a superuser raise eventbus.max_delay.")));
	if (!a->ttl_null)
	{
		Interval   *ttl = a->ttl;
		TimestampTz now = GetCurrentTransactionStartTimestamp();

		Interval	zero = {0};
		Interval	most = {0, 0, 100 * 12};	/* 100 years */

		if (DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(ttl),
											  IntervalPGetDatum(&zero))) <= 0 ||
			DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(ttl),
											  IntervalPGetDatum(&most))) > 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("ttl must be a positive interval of at most 100 years: \"%s\"",
							IntervalText(ttl)),
					 errhint("Pass e.g. interval '1 hour', or NULL for events that never expire.")));
		ev->expires_at = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
																 TimestampTzGetDatum(now),
																 IntervalPGetDatum(ttl)));
		ev->expires_at_null = false;
		if (!a->deliver_at_null && ev->expires_at <= a->deliver_at)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("event would expire before it can be delivered"),
					 errdetail("The ttl is \"%s\" but the delay is \"%s\".",
							   IntervalText(ttl),
							   IntervalText(DatumGetIntervalP(DirectFunctionCall2(timestamp_mi,
																			  TimestampTzGetDatum(a->deliver_at),
																			  TimestampTzGetDatum(now))))),
					 errhint("Make ttl longer than the delay, or publish later.")));
	}

	ev->rejected_by = NULL;
	ev->schema_error = NULL;
	EbCheckSchema(topic, topic_len, a->payload, ev);
	ev->topic = topic;
	ev->topic_len = topic_len;
	if (ev->rejected_by == NULL)	/* a dead letter is not backlog */
		EbCheckBacklog(topic, topic_len);
}

/* Checks and appends one event in the current transaction; returns its id. */
static int64
PublishOne(PublishArgs *a)
{
	EbEvent		ev;
	EbLogWriter *writer;
	int64		id;

	EbCheckOrigin();
	PrepareEvent(a, &ev);
	writer = EbLogWriterOpen();
	ev.topic_id = EbTopicId(ev.topic, ev.topic_len, EbLogWriterGeneration(writer));
	id = EbLogWrite(writer, &ev);
	EbLogWriterClose(writer);
	EbStatsCountPublish(ev.topic_id, ev.bytes);
	if (ev.rejected_by)
		EbSchemaDeadLetter(id, VARDATA_ANY(a->topic), VARSIZE_ANY_EXHDR(a->topic), &ev);
	EbCutAtCommit();
	return id;
}

PG_FUNCTION_INFO_V1(eventbus_publish);

/*
 * SQL eventbus.publish(topic, payload, key, headers, deliver_at, ttl):
 * appends one event in the current transaction and returns its id.
 */
Datum
eventbus_publish(PG_FUNCTION_ARGS)
{
	PublishArgs a;

	a.topic = PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0);
	a.payload_null = PG_ARGISNULL(1);
	a.payload = a.payload_null ? (Datum) 0 : PG_GETARG_DATUM(1);
	a.key = PG_ARGISNULL(2) ? NULL : PG_GETARG_TEXT_PP(2);
	a.headers_null = PG_ARGISNULL(3);
	a.headers = a.headers_null ? (Datum) 0 : PG_GETARG_DATUM(3);
	a.deliver_at_null = PG_ARGISNULL(4);
	a.deliver_at = a.deliver_at_null ? 0 : PG_GETARG_TIMESTAMPTZ(4);
	a.ttl_null = PG_ARGISNULL(5);
	a.ttl = a.ttl_null ? NULL : PG_GETARG_INTERVAL_P(5);
	PG_RETURN_INT64(PublishOne(&a));
}

/*
 * Publishes one event as eventbus.publish(topic, payload, key, headers)
 * does, with the same checks (publish_cloudevent, cloudevent.c).
 */
int64
EbPublishEvent(text *topic, Datum payload, text *key, Datum headers, bool headers_null)
{
	PublishArgs a = {0};

	a.topic = topic;
	a.payload = payload;
	a.payload_null = false;
	a.key = key;
	a.headers = headers;
	a.headers_null = headers_null;
	a.deliver_at_null = true;
	a.ttl_null = true;
	return PublishOne(&a);
}

/* Deconstructed one-dimensional array argument of publish_batch. */
typedef struct BatchArray
{
	const char *name;
	const char *one;			/* what one element is, for hints */
	Datum	   *values;
	bool	   *nulls;
	int			n;
} BatchArray;

/* Deconstructs a one-dimensional array argument, or leaves it empty if NULL. */
static void
GetBatchArray(FunctionCallInfo fcinfo, int argno, const char *name,
			  const char *one, Oid elemtype, BatchArray *out)
{
	ArrayType  *arr;
	int16		typlen;
	bool		typbyval;
	char		typalign;

	out->name = name;
	out->one = one;
	out->n = 0;
	out->values = NULL;
	out->nulls = NULL;
	if (PG_ARGISNULL(argno))
		return;
	arr = PG_GETARG_ARRAYTYPE_P(argno);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s must be a one-dimensional array", name),
				 errdetail("It has %d dimensions.", ARR_NDIM(arr)),
				 errhint("Pass e.g. array_agg(...) over your rows.")));
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(arr, elemtype, typlen, typbyval, typalign,
					  &out->values, &out->nulls, &out->n);
}

/* Checks that an array has one element or "n" (the number of payloads). */
static void
CheckBatchLength(const BatchArray *a, int n, bool one_allowed)
{
	if (a->values == NULL || a->n == n || (one_allowed && a->n == 1))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
			 errmsg("%s has %d elements but payloads has %d", a->name, a->n, n),
			 errhint(one_allowed ? "Pass one %s for all events, or one per payload." :
					 "Pass one %s per payload (NULL elements are allowed).",
					 a->one)));
}

/* Returns element i of an array that has one element or one per event. */
static inline bool
BatchElement(const BatchArray *a, int i, Datum *value)
{
	int			j = (a->n == 1) ? 0 : i;

	if (a->values == NULL || a->nulls[j])
		return false;
	*value = a->values[j];
	return true;
}

PG_FUNCTION_INFO_V1(eventbus_publish_batch);

/*
 * SQL eventbus.publish_batch(topics, payloads, keys, headers, deliver_at,
 * ttl): appends one event per payload and returns their ids in order.
 * "topics" and "headers" have one element per payload, or one for all.
 * All events are checked before any is written.
 */
Datum
eventbus_publish_batch(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	BatchArray	topics,
				payloads,
				keys,
				headers;
	EbEvent    *events;
	EbLogWriter *writer;
	int			n;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);

	if (PG_ARGISNULL(0))
		RejectNull("topics", "Pass an array of topics, e.g. array['orders.eu.created'].");
	if (PG_ARGISNULL(1))
		RejectNull("payloads", "Pass an array of JSON values, e.g. array_agg(payload).");
	GetBatchArray(fcinfo, 0, "topics", "topic", TEXTOID, &topics);
	GetBatchArray(fcinfo, 1, "payloads", "payload", JSONBOID, &payloads);
	GetBatchArray(fcinfo, 2, "keys", "key", TEXTOID, &keys);
	GetBatchArray(fcinfo, 3, "headers", "headers object", JSONBOID, &headers);
	n = payloads.n;
	if (n > 0 && topics.n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("topics is empty but payloads has %d elements", n),
				 errhint("Pass one topic for all events, or one per payload.")));
	CheckBatchLength(&topics, n, true);
	CheckBatchLength(&keys, n, false);
	CheckBatchLength(&headers, n, true);

	if (n > 0)
		EbCheckOrigin();
	events = palloc(sizeof(EbEvent) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		PublishArgs a;
		Datum		d;

		a.topic = BatchElement(&topics, i, &d) ? DatumGetTextPP(d) : NULL;
		a.payload_null = !BatchElement(&payloads, i, &a.payload);
		a.key = BatchElement(&keys, i, &d) ? DatumGetTextPP(d) : NULL;
		a.headers_null = !BatchElement(&headers, i, &a.headers);
		a.deliver_at_null = PG_ARGISNULL(4);
		a.deliver_at = a.deliver_at_null ? 0 : PG_GETARG_TIMESTAMPTZ(4);
		a.ttl_null = PG_ARGISNULL(5);
		a.ttl = a.ttl_null ? NULL : PG_GETARG_INTERVAL_P(5);
		PrepareEvent(&a, &events[i]);
	}

	if (n > 0)
	{
		int64	   *ids = palloc(sizeof(int64) * n);

		writer = EbLogWriterOpen();
		for (int i = 0; i < n; i++)
		{
			Datum		value;
			bool		isnull = false;

			events[i].topic_id = EbTopicId(events[i].topic, events[i].topic_len,
										   EbLogWriterGeneration(writer));
			ids[i] = EbLogWrite(writer, &events[i]);
			EbStatsCountPublish(events[i].topic_id, events[i].bytes);
			value = Int64GetDatum(ids[i]);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
		}
		EbLogWriterClose(writer);
		for (int i = 0; i < n; i++)
			if (events[i].rejected_by)
			{
				Datum		t = (Datum) 0;

				(void) BatchElement(&topics, i, &t);
				EbSchemaDeadLetter(ids[i], VARDATA_ANY(DatumGetTextPP(t)),
								   VARSIZE_ANY_EXHDR(DatumGetTextPP(t)), &events[i]);
			}
		EbCutAtCommit();
	}
	return (Datum) 0;
}

/* Defines publish's setting. */
void
EbPublishInit(void)
{
	DefineCustomIntVariable("eventbus.max_payload_size",
							"Largest event accepted by publish (payload, headers and key together).",
							"Valid range: 1kB to 1GB. Publishing a larger event fails with SQLSTATE 54000.",
							&eb_max_payload_size,
							1024 * 1024,
							1024,
							MaxAllocSize,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomIntVariable("eventbus.max_delay",
							"Longest delay (deliver_at after now) publish accepts.",
							"A delayed event keeps its chunk of the log from being reclaimed until it is handed out. "
							"Valid range: 1 minute to 10 years.",
							&eb_max_delay,
							30 * SECS_PER_DAY,
							SECS_PER_MINUTE,
							10 * 365 * SECS_PER_DAY,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);
}
