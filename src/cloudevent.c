/*-------------------------------------------------------------------------
 *
 * cloudevent.c
 *	  CloudEvents 1.0 interop: eventbus.to_cloudevent (a stored event as a
 *	  structured-mode JSON object), eventbus.publish_cloudevent (a
 *	  structured CloudEvent published with its attributes kept as headers),
 *	  eventbus.instance_id, and EbCloudEventAttrs, the C API the Kafka relay
 *	  uses for binary mode. Both modes come from EbCloudEventAttrs, so they
 *	  cannot disagree. docs/cloudevents.md has the mapping.
 *
 * The instance id (the uuid of eventbus.instance, made by CREATE
 * EXTENSION) makes ids unique across clusters; it is read once per
 * backend and read again when the table is a new one (the extension was
 * dropped and created again).
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "cloudevent.h"
#include "context.h"

#include "access/table.h"
#include "access/tableam.h"
#include "commands/dbcommands.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/uuid.h"

/* The longest extension attribute name kept (CloudEvents: SHOULD NOT exceed 20). */
#define CE_NAME_MAX		20

/* Context attributes, and the names no extension attribute may take. */
static const char *const ReservedNames[] = {
	"specversion", "id", "source", "type", "time", "datacontenttype",
	"dataschema", "subject", "data", "data_base64", "partitionkey", NULL
};

/* Headers that hold context attributes, and the attribute of each. */
static const char *const CeHeaders[][2] = {
	{"ce_id", "id"}, {"ce_source", "source"}, {"ce_time", "time"},
	{"ce_subject", "subject"}, {"ce_dataschema", "dataschema"}, {NULL, NULL}
};

static Oid	InstanceRelid = InvalidOid;
static char InstanceText[UUID_LEN * 2 + 5];
static char *DefaultSource = NULL;

/* Returns the instance id as text, read from eventbus.instance once per table. */
static const char *
InstanceIdText(void)
{
	Oid			relid = EbRelid("instance");
	Relation	rel;
	TableScanDesc scan;
	TupleTableSlot *slot;
	Snapshot	snap;
	bool		isnull = true;
	Datum		d = (Datum) 0;

	if (relid == InstanceRelid)
		return InstanceText;
	rel = EbTableOpen(relid, AccessShareLock);
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(rel, snap, 0, NULL);
	slot = table_slot_create(rel, NULL);
	if (table_scan_getnextslot(scan, ForwardScanDirection, slot))
		d = slot_getattr(slot, 1, &isnull);
	if (!isnull)
		strlcpy(InstanceText, DatumGetCString(DirectFunctionCall1(uuid_out, d)), sizeof(InstanceText));
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, AccessShareLock);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s.instance\" of extension eventbus is empty", EB_SCHEMA),
				 errhint("Reinstall the extension: DROP EXTENSION eventbus; CREATE EXTENSION eventbus.")));
	InstanceRelid = relid;
	return InstanceText;
}

/* Returns "/eventbus/<database name>", cached per backend. */
const char *
EbCloudEventDefaultSource(void)
{
	if (DefaultSource == NULL)
	{
		char	   *db = get_database_name(MyDatabaseId);

		DefaultSource = MemoryContextStrdup(TopMemoryContext,
											psprintf("/eventbus/%s", db ? db : ""));
	}
	return DefaultSource;
}

/* Formats a time as RFC 3339 in UTC with microseconds: 2026-12-03T19:10:00.123456Z. */
static char *
FormatTime(TimestampTz t)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (TIMESTAMP_NOT_FINITE(t) || timestamp2tm(t, NULL, &tm, &fsec, NULL, NULL) != 0)
		elog(ERROR, "event time out of range");
	return psprintf("%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year, tm.tm_mon, tm.tm_mday,
					tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec);
}

/*
 * Fills the context attributes of an event (cloudevent.h): the binary
 * mode of the relay, and the start of to_cloudevent's object.
 */
