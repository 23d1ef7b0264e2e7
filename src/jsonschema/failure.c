/*-------------------------------------------------------------------------
 *
 * failure.c
 *	  Failures of JSON Schema validation: the EbSchemaError records, with
 *	  the instance path formatted from the path stack, and the words of the
 *	  "type" message.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "lib/stringinfo.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "jsonschema_int.h"

/* Formats the current instance path: $, $.a, $.items[2], $["a b"]. */
static char *
FormatPath(VState *st)
{
	StringInfoData out;
	int			i;

	initStringInfo(&out);
	appendStringInfoChar(&out, '$');
	for (i = 0; i < st->npath; i++)
	{
		PathSeg    *seg = &st->path[i];

		if (seg->key == NULL)
			appendStringInfo(&out, "[%d]", seg->index);
		else
		{
			bool		ident;
			int			j;

			/* identifier-like keys print as .key, others as ["key"] */
			ident = seg->keylen > 0 && !isdigit((unsigned char) seg->key[0]);
			for (j = 0; j < seg->keylen && ident; j++)
				if (!isalnum((unsigned char) seg->key[j]) && seg->key[j] != '_')
					ident = false;
			if (ident)
			{
				appendStringInfoChar(&out, '.');
				appendBinaryStringInfo(&out, seg->key, seg->keylen);
			}
			else
			{
				appendStringInfoChar(&out, '[');
				escape_json(&out, pnstrdup(seg->key, seg->keylen));
				appendStringInfoChar(&out, ']');
			}
		}
	}
	return out.data;
}

/* Records a failure. */
void
JsFail(VState *st, const char *keyword, const char *fmt,...)
{
	EbSchemaError *err;
	StringInfoData msg;

	initStringInfo(&msg);
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&msg, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&msg, needed);
	}
	err = palloc(sizeof(EbSchemaError));
	err->path = FormatPath(st);
	err->keyword = pstrdup(keyword);
	err->message = msg.data;
	st->errors = lappend(st->errors, err);
	st->nerrors++;
}

/* Names the type of a value, for messages. */
const char *
JsValueTypeName(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvBool:
			return "boolean";
		case jbvNumeric:
			return JsNumIsIntegral(v->val.numeric) ? "integer" : "number";
		case jbvString:
			return "string";
		default:
			return JsIsObject(v) ? "object" : "array";
	}
}

/* Lists the type names of a "type" mask: "string or null". */
char *
JsTypeMaskNames(uint8 mask)
{
	static const char *const names[] = {
		"null", "boolean", "object", "array", "number", "string", "integer"
	};
	StringInfoData out;
	int			k;

	initStringInfo(&out);
	for (k = 0; k < lengthof(names); k++)
	{
		if (mask & (1 << k))
		{
			if (out.len > 0)
				appendStringInfoString(&out, " or ");
			appendStringInfoString(&out, names[k]);
		}
	}
	return out.data;
}
