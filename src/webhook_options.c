/*-------------------------------------------------------------------------
 *
 * webhook_options.c
 *	  The options of the HTTP sink (webhook.c): the checks of a server's,
 *	  a user mapping's and a relay's, the FOREIGN DATA WRAPPER's validator,
 *	  and the settings of a client built from them.
 *
 * A secret ("secret", "previous_secret", "client_key") only in a user
 * mapping; headers named as tokens, values without line breaks, none of
 * those the request itself sets (webhook.c sends an event's headers under
 * the same rules).
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "sink.h"
#include "webhook.h"

#include "access/reloptions.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_user_mapping.h"
#include "commands/defrem.h"
#include "common/base64.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

static bool
IsSecretOption(const char *name)
{
	return strcmp(name, "secret") == 0 || strcmp(name, "previous_secret") == 0 ||
		strcmp(name, "client_key") == 0 || pg_strcasecmp(name, "header.authorization") == 0;
}

/* An HTTP header name: a token of RFC 9110. */
bool
EbHttpIsToken(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!(isalnum((unsigned char) *s) || strchr("!#$%&'*+-.^_`|~", *s) != NULL))
			return false;
	return true;
}

/*
 * Whether an event's header would change how the request is framed or
 * routed (Content-Length: a truncated body, the rest read as the next
 * request on the connection; Host) or clash with the headers the relay
 * sets (content-type, webhook-*): such a header of an event is not sent.
 */
bool
EbHttpReservedHeader(const char *name)
{
	static const char *const reserved[] = {
		"content-type", "content-length", "transfer-encoding", "host", "connection",
		"keep-alive", "te", "trailer", "upgrade", "expect", "proxy-connection",
		"webhook-id", "webhook-timestamp", "webhook-signature",
	};

	for (int i = 0; i < lengthof(reserved); i++)
		if (pg_strcasecmp(name, reserved[i]) == 0)
			return true;
	return false;
}

bool
EbHttpHasNewline(const char *s)
{
	return strpbrk(s, "\r\n") != NULL;
}

static int
IntOption(const char *name, const char *value, int min, int max)
{
	char	   *end;
	long		v = strtol(value, &end, 10);

	if (*value == '\0' || *end != '\0' || v < min || v > max)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("HTTP option \"%s\" must be an integer between %d and %d", name, min, max)));
	return (int) v;
}

/* A whsec_ secret's key; raises an error (without the value) unless valid. */
static void
AddSecret(HttpConf *c, const char *name, const char *value)
{
	const char *b64;
	int			len;
	uint8	   *key;

	if (strncmp(value, "whsec_", 6) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("HTTP option \"%s\" must be a Standard Webhooks secret: whsec_ and base64", name),
				 errhint("Make one with e.g. 'whsec_' || encode(gen_random_bytes(32), 'base64') (pgcrypto).")));
	b64 = value + 6;
	key = palloc(pg_b64_dec_len(strlen(b64)) + 1);
	len = pg_b64_decode(b64, strlen(b64), (char *) key, pg_b64_dec_len(strlen(b64)));
	if (len <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("HTTP option \"%s\" is not valid base64 after whsec_", name)));
	if (c != NULL && c->nsecrets < HTTP_MAX_SECRETS)
	{
		c->secrets[c->nsecrets] = key;
		c->secret_len[c->nsecrets] = len;
		c->nsecrets++;
	}
}

/*
 * Checks one option where it is given ("server", "user mapping", "relay
 * options"; NULL: in the relay process) and applies it to c (NULL: check
 * only). An error never shows a secret's value.
 */