int
EbCloudEventAttrs(int64 event_id, const char *topic, const char *key, Datum headers,
				  bool headers_null, TimestampTz published_at, const char *source,
				  EbCeAttr *attrs)
{
	int			n = 0;
	const char *h;

	attrs[n].name = "specversion";
	attrs[n++].value = pstrdup("1.0");
	attrs[n].name = "id";
	h = EbJsonbGetString(headers, headers_null, "ce_id");
	attrs[n++].value = h ? (char *) h : psprintf("%s:" INT64_FORMAT, InstanceIdText(), event_id);
	attrs[n].name = "source";
	h = source ? pstrdup(source) : EbJsonbGetString(headers, headers_null, "ce_source");
	attrs[n++].value = h ? (char *) h : pstrdup(EbCloudEventDefaultSource());
	attrs[n].name = "type";
	attrs[n++].value = pstrdup(topic);
	attrs[n].name = "time";
	h = EbJsonbGetString(headers, headers_null, "ce_time");
	attrs[n++].value = h ? (char *) h : FormatTime(published_at);
	attrs[n].name = "datacontenttype";
	attrs[n++].value = pstrdup("application/json");
	if (key != NULL)
	{
		attrs[n].name = "partitionkey";
		attrs[n++].value = pstrdup(key);
	}
	if ((h = EbJsonbGetString(headers, headers_null, "ce_subject")) != NULL)
	{
		attrs[n].name = "subject";
		attrs[n++].value = (char *) h;
	}
	if ((h = EbJsonbGetString(headers, headers_null, "ce_dataschema")) != NULL)
	{
		attrs[n].name = "dataschema";
		attrs[n++].value = (char *) h;
	}
	Assert(n <= EB_CE_MAX_ATTRS);
	return n;
}

/* Returns the index of a name in a NULL-terminated list, or -1. */
static int
NameIndex(const char *const *names, const char *name)
{
	for (int i = 0; names[i] != NULL; i++)
		if (strcmp(names[i], name) == 0)
			return i;
	return -1;
}

/* Returns the header holding a context attribute's value, or NULL for an extension's. */
static const char *
CeHeaderOf(const char *header)
{
	for (int i = 0; CeHeaders[i][0] != NULL; i++)
		if (strcmp(CeHeaders[i][0], header) == 0)
			return CeHeaders[i][1];
	return NULL;
}

/* Adds one key to an object being built. */
static void
PushKey(JsonbParseState **state, const char *name)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) name;
	k.val.string.len = strlen(name);
	(void) pushJsonbValue(state, WJB_KEY, &k);
}

/* Adds one string pair to an object being built. */
static void
PushString(JsonbParseState **state, const char *name, const char *value, int len)
{
	JsonbValue	v;

	PushKey(state, name);
	v.type = jbvString;
	v.val.string.val = (char *) value;
	v.val.string.len = len;
	(void) pushJsonbValue(state, WJB_VALUE, &v);
}

/* Lowercases a header name and drops every character outside [a-z0-9]. */
static char *
NormalizeName(const char *s, int len)
{
	char	   *out = palloc(len + 1);
	int			n = 0;

	for (int i = 0; i < len; i++)
	{
		char		c = s[i];

		if (c >= 'A' && c <= 'Z')
			c += 'a' - 'A';
		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
			out[n++] = c;
	}
	out[n] = '\0';
	return out;
}

/*
 * An event as a structured-mode CloudEvent: its context attributes, its
 * payload as data, and every header that is not a context attribute as an
 * extension attribute under its normalized name, unless that name is
 * empty, too long, or taken. to_cloudevent and the HTTP sink's structured
 * and batch modes use it.
 */
