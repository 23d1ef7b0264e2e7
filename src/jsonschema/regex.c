/*-------------------------------------------------------------------------
 *
 * regex.c
 *	  Regular expressions of the JSON Schema validator ("pattern",
 *	  "patternProperties"): ECMA-262 patterns translated to PostgreSQL's
 *	  ARE, and a fast matcher for the simple ones that skips the regex
 *	  engine.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "catalog/pg_collation.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "regex/regex.h"

#include "jsonschema_int.h"

/* Frees the compiled regular expressions (a memory context callback). */
void
JsFreeRegexes(void *arg)
{
	EbSchema   *s = arg;
	ListCell   *lc;

	foreach(lc, s->regexes)
		pg_regfree(&((EbRegex *) lfirst(lc))->re);
	s->regexes = NIL;
}

/* ECMA-262 whitespace, as ARE bracket content. */
#define ECMA_SPACE "\\t\\n\\v\\f\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff"

/* Rewrites the ECMA-262 escapes that PostgreSQL's ARE reads differently. */
static char *
TranslatePattern(const char *src)
{
	StringInfoData out;
	bool		in_class = false;
	const char *p = src;

	initStringInfo(&out);
	while (*p)
	{
		if (p[0] == '\\' && p[1] != '\0')
		{
			const char *rep = NULL;

			switch (p[1])
			{
				case 'd':
					rep = in_class ? "0-9" : "[0-9]";
					break;
				case 'D':
					rep = in_class ? NULL : "[^0-9]";
					break;
				case 'w':
					rep = in_class ? "a-zA-Z0-9_" : "[a-zA-Z0-9_]";
					break;
				case 'W':
					rep = in_class ? NULL : "[^a-zA-Z0-9_]";
					break;
				case 's':
					rep = in_class ? ECMA_SPACE : "[" ECMA_SPACE "]";
					break;
				case 'S':
					rep = in_class ? NULL : "[^" ECMA_SPACE "]";
					break;
				case 'b':
					rep = in_class ? NULL : "\\y";
					break;
				case 'B':
					rep = in_class ? NULL : "\\Y";
					break;
			}
			if (rep)
				appendStringInfoString(&out, rep);
			else
				appendBinaryStringInfo(&out, p, 2);
			p += 2;
			continue;
		}
		if (*p == '[' && !in_class)
		{
			in_class = true;
			appendStringInfoChar(&out, *p++);
			if (*p == '^')
				appendStringInfoChar(&out, *p++);
			continue;
		}
		if (*p == ']' && in_class)
			in_class = false;
		appendStringInfoChar(&out, *p++);
	}
	return out.data;
}

/* ---------------------------------------------------------------------
 * Simple patterns without the regex engine
 * ---------------------------------------------------------------------
 *
 * Most schema patterns are a sequence of literals and character classes
 * with quantifiers, optionally anchored: "^SKU-[0-9]{5}$", "^c-[0-9]+$".
 * Those compile, besides the ARE, to a small position automaton run as a
 * bit-parallel NFA (one bit per position, up to 63), which takes linear
 * time, allocates nothing and needs no wide-character conversion.  It
 * accepts exactly what the ARE of TranslatePattern() accepts; anything the
 * parser is unsure of (groups, alternation, escapes other than \d \w \D \W
 * and escaped punctuation, POSIX classes, non-ASCII) keeps the ARE.
 *
 * Classes are over ASCII; a non-ASCII character (one UTF-8 sequence, or one
 * byte in a single-byte encoding) matches only "." and negated classes.
 * Other multibyte encodings always use the ARE.
 */
#define FASTRE_MAX		63		/* positions; bit 63 is "accepted" */

typedef struct FastRe
{
	int			npos;
	bool		anch_start;
	bool		anch_end;
	bool		utf8;
	uint64		start;			/* closure of position 0 */
	uint64		skip;			/* positions that may match nothing (?, *) */
	uint64		loop;			/* positions that repeat (*) */
	uint64		nonascii;		/* positions matching a non-ASCII char */
	uint64		cmask[128];		/* positions matching each ASCII char */
} FastRe;

