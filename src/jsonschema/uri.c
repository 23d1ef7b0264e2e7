/*-------------------------------------------------------------------------
 *
 * uri.c
 *	  URI references and JSON pointers for the JSON Schema validator:
 *	  resolution against a base URI (RFC 3986), percent-decoding, and JSON
 *	  pointers (RFC 6901) to escape keys and to follow "$ref" fragments.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "lib/stringinfo.h"
#include "utils/jsonb.h"

#include "jsonschema_int.h"

/* A parsed URI reference; NULL members are absent (path never is). */
typedef struct Uri
{
	char	   *scheme;
	char	   *auth;
	char	   *path;
	char	   *query;
	char	   *frag;
} Uri;

/* Splits a URI reference into its five parts (RFC 3986, appendix B). */
static void
ParseUri(const char *s, Uri *u)
{
	const char *p = s;
	const char *q = s;

	memset(u, 0, sizeof(Uri));
	if (isalpha((unsigned char) *q))
	{
		while (isalnum((unsigned char) *q) || *q == '+' || *q == '-' || *q == '.')
			q++;
		if (*q == ':')
		{
			u->scheme = pnstrdup(p, q - p);
			p = q + 1;
		}
	}
	if (p[0] == '/' && p[1] == '/')
	{
		p += 2;
		q = p;
		while (*q && *q != '/' && *q != '?' && *q != '#')
			q++;
		u->auth = pnstrdup(p, q - p);
		p = q;
	}
	q = p;
	while (*q && *q != '?' && *q != '#')
		q++;
	u->path = pnstrdup(p, q - p);
	p = q;
	if (*p == '?')
	{
		p++;
		q = p;
		while (*q && *q != '#')
			q++;
		u->query = pnstrdup(p, q - p);
		p = q;
	}
	if (*p == '#')
		u->frag = pstrdup(p + 1);
}

/* Removes "." and ".." segments from a path (RFC 3986, 5.2.4). */
static char *
RemoveDots(const char *in)
{
	StringInfoData out;
	const char *p = in;

	initStringInfo(&out);
	while (*p)
	{
		if (strncmp(p, "../", 3) == 0)
			p += 3;
		else if (strncmp(p, "./", 2) == 0)
			p += 2;
		else if (strncmp(p, "/./", 3) == 0)
			p += 2;
		else if (strcmp(p, "/.") == 0)
			p = "/";
		else if (strncmp(p, "/../", 4) == 0 || strcmp(p, "/..") == 0)
		{
			char	   *slash;

			p = (p[3] == '/') ? p + 3 : "/";
			out.data[out.len] = '\0';
			slash = strrchr(out.data, '/');
			out.len = slash ? slash - out.data : 0;
			out.data[out.len] = '\0';
		}
		else if (strcmp(p, ".") == 0 || strcmp(p, "..") == 0)
			break;
		else
		{
			const char *q = (*p == '/') ? p + 1 : p;

			while (*q && *q != '/')
				q++;
			appendBinaryStringInfo(&out, p, q - p);
			p = q;
		}
	}
	return out.data;
}

/* Resolves a URI reference against a base URI (RFC 3986, 5.2.2). */
char *
JsResolveUri(const char *base, const char *ref)
{
	Uri			b,
				r,
				t;
	StringInfoData out;

	ParseUri(ref, &r);
	memset(&t, 0, sizeof(Uri));
	if (r.scheme)
	{
		t = r;
		t.path = RemoveDots(r.path);
	}
	else
	{
		ParseUri(base, &b);
		if (r.auth)
		{
			t.auth = r.auth;
			t.path = RemoveDots(r.path);
			t.query = r.query;
		}
		else
		{
			if (r.path[0] == '\0')
			{
				t.path = b.path;
				t.query = r.query ? r.query : b.query;
			}
			else
			{
				if (r.path[0] == '/')
					t.path = RemoveDots(r.path);
				else
				{
					char	   *merged;

					if (b.auth && b.path[0] == '\0')
						merged = psprintf("/%s", r.path);
					else
					{
						char	   *slash = strrchr(b.path, '/');

						if (slash)
							merged = psprintf("%.*s%s",
											  (int) (slash - b.path + 1),
											  b.path, r.path);
						else
							merged = pstrdup(r.path);
					}
					t.path = RemoveDots(merged);
				}
				t.query = r.query;
			}
			t.auth = b.auth;
		}
		t.scheme = b.scheme;
	}
	t.frag = r.frag;

	initStringInfo(&out);
	if (t.scheme)
		appendStringInfo(&out, "%s:", t.scheme);
	if (t.auth)
		appendStringInfo(&out, "//%s", t.auth);
	appendStringInfoString(&out, t.path);
	if (t.query)
		appendStringInfo(&out, "?%s", t.query);
	if (t.frag)
		appendStringInfo(&out, "#%s", t.frag);
	return out.data;
}

/* Decodes %XX escapes. */
char *
JsPercentDecode(const char *s)
{
	StringInfoData out;

	initStringInfo(&out);
	for (; *s; s++)
	{
		if (s[0] == '%' && isxdigit((unsigned char) s[1]) &&
			isxdigit((unsigned char) s[2]))
		{
			char		hex[3] = {s[1], s[2], '\0'};

			appendStringInfoChar(&out, (char) strtol(hex, NULL, 16));
			s += 2;
		}
		else
			appendStringInfoChar(&out, *s);
	}
	return out.data;
}

/* Escapes a key as a JSON pointer token (~ and /). */
char *
JsPointerToken(const char *key, int len)
{
	StringInfoData out;
	int			i;

	initStringInfo(&out);
	for (i = 0; i < len; i++)
	{
		if (key[i] == '~')
			appendStringInfoString(&out, "~0");
		else if (key[i] == '/')
			appendStringInfoString(&out, "~1");
		else
			appendStringInfoChar(&out, key[i]);
	}
	return out.data;
}

/* Follows a JSON pointer ("/a/0/b") from a value; false if it leads nowhere. */
bool
JsPointerLookup(JsonbValue *root, const char *ptr, JsonbValue *out)
{
	JsonbValue	cur = *root;
	const char *p = ptr;

	while (*p == '/')
	{
		StringInfoData tok;
		JsonbContainer *jc;

		p++;
		initStringInfo(&tok);
		while (*p && *p != '/')
		{
			if (p[0] == '~' && p[1] == '0')
			{
				appendStringInfoChar(&tok, '~');
				p += 2;
			}
			else if (p[0] == '~' && p[1] == '1')
			{
				appendStringInfoChar(&tok, '/');
				p += 2;
			}
			else
				appendStringInfoChar(&tok, *p++);
		}
		if (cur.type != jbvBinary)
			return false;
		jc = cur.val.binary.data;
		if (JsonContainerIsObject(jc))
		{
			JsonbValue	next;

			if (!getKeyJsonValueFromContainer(jc, tok.data, tok.len, &next))
				return false;
			cur = next;
		}
		else
		{
			int64		idx = 0;
			JsonbValue *el;

			/* RFC 6901 array index: "0", or digits without a leading zero. */
			if (tok.len == 0 || tok.len > 9 || (tok.len > 1 && tok.data[0] == '0'))
				return false;
			for (int d = 0; d < tok.len; d++)
			{
				if (tok.data[d] < '0' || tok.data[d] > '9')
					return false;
				idx = idx * 10 + (tok.data[d] - '0');
			}
			el = getIthJsonbValueFromContainer(jc, (uint32) idx);
			if (el == NULL)
				return false;
			cur = *el;
		}
	}
	if (*p != '\0')
		return false;
	*out = cur;
	return true;
}