Jsonb *
EbCloudEventStructured(EbCeAttr *attrs, int n, Datum payload_datum, Datum headers, bool headers_null)
{
	JsonbParseState *state = NULL;
	List	   *taken = NIL;
	JsonbValue	data;
	Jsonb	   *payload;
	EbStoredEvent ev;

	ev.headers = headers;
	ev.headers_null = headers_null;
	ev.payload = payload_datum;
	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < n; i++)
		PushString(&state, attrs[i].name, attrs[i].value, strlen(attrs[i].value));
	PushKey(&state, "data");
	payload = DatumGetJsonbP(ev.payload);
	data.type = jbvBinary;
	data.val.binary.data = &payload->root;
	data.val.binary.len = VARSIZE(payload) - VARHDRSZ;
	(void) pushJsonbValue(&state, WJB_VALUE, &data);

	if (!ev.headers_null)
	{
		Jsonb	   *jb = DatumGetJsonbP(ev.headers);
		JsonbIterator *it = JsonbIteratorInit(&jb->root);
		JsonbValue	v;
		JsonbIteratorToken tok;
		char	   *name = NULL;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
			{
				char	   *header = pnstrdup(v.val.string.val, v.val.string.len);

				name = NULL;
				if (CeHeaderOf(header) != NULL)
					continue;
				name = NormalizeName(v.val.string.val, v.val.string.len);
				if (name[0] == '\0' || strlen(name) > CE_NAME_MAX ||
					NameIndex(ReservedNames, name) >= 0 ||
					list_member(taken, makeString(name)))
					name = NULL;
			}
			else if (tok == WJB_VALUE && name != NULL && v.type == jbvString)
			{
				PushString(&state, name, v.val.string.val, v.val.string.len);
				taken = lappend(taken, makeString(name));
			}
		}
	}
	return JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
}

PG_FUNCTION_INFO_V1(eventbus_to_cloudevent);

/*
 * SQL eventbus.to_cloudevent(event_id, source): the stored event as a
 * CloudEvents 1.0 JSON object (structured mode). Every header that is not
 * a context attribute becomes an extension attribute under its normalized
 * name, unless that name is empty, too long, or taken.
 */
Datum
eventbus_to_cloudevent(PG_FUNCTION_ARGS)
{
	EbStoredEvent ev;
	EbCeAttr	attrs[EB_CE_MAX_ATTRS];
	int			n;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event_id must not be NULL"),
				 errhint("Pass the id of a stored event, e.g. eventbus.to_cloudevent(42).")));
	if (!PG_ARGISNULL(1) && VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(1)) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("source must not be empty"),
				 errdetail("A CloudEvent's source is a non-empty URI-reference."),
				 errhint("Pass e.g. '/shop/orders' or 'urn:shop', or NULL for the default.")));
	EbFetchVisibleEvent(PG_GETARG_INT64(0), &ev);
	n = EbCloudEventAttrs(ev.id, ev.topic, ev.key ? text_to_cstring(ev.key) : NULL,
						  ev.headers, ev.headers_null, ev.published_at,
						  PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)), attrs);

	PG_RETURN_JSONB_P(EbCloudEventStructured(attrs, n, ev.payload, ev.headers, ev.headers_null));
}

PG_FUNCTION_INFO_V1(eventbus_instance_id);

/* SQL eventbus.instance_id(): the uuid CREATE EXTENSION gave this database. */
Datum
eventbus_instance_id(PG_FUNCTION_ARGS)
{
	return DirectFunctionCall1(uuid_in, CStringGetDatum(InstanceIdText()));
}

/* ---- publish_cloudevent ---- */

/* Raises 22023 for a CloudEvent attribute that is not valid. */
static void
pg_attribute_noreturn()
RefuseAttribute(const char *name, const char *why, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid CloudEvent attribute \"%s\": %s", name, why),
			 errhint("%s", hint)));
}

/*
 * Returns a string attribute's value, or NULL when it is absent or JSON
 * null (unset). Refuses any other type, and the empty string when
 * "nonempty".
 */