/* A character set over ASCII, plus "every non-ASCII character". */
typedef struct FastSet
{
	bool		ascii[128];
	bool		nonascii;
} FastSet;

/* Punctuation that is literal in an ARE outside brackets. */
static inline bool
FastPlainChar(unsigned char c)
{
	if (c < 0x20 || c > 0x7e)
		return false;
	if (isalnum(c))
		return true;
	return strchr(" !\"#%&',-/:;<=>@_`~", c) != NULL;
}

/* Escaped punctuation, literal in ARE and ECMA alike. */
static inline bool
FastEscapedPunct(unsigned char c)
{
	return c >= 0x21 && c <= 0x7e && !isalnum(c);
}

/* Adds the characters lo to hi to a set. */
static void
FastSetRange(FastSet *set, int lo, int hi)
{
	int			c;

	for (c = lo; c <= hi; c++)
		set->ascii[c] = true;
}

/* Adds \d or \w; false for other letters. */
static bool
FastSetShorthand(FastSet *set, char c)
{
	if (c == 'd')
		FastSetRange(set, '0', '9');
	else if (c == 'w')
	{
		FastSetRange(set, '0', '9');
		FastSetRange(set, 'a', 'z');
		FastSetRange(set, 'A', 'Z');
		set->ascii['_'] = true;
	}
	else
		return false;
	return true;
}

/* Complements a set (non-ASCII characters too). */
static void
FastSetNegate(FastSet *set)
{
	int			c;

	for (c = 0; c < 128; c++)
		set->ascii[c] = !set->ascii[c];
	set->nonascii = !set->nonascii;
}

/* Parses a bracket expression after its "["; returns the end, or NULL. */
static const char *
FastParseClass(const char *p, FastSet *set)
{
	bool		negate = false;
	bool		first = true;

	memset(set, 0, sizeof(FastSet));
	if (*p == '^')
	{
		negate = true;
		p++;
	}
	for (;;)
	{
		unsigned char c = (unsigned char) *p;
		int			lo;

		if (c == ']' && !first)
		{
			p++;
			break;
		}
		first = false;
		if (c == '\0' || c == '[' || c == ']' || c < 0x20 || c > 0x7e)
			return NULL;
		if (c == '\\')
		{
			unsigned char e = (unsigned char) p[1];

			if (e == 'd' || e == 'w')
			{
				FastSetShorthand(set, e);
				p += 2;
				/* "[\d-x]": a range from a class; leave it to the ARE */
				if (p[0] == '-' && p[1] != ']')
					return NULL;
				continue;
			}
			if (!FastEscapedPunct(e))
				return NULL;
			lo = e;
			p += 2;
		}
		else
		{
			lo = c;
			p++;
		}
		if (p[0] == '-' && p[1] != ']')
		{
			unsigned char h = (unsigned char) p[1];
			int			hi;

			if (h == '\\')
			{
				if (!FastEscapedPunct((unsigned char) p[2]))
					return NULL;
				hi = (unsigned char) p[2];
				p += 3;
			}
			else
			{
				if (h == '\0' || h == '[' || h < 0x20 || h > 0x7e)
					return NULL;
				hi = h;
				p += 2;
			}
			if (hi < lo)
				return NULL;
			FastSetRange(set, lo, hi);
			/* "[a-c-e]" */
			if (p[0] == '-' && p[1] != ']')
				return NULL;
		}
		else
			set->ascii[lo] = true;
	}
	if (negate)
		FastSetNegate(set);
	return p;
}