void
EbHttpSetOption(HttpConf *c, const char *name, const char *value, const char *where)
{
	if (where != NULL && IsSecretOption(name) && strcmp(where, "user mapping") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("HTTP option \"%s\" holds a secret and cannot be given in the %s", name, where),
				 errhint("Put it in a USER MAPPING: its options are shown only to the mapped user and the server's owner.")));
	if (where != NULL && strcmp(where, "relay options") == 0 &&
		(strcmp(name, "url") == 0 || strncmp(name, "header.", 7) == 0 || strncmp(name, "ca_", 3) == 0 ||
		 strncmp(name, "client_", 7) == 0 || strcmp(name, "verify") == 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("HTTP option \"%s\" cannot be given in the relay options", name),
				 errhint("The endpoint, its headers and TLS settings are the server's (secrets: the user mapping's).")));
	if (strcmp(name, "url") == 0)
	{
		if ((strncmp(value, "http://", 7) != 0 && strncmp(value, "https://", 8) != 0) || EbHttpHasNewline(value))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("HTTP option \"url\" must be an http:// or https:// URL: \"%s\"", value),
					 errhint("Pass e.g. 'https://hooks.example/events' or 'https://hooks.example/{1}/{topic}'.")));
		if (c)
			c->url = pstrdup(value);
	}
	else if (strcmp(name, "timeout_ms") == 0)
	{
		int			v = IntOption(name, value, 1, 600000);

		if (c)
			c->timeout_ms = v;
	}
	else if (strcmp(name, "concurrency") == 0)
	{
		int			v = IntOption(name, value, 1, 256);

		if (c)
			c->concurrency = v;
	}
	else if (strcmp(name, "batch_size") == 0)
	{
		int			v = IntOption(name, value, 1, 1000);

		if (c)
			c->batch_size = v;
	}
	else if (strcmp(name, "mode") == 0)
	{
		if (strcmp(value, "binary") != 0 && strcmp(value, "structured") != 0 && strcmp(value, "batch") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("HTTP option \"mode\" must be binary, structured or batch: \"%s\"", value)));
		if (c)
			c->mode = pstrdup(value);
	}
	else if (strncmp(name, "header.", 7) == 0)
	{
		if (!EbHttpIsToken(name + 7) || EbHttpHasNewline(value))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("HTTP option \"%s\" is not a valid header", name),
					 errhint("Name headers header.<Name>, e.g. \"header.X-Team\" 'billing'; values have no line breaks.")));
		if (c)
			c->headers = lappend(c->headers, psprintf("%s: %s", name + 7, value));
	}
	else if (strcmp(name, "secret") == 0 || strcmp(name, "previous_secret") == 0)
		AddSecret(c, name, value);
	else if (strcmp(name, "verify") == 0)
	{
		if (strcmp(value, "true") != 0 && strcmp(value, "false") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("HTTP option \"verify\" must be true or false")));
		if (c)
			c->verify = strcmp(value, "true") == 0;
	}
	else if (strcmp(name, "ca_file") == 0 || strcmp(name, "client_cert") == 0 || strcmp(name, "client_key") == 0)
	{
		if (c && strcmp(name, "ca_file") == 0)
			c->ca_file = pstrdup(value);
		else if (c && strcmp(name, "client_cert") == 0)
			c->client_cert = pstrdup(value);
		else if (c)
			c->client_key = pstrdup(value);
	}
	else if (strcmp(name, "source") == 0 && where != NULL && strcmp(where, "relay options") == 0)
	{
		if (value[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("relay option \"source\" must not be empty"),
					 errhint("Pass a URI reference, e.g. \"https://shop.example/orders\" or \"/shop/orders\".")));
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown HTTP option \"%s\"", name),
				 errhint("Server: url, timeout_ms, concurrency, mode, batch_size, header.<Name>, ca_file, verify, client_cert. "
						 "User mapping: secret, previous_secret, header.<Name>, client_key. Relay options: source, timeout_ms, concurrency, mode, batch_size.")));
}

PG_FUNCTION_INFO_V1(eventbus_http_validator);

/* The validator of FOREIGN DATA WRAPPER eventbus_http. */
Datum
eventbus_http_validator(PG_FUNCTION_ARGS)
{
	List	   *options = untransformRelOptions(PG_GETARG_DATUM(0));
	Oid			catalog = PG_GETARG_OID(1);
	const char *where = catalog == ForeignServerRelationId ? "server" :
		catalog == UserMappingRelationId ? "user mapping" : NULL;
	ListCell   *lc;

	if (where == NULL && options != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("eventbus_http takes options only on servers and user mappings")));
	foreach(lc, options)
	{
		DefElem    *def = lfirst(lc);

		EbHttpSetOption(NULL, def->defname, defGetString(def), where);
	}
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(eventbus_http_check_options);

/* SQL eventbus._http_check_options(options): raises an error unless an HTTP relay's options are valid. */
Datum
eventbus_http_check_options(PG_FUNCTION_ARGS)
{
	EbSinkProp	props[EB_MAX_SINK_PROPS];
	int			n = EbSinkJsonProps(PG_GETARG_JSONB_P(0), props, 0, EB_MAX_SINK_PROPS, false);

	for (int i = 0; i < n; i++)
		EbHttpSetOption(NULL, props[i].name, props[i].value, "relay options");
	PG_RETURN_VOID();
}