static char *
StringAttr(Jsonb *ce, const char *name, bool required, bool nonempty, const char *hint)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&ce->root, name, strlen(name), NULL);

	if (v == NULL || v->type == jbvNull)
	{
		if (required)
			RefuseAttribute(name, "it is required", hint);
		return NULL;
	}
	if (v->type != jbvString)
		RefuseAttribute(name, "it must be a string", hint);
	if (nonempty && v->val.string.len == 0)
		RefuseAttribute(name, "it must not be empty", hint);
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* Whether s[0..n) are digits. */
static bool
Digits(const char *s, int n)
{
	for (int i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* Whether s is an RFC 3339 date-time, e.g. 2026-12-03T19:10:00.5+01:00. */
static bool
IsRfc3339(const char *s)
{
	int			len = strlen(s);
	int			i = 19;

	if (len < 20 || !Digits(s, 4) || s[4] != '-' || !Digits(s + 5, 2) || s[7] != '-' ||
		!Digits(s + 8, 2) || (s[10] != 'T' && s[10] != 't') || !Digits(s + 11, 2) ||
		s[13] != ':' || !Digits(s + 14, 2) || s[16] != ':' || !Digits(s + 17, 2))
		return false;
	if (atoi(s + 5) < 1 || atoi(s + 5) > 12 || atoi(s + 8) < 1 || atoi(s + 8) > 31 ||
		atoi(s + 11) > 23 || atoi(s + 14) > 59 || atoi(s + 17) > 60)
		return false;
	if (s[i] == '.')
	{
		int			start = ++i;

		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == start)
			return false;
	}
	if (i == len - 1 && (s[i] == 'Z' || s[i] == 'z'))
		return true;
	return i == len - 6 && (s[i] == '+' || s[i] == '-') && Digits(s + i + 1, 2) &&
		s[i + 3] == ':' && Digits(s + i + 4, 2) && atoi(s + i + 1) <= 23 && atoi(s + i + 4) <= 59;
}

/* Whether a media type is application/json or ends with +json (parameters aside). */
static bool
IsJsonMediaType(const char *s)
{
	int			len = strcspn(s, ";");

	while (len > 0 && s[len - 1] == ' ')
		len--;
	return (len == 16 && pg_strncasecmp(s, "application/json", 16) == 0) ||
		(len > 5 && pg_strncasecmp(s + len - 5, "+json", 5) == 0);
}

/* Adds the error context naming the attribute "type" to topic errors. */
static void
TypeErrorContext(void *arg)
{
	errcontext("CloudEvent attribute \"type\" (the topic)");
}

/* Returns a JSON value as text: a string's characters, anything else its JSON. */
static char *
ValueText(JsonbValue *v, int *len)
{
	Jsonb	   *jb;
	char	   *s;

	if (v->type == jbvString)
	{
		*len = v->val.string.len;
		return v->val.string.val;
	}
	jb = JsonbValueToJsonb(v);
	s = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
	*len = strlen(s);
	return s;
}

PG_FUNCTION_INFO_V1(eventbus_publish_cloudevent);

/*
 * SQL eventbus.publish_cloudevent(event): checks a structured CloudEvent
 * and publishes it as eventbus.publish does (type: topic, partitionkey:
 * key, data: payload), its other attributes kept as headers. Returns the
 * event's id.
 */
Datum
eventbus_publish_cloudevent(PG_FUNCTION_ARGS)
{
	Jsonb	   *ce;
	char	   *type;
	char	   *s;
	JsonbValue *data;
	Datum		payload;
	char	   *key;
	JsonbParseState *state = NULL;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *name = NULL;
	ErrorContextCallback errctx;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event must not be NULL"),
				 errhint("Pass a CloudEvent, e.g. '{\"specversion\": \"1.0\", \"id\": \"1\", \"source\": \"/shop\", \"type\": \"orders.created\", \"data\": {}}'.")));
	ce = PG_GETARG_JSONB_P(0);
	if (!JB_ROOT_IS_OBJECT(ce) || JB_ROOT_IS_SCALAR(ce))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a CloudEvent must be a JSON object"),
				 errhint("Pass a structured-mode CloudEvent, e.g. '{\"specversion\": \"1.0\", \"id\": \"1\", \"source\": \"/shop\", \"type\": \"orders.created\", \"data\": {}}'.")));

	s = StringAttr(ce, "specversion", true, true, "Pass \"specversion\": \"1.0\".");
	if (strcmp(s, "1.0") != 0)
		RefuseAttribute("specversion", psprintf("\"%s\" is not supported", s),
						"Pass \"specversion\": \"1.0\"; eventbus speaks CloudEvents 1.0.");
	(void) StringAttr(ce, "id", true, true, "Pass a non-empty string unique per source, e.g. \"id\": \"A234-1234-1234\".");
	(void) StringAttr(ce, "source", true, true, "Pass a non-empty URI-reference, e.g. \"source\": \"/shop/orders\".");
	type = StringAttr(ce, "type", true, true, "Pass an eventbus topic, e.g. \"type\": \"orders.eu.created\".");
	errctx.callback = TypeErrorContext;
	errctx.arg = NULL;
	errctx.previous = error_context_stack;
	error_context_stack = &errctx;
	EbCheckTopic(type, strlen(type));
	error_context_stack = errctx.previous;
	if (getKeyJsonValueFromContainer(&ce->root, "data_base64", 11, NULL) != NULL)
		RefuseAttribute("data_base64", "binary data is not supported",
						"Send JSON data in \"data\" instead; eventbus stores payloads as jsonb.");
	s = StringAttr(ce, "datacontenttype", false, true, "Omit it, or pass \"application/json\".");
	if (s != NULL && !IsJsonMediaType(s))
		RefuseAttribute("datacontenttype", psprintf("\"%s\" is not JSON", s),
						"Omit it, or pass \"application/json\" or a type ending in \"+json\", e.g. \"application/cloudevents+json\".");
	s = StringAttr(ce, "time", false, true, "Pass an RFC 3339 time, e.g. \"time\": \"2026-12-03T19:10:00.123456Z\".");
	if (s != NULL && !IsRfc3339(s))
		RefuseAttribute("time", psprintf("\"%s\" is not an RFC 3339 time", s),
						"Pass an RFC 3339 time, e.g. \"time\": \"2026-12-03T19:10:00.123456Z\".");
	(void) StringAttr(ce, "subject", false, true, "Pass a non-empty string, e.g. \"subject\": \"order-42\".");
	(void) StringAttr(ce, "dataschema", false, true, "Pass a URI, e.g. \"dataschema\": \"https://example.com/order.json\".");
	key = StringAttr(ce, "partitionkey", false, false, "Pass the ordering key as a string, e.g. \"partitionkey\": \"order-42\".");

	data = getKeyJsonValueFromContainer(&ce->root, "data", 4, NULL);
	if (data == NULL)
		payload = DirectFunctionCall1(jsonb_in, CStringGetDatum("null"));
	else
		payload = JsonbPGetDatum(JsonbValueToJsonb(data));

	/* Headers: the other context attributes and the extensions. */
	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	it = JsonbIteratorInit(&ce->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			name = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE && v.type != jbvNull)
		{
			const char *header = NULL;
			char	   *value;
			int			len;

			if (strcmp(name, "id") == 0 || strcmp(name, "source") == 0 ||
				strcmp(name, "time") == 0 || strcmp(name, "subject") == 0 ||
				strcmp(name, "dataschema") == 0)
				header = psprintf("ce_%s", name);
			else if (NameIndex(ReservedNames, name) >= 0)
				continue;
			else if (name[0] == '\0' || strlen(name) > CE_NAME_MAX ||
					 strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789") != strlen(name))
				RefuseAttribute(name, "an extension attribute name is 1 to 20 lowercase letters or digits",
								"Rename it, e.g. \"correlationid\"; CloudEvents attribute names are [a-z0-9]{1,20}.");
			else if (strcmp(name, "correlationid") == 0)
				header = "correlation_id";
			else if (strcmp(name, "causationid") == 0)
				header = "causation_id";
			else
				header = name;
			value = ValueText(&v, &len);
			PushString(&state, header, value, len);
		}
	}
	PG_RETURN_INT64(EbPublishEvent(cstring_to_text(type), payload,
								   key ? cstring_to_text(key) : NULL,
								   JsonbPGetDatum(JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL))),
								   false));
}