/* Reads a decimal bound number (at most 255, like the ARE's DUPMAX). */
static const char *
FastParseCount(const char *p, int *out)
{
	int			v = 0;

	if (!isdigit((unsigned char) *p))
		return NULL;
	while (isdigit((unsigned char) *p))
	{
		v = v * 10 + (*p - '0');
		if (v > 255)
			return NULL;
		p++;
	}
	*out = v;
	return p;
}

/* Adds one position matching "set"; false when there are too many. */
static bool
FastAddPos(FastRe *f, const FastSet *set, bool skip, bool loop)
{
	uint64		bit;
	int			c;

	if (f->npos >= FASTRE_MAX)
		return false;
	bit = UINT64CONST(1) << f->npos;
	for (c = 0; c < 128; c++)
		if (set->ascii[c])
			f->cmask[c] |= bit;
	if (set->nonascii)
		f->nonascii |= bit;
	if (skip)
		f->skip |= bit;
	if (loop)
		f->loop |= bit;
	f->npos++;
	return true;
}

/* The closure of a position set over positions that may match nothing. */
static inline uint64
FastClosure(const FastRe *f, uint64 s)
{
	uint64		prev;

	do
	{
		prev = s;
		s |= (s & f->skip) << 1;
	} while (s != prev);
	return s;
}

/* Compiles an ECMA-262 pattern to a FastRe, or returns NULL. */
static FastRe *
FastCompile(const char *src)
{
	FastRe	   *f;
	const char *p = src;
	int			enc = GetDatabaseEncoding();

	if (enc != PG_UTF8 && pg_database_encoding_max_length() != 1)
		return NULL;
	f = palloc0(sizeof(FastRe));
	f->utf8 = (enc == PG_UTF8);
	if (*p == '^')
	{
		f->anch_start = true;
		p++;
	}
	while (*p)
	{
		FastSet		set;
		unsigned char c = (unsigned char) *p;
		int			lo = 1,
					hi = 1,
					k;

		if (c == '$' && p[1] == '\0')
		{
			f->anch_end = true;
			break;
		}
		memset(&set, 0, sizeof(set));
		if (c == '[')
		{
			p = FastParseClass(p + 1, &set);
			if (p == NULL)
				goto fail;
		}
		else if (c == '.')
		{
			FastSetRange(&set, 0, 127);
			set.nonascii = true;
			p++;
		}
		else if (c == '\\')
		{
			unsigned char e = (unsigned char) p[1];

			if (e == 'd' || e == 'w')
				FastSetShorthand(&set, e);
			else if (e == 'D' || e == 'W')
			{
				FastSetShorthand(&set, e == 'D' ? 'd' : 'w');
				FastSetNegate(&set);
			}
			else if (FastEscapedPunct(e))
				set.ascii[e] = true;
			else
				goto fail;
			p += 2;
		}
		else if (FastPlainChar(c))
		{
			set.ascii[c] = true;
			p++;
		}
		else
			goto fail;

		/* quantifier */
		if (*p == '*')
		{
			lo = 0;
			hi = -1;
			p++;
		}
		else if (*p == '+')
		{
			lo = 1;
			hi = -1;
			p++;
		}
		else if (*p == '?')
		{
			lo = 0;
			hi = 1;
			p++;
		}
		else if (*p == '{')
		{
			p = FastParseCount(p + 1, &lo);
			if (p == NULL)
				goto fail;
			if (*p == '}')
				hi = lo;
			else if (*p == ',' && p[1] == '}')
			{
				hi = -1;
				p++;
			}
			else if (*p == ',')
			{
				p = FastParseCount(p + 1, &hi);
				if (p == NULL || *p != '}' || hi < lo)
					goto fail;
			}
			else
				goto fail;
			p++;
		}
		/* a second quantifier, or a lazy one: leave it to the ARE */
		if (*p == '*' || *p == '+' || *p == '?' || *p == '{')
			goto fail;

		for (k = 0; k < lo; k++)
			if (!FastAddPos(f, &set, false, false))
				goto fail;
		if (hi < 0)
		{
			if (!FastAddPos(f, &set, true, true))
				goto fail;
		}
		else
		{
			for (k = lo; k < hi; k++)
				if (!FastAddPos(f, &set, true, false))
					goto fail;
		}
	}
	f->start = FastClosure(f, UINT64CONST(1));
	return f;

fail:
	pfree(f);
	return NULL;
}

/* Does a string contain a match of a FastRe? */
static bool
FastMatch(const FastRe *f, const char *s, int len)
{
	uint64		accept = UINT64CONST(1) << f->npos;
	uint64		cur = f->start;
	int			i = 0;

	if (!f->anch_end && (cur & accept))
		return true;
	while (i < len)
	{
		unsigned char c = (unsigned char) s[i];
		uint64		m;

		if (c < 0x80)
		{
			m = f->cmask[c];
			i++;
		}
		else
		{
			m = f->nonascii;
			i += f->utf8 ? pg_utf_mblen((const unsigned char *) s + i) : 1;
		}
		m &= cur;
		cur = FastClosure(f, ((m & ~f->loop) << 1) | (m & f->loop));
		if (!f->anch_start)
			cur |= f->start;
		else if (cur == 0)
			return false;
		if (!f->anch_end && (cur & accept))
			return true;
	}
	return (cur & accept) != 0;
}

/* Compiles an ECMA-262 pattern into the schema's context. */
EbRegex *
JsCompileRegex(Compiler *c, IndexEntry *e, const char *kw, const char *src, int len)
{
	EbRegex    *r = palloc0(sizeof(EbRegex));
	char	   *are;
	pg_wchar   *w;
	int			wlen;
	int			rc;

	r->src = pnstrdup(src, len);
	are = TranslatePattern(r->src);
	w = palloc((strlen(are) + 1) * sizeof(pg_wchar));
	wlen = pg_mb2wchar_with_len(are, w, strlen(are));
	rc = pg_regcomp(&r->re, w, wlen, REG_ADVANCED | REG_NOSUB, C_COLLATION_OID);
	if (rc != REG_OKAY)
	{
		char		buf[256];

		pg_regerror(rc, &r->re, buf, sizeof(buf));
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid JSON Schema: invalid regular expression \"%s\"",
						r->src),
				 errdetail("at %s/%s: %s.", e->loc, kw, buf),
				 errhint("Patterns are ECMA-262 regular expressions, e.g. \"^[a-z]+$\".")));
	}
	c->schema->regexes = lappend(c->schema->regexes, r);
	r->fast = FastCompile(r->src);
	return r;
}

/* Does a string contain a match of the ARE? */
static bool
AreMatch(EbRegex *r, const char *s, int len)
{
	pg_wchar	sbuf[256];
	pg_wchar   *w = sbuf;
	int			wlen;
	int			rc;

	if (len + 1 > lengthof(sbuf))
		w = palloc(sizeof(pg_wchar) * (len + 1));
	wlen = pg_mb2wchar_with_len(s, w, len);
	rc = pg_regexec(&r->re, w, wlen, 0, NULL, 0, NULL, 0);
	if (w != sbuf)
		pfree(w);
	if (rc == REG_OKAY)
		return true;
	if (rc == REG_CANCEL)
		CHECK_FOR_INTERRUPTS();
	if (rc != REG_NOMATCH)
	{
		char		buf[256];

		pg_regerror(rc, &r->re, buf, sizeof(buf));
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_REGULAR_EXPRESSION),
				 errmsg("regular expression \"%s\" failed: %s", r->src, buf)));
	}
	return false;
}

/* Does a string contain a match of the regular expression? */
bool
JsRegexMatch(EbRegex *r, const char *s, int len)
{
	if (r->fast)
	{
		bool		res = FastMatch(r->fast, s, len);

		Assert(res == AreMatch(r, s, len));
		return res;
	}
	return AreMatch(r, s, len);
}
