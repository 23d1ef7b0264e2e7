/*-------------------------------------------------------------------------
 *
 * topic_fuzz.c
 *	  libFuzzer target for the topic and pattern grammar (src/topic.c).
 *
 * The input is a topic and a pattern separated by the first NUL byte (no
 * NUL: both are the whole input); a second NUL ends the pattern, since
 * PostgreSQL text never holds NUL. Each is copied to a buffer of exactly
 * its length (no terminator) so that ASan catches any read past its end.
 *
 * For each input the harness
 *	 - checks the topic (EbCheckTopic) and compiles the pattern
 *	   (EbCompilePattern); an ERROR is fine, but must be SQLSTATE 22023 with
 *	   a message, detail and hint free of control characters;
 *	 - compares both verdicts with an independent reference parser of the
 *	   grammar of docs/topics.md (1 to 32 words, at most 255 bytes, no empty
 *	   word, no whitespace or control character, "*" and "#" only as whole
 *	   words of a pattern), and the compiled words with the reference's;
 *	 - when both are valid, compares EbPatternMatches with a recursive
 *	   (memoised) AMQP matcher on words;
 *	 - builds topics that must match the pattern (each "*" replaced by a
 *	   word, each "#" by zero, one or two words) and checks that they do.
 * Any disagreement prints both texts and abort()s: libFuzzer saves the input.
 *
 * By default inputs that are not valid UTF-8 are skipped: the server only
 * ever passes topic.c text that is valid in the database encoding (UTF-8
 * in the test clusters). Environment:
 *	 EB_FUZZ_RAW=1                feed invalid UTF-8 too (crash checks only)
 *	 EB_FUZZ_ENCODING=SQL_ASCII   a database encoding other than UTF-8
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "eventbus.h"
#include "mb/pg_wchar.h"
#include "utils/elog.h"

#include "pgstubs.h"

static bool RawMode = false;

/* ---------------------------------------------------------------- reference */

enum
{
	REF_LITERAL,
	REF_STAR,
	REF_HASH
};

typedef struct RefWord
{
	const char *s;
	int			len;
	int			kind;
} RefWord;

/*
 * Decodes one UTF-8 character at s[i] (well-formed per RFC 3629: no
 * overlong forms, no surrogates, at most U+10FFFF). Returns the code point
 * and advances *i, or returns -1 if the bytes are not a character.
 */
static long
DecodeUtf8(const unsigned char *s, int len, int *i)
{
	unsigned char c = s[*i];
	int			n;
	long		cp;
	long		min;

	if (c < 0x80)
	{
		(*i)++;
		return c;
	}
	if (c >= 0xC2 && c <= 0xDF)
		n = 2, cp = c & 0x1F, min = 0x80;
	else if (c >= 0xE0 && c <= 0xEF)
		n = 3, cp = c & 0x0F, min = 0x800;
	else if (c >= 0xF0 && c <= 0xF4)
		n = 4, cp = c & 0x07, min = 0x10000;
	else
		return -1;
	if (*i + n > len)
		return -1;
	for (int k = 1; k < n; k++)
	{
		if ((s[*i + k] & 0xC0) != 0x80)
			return -1;
		cp = (cp << 6) | (s[*i + k] & 0x3F);
	}
	if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return -1;
	*i += n;
	return cp;
}

/* Is this text something PostgreSQL could pass us (valid, no NUL)? */
static bool
IsServerText(const unsigned char *s, int len)
{
	if (EbFuzzDatabaseEncoding != PG_UTF8)
		return memchr(s, 0, len) == NULL;
	for (int i = 0; i < len;)
	{
		long		cp = DecodeUtf8(s, len, &i);

		if (cp <= 0)
			return false;
	}
	return true;
}

/* Unicode general category Cf (format characters), as ranges. */
static const long RefFormat[][2] = {
	{0x00AD, 0x00AD}, {0x0600, 0x0605}, {0x061C, 0x061C}, {0x06DD, 0x06DD},
	{0x070F, 0x070F}, {0x0890, 0x0891}, {0x08E2, 0x08E2}, {0x180E, 0x180E},
	{0x200B, 0x200F}, {0x202A, 0x202E}, {0x2060, 0x2064}, {0x2066, 0x206F},
	{0xFEFF, 0xFEFF}, {0xFFF9, 0xFFFB}, {0x110BD, 0x110BD}, {0x110CD, 0x110CD},
	{0x13430, 0x1343F}, {0x1BCA0, 0x1BCA3}, {0x1D173, 0x1D17A}, {0xE0001, 0xE0001},
	{0xE0020, 0xE007F},
};

/*
 * docs/topics.md: whitespace, control characters and invisible format
 * characters are not allowed.
 */
static bool
RefForbidden(long cp)
{
	if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F))
		return true;
	if (cp == ' ' || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
		cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
		cp == 0x3000 || cp == 0xFEFF)
		return true;
	for (size_t i = 0; i < sizeof(RefFormat) / sizeof(RefFormat[0]); i++)
		if (cp >= RefFormat[i][0] && cp <= RefFormat[i][1])
			return true;
	return false;
}

/* Parses a topic or pattern (server text); false if it is invalid. */
static bool
RefParse(const char *s, int len, bool is_pattern, RefWord *words, int *nwords)
{
	int			n = 0;
	int			start = 0;
	bool		utf8 = (EbFuzzDatabaseEncoding == PG_UTF8);

	if (len < 1 || len > 255)
		return false;
	for (int i = 0; i <= len; i++)
	{
		if (i < len && s[i] != '.')
			continue;
		if (i == start || n == 32)
			return false;
		words[n].s = s + start;
		words[n].len = i - start;
		words[n].kind = REF_LITERAL;
		if (i - start == 1 && s[start] == '*')
			words[n].kind = REF_STAR;
		if (i - start == 1 && s[start] == '#')
			words[n].kind = REF_HASH;
		n++;
		start = i + 1;
	}
	for (int w = 0; w < n; w++)
	{
		const unsigned char *ws = (const unsigned char *) words[w].s;

		if (words[w].kind != REF_LITERAL)
		{
			if (!is_pattern)
				return false;
			continue;
		}
		for (int i = 0; i < words[w].len;)
		{
			long		cp;

			if (utf8)
				cp = DecodeUtf8(ws, words[w].len, &i);
			else
				cp = ws[i++];
			if (cp < 0)
				abort();		/* not server text: the caller checks first */
			if (cp == '*' || cp == '#')
				return false;	/* in a topic, or not a whole word */
			if ((utf8 || cp < 0x80) && RefForbidden(cp))
				return false;
		}
	}
	*nwords = n;
	return true;
}

static int
RefMatchFrom(const RefWord *p, int np, const RefWord *t, int nt, int i, int j,
			 signed char memo[33][33])
{
	int			r;

	if (memo[i][j] >= 0)
		return memo[i][j];
	if (i == np)
		r = (j == nt);
	else if (p[i].kind == REF_HASH)
		r = RefMatchFrom(p, np, t, nt, i + 1, j, memo) ||
			(j < nt && RefMatchFrom(p, np, t, nt, i, j + 1, memo));
	else if (j == nt)
		r = 0;
	else if (p[i].kind == REF_STAR ||
			 (p[i].len == t[j].len && memcmp(p[i].s, t[j].s, p[i].len) == 0))
		r = RefMatchFrom(p, np, t, nt, i + 1, j + 1, memo);
	else
		r = 0;
	memo[i][j] = (signed char) r;
	return r;
}

static bool
RefMatch(const RefWord *p, int np, const RefWord *t, int nt)
{
	signed char memo[33][33];

	memset(memo, -1, sizeof(memo));
	return RefMatchFrom(p, np, t, nt, 0, 0, memo);
}

/* ---------------------------------------------------------------- harness */

static const char *CurTopic;
static int	CurTopicLen;
static const char *CurPattern;
static int	CurPatternLen;

static void
PrintText(const char *what, const char *s, int len)
{
	fprintf(stderr, "  %s (%d bytes): \"", what, len);
	for (int i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c < 0x20 || c >= 0x7F || c == '"' || c == '\\')
			fprintf(stderr, "\\x%02X", c);
		else
			fputc(c, stderr);
	}
	fprintf(stderr, "\"\n");
}

static void
Fail(const char *fmt,...) pg_attribute_printf(1, 2);

static void
Fail(const char *fmt,...)
{
	va_list		args;

	fprintf(stderr, "\ntopic_fuzz: invariant violated: ");
	va_start(args, fmt);
	vfprintf(stderr, fmt, args);
	va_end(args);
	fprintf(stderr, "\n");
	if (CurTopic)
		PrintText("topic", CurTopic, CurTopicLen);
	if (CurPattern)
		PrintText("pattern", CurPattern, CurPatternLen);
	if (EbFuzzLastError.message)
		fprintf(stderr, "  last error: %s / %s\n", EbFuzzLastError.message,
				EbFuzzLastError.detail ? EbFuzzLastError.detail : "");
	abort();
}

static void
CheckErrorText(const char *what, const char *text)
{
	if (text == NULL)
		Fail("the ERROR has no %s", what);
	if (strlen(text) > 1024)
		Fail("the ERROR's %s is %zu bytes long", what, strlen(text));
	for (const unsigned char *p = (const unsigned char *) text; *p; p++)
		if (*p < 0x20 || *p == 0x7F)
			Fail("the ERROR's %s contains the control character 0x%02X: %s", what, *p, text);
}

/* After an ERROR from topic.c: it must be a clean 22023. */
static void
CheckError(void)
{
	if (EbFuzzLastError.elevel != ERROR)
		Fail("error level %d, not ERROR", EbFuzzLastError.elevel);
	if (EbFuzzLastError.sqlerrcode != ERRCODE_INVALID_PARAMETER_VALUE)
		Fail("SQLSTATE %s, not 22023 (%s:%d)",
			 unpack_sql_state(EbFuzzLastError.sqlerrcode),
			 EbFuzzLastError.filename, EbFuzzLastError.lineno);
	CheckErrorText("message", EbFuzzLastError.message);
	CheckErrorText("detail", EbFuzzLastError.detail);
	CheckErrorText("hint", EbFuzzLastError.hint);
}

/* EbCheckTopic; false if it raised (a clean 22023). */
static bool
CheckTopic(const char *s, int len)
{
	sigjmp_buf	jb;

	if (sigsetjmp(jb, 0) == 0)
	{
		PG_exception_stack = &jb;
		EbCheckTopic(s, len);
		PG_exception_stack = NULL;
		return true;
	}
	PG_exception_stack = NULL;
	CheckError();
	return false;
}

/* EbCompilePattern; false if it raised (a clean 22023). */
static bool
CompilePattern(const char *s, int len, EbPattern *out)
{
	sigjmp_buf	jb;

	if (sigsetjmp(jb, 0) == 0)
	{
		PG_exception_stack = &jb;
		EbCompilePattern(s, len, out);
		PG_exception_stack = NULL;
		return true;
	}
	PG_exception_stack = NULL;
	CheckError();
	return false;
}

static void
CheckCompiled(const EbPattern *p, const char *s, int len, const RefWord *rw, int rn)
{
	bool		has_hash = false;

	if (p->nwords != rn)
		Fail("compiled pattern has %d words, the reference %d", p->nwords, rn);
	if (memcmp(p->text, s, len) != 0 || p->text[len] != '\0')
		Fail("compiled pattern text differs from the pattern");
	for (int i = 0; i < rn; i++)
	{
		const EbWord *w = &p->words[i];
		int			kind = w->kind == EB_WORD_STAR ? REF_STAR :
			w->kind == EB_WORD_HASH ? REF_HASH : REF_LITERAL;

		if (kind != rw[i].kind)
			Fail("word %d: kind %d, the reference %d", i + 1, (int) w->kind, rw[i].kind);
		if (kind == REF_HASH)
			has_hash = true;
		if (kind == REF_LITERAL &&
			(w->len != rw[i].len || w->str != p->text + (rw[i].s - s) ||
			 memcmp(w->str, rw[i].s, w->len) != 0))
			Fail("word %d: literal differs from the reference", i + 1);
	}
	if (p->has_hash != has_hash)
		Fail("has_hash is %d, the pattern %s \"#\"", p->has_hash, has_hash ? "has" : "has no");
}

/* A topic that must match the pattern: wildcards replaced per "choice". */
static void
CheckDerivedTopic(const EbPattern *p, const RefWord *pw, int pn, uint32 choice)
{
	char		buf[EB_TOPIC_MAX_BYTES * 3 + 8];
	RefWord		tw[EB_TOPIC_MAX_WORDS];
	int			tn;
	int			len = 0;
	char	   *topic;

	for (int i = 0; i < pn; i++)
	{
		const char *add;
		int			addlen;
		int			c = choice % 3;

		choice = choice / 3 + 0x9E37u * (i + 1);
		if (pw[i].kind == REF_LITERAL)
			add = pw[i].s, addlen = pw[i].len;
		else if (pw[i].kind == REF_STAR)
			add = "x", addlen = 1;
		else if (c == 0)
			continue;			/* "#" matching no word */
		else if (c == 1)
			add = "h", addlen = 1;
		else
			add = "h.h", addlen = 3;
		if (len > 0)
			buf[len++] = '.';
		memcpy(buf + len, add, addlen);
		len += addlen;
	}
	if (!RefParse(buf, len, false, tw, &tn))
		return;					/* too long, too many words, or no word */
	topic = malloc(len);
	memcpy(topic, buf, len);
	if (!CheckTopic(topic, len))
		Fail("a topic derived from the pattern (\"%.*s\") is valid for the reference, not for EbCheckTopic",
			 len, buf);
	if (!RefMatch(pw, pn, tw, tn))
		Fail("reference matcher: derived topic \"%.*s\" does not match", len, buf);
	if (!EbPatternMatches(p, topic, len))
		Fail("EbPatternMatches: derived topic \"%.*s\" does not match the pattern", len, buf);
	free(topic);
}

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *enc = getenv("EB_FUZZ_ENCODING");

	RawMode = getenv("EB_FUZZ_RAW") && strcmp(getenv("EB_FUZZ_RAW"), "0") != 0;
	if (enc && strcmp(enc, "SQL_ASCII") == 0)
		EbFuzzDatabaseEncoding = PG_SQL_ASCII;
	else if (enc && strcmp(enc, "LATIN1") == 0)
		EbFuzzDatabaseEncoding = PG_LATIN1;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t		tlen,
				pstart,
				plen;
	char	   *topic,
			   *pattern;
	bool		topic_text,
				pattern_text;
	bool		topic_ok = false,
				pattern_ok = false;
	EbPattern  *compiled;
	RefWord		tw[EB_TOPIC_MAX_WORDS],
				pw[EB_TOPIC_MAX_WORDS];
	int			tn = 0,
				pn = 0;
	uint32		hash = 2166136261u;

	if (size > 100000)
		return -1;
	if (nul)
	{
		const uint8_t *nul2;

		tlen = nul - data;
		pstart = tlen + 1;
		nul2 = memchr(data + pstart, 0, size - pstart);
		plen = (nul2 ? (size_t) (nul2 - data) : size) - pstart;
	}
	else
	{
		tlen = size;
		pstart = 0;
		plen = size;
	}
	for (size_t i = 0; i < size; i++)
		hash = (hash ^ data[i]) * 16777619u;

	/* Exactly sized copies: ASan reports any read beyond them. */
	topic = malloc(tlen ? tlen : 1);
	memcpy(topic, data, tlen);
	pattern = malloc(plen ? plen : 1);
	memcpy(pattern, data + pstart, plen);
	compiled = malloc(sizeof(EbPattern));
	memset(compiled, 0xBE, sizeof(EbPattern));

	CurTopic = topic, CurTopicLen = (int) tlen;
	CurPattern = pattern, CurPatternLen = (int) plen;
	memset(&EbFuzzLastError, 0, sizeof(EbFuzzLastError));

	topic_text = IsServerText((const unsigned char *) topic, (int) tlen);
	pattern_text = IsServerText((const unsigned char *) pattern, (int) plen);

	if (topic_text || RawMode)
	{
		topic_ok = CheckTopic(topic, (int) tlen);
		if (topic_text)
		{
			bool		ref_ok = RefParse(topic, (int) tlen, false, tw, &tn);

			if (topic_ok != ref_ok)
				Fail("EbCheckTopic says %s, the reference %s",
					 topic_ok ? "valid" : "invalid", ref_ok ? "valid" : "invalid");
		}
	}
	if (pattern_text || RawMode)
	{
		pattern_ok = CompilePattern(pattern, (int) plen, compiled);
		if (pattern_text)
		{
			bool		ref_ok = RefParse(pattern, (int) plen, true, pw, &pn);

			if (pattern_ok != ref_ok)
				Fail("EbCompilePattern says %s, the reference %s",
					 pattern_ok ? "valid" : "invalid", ref_ok ? "valid" : "invalid");
			if (pattern_ok)
				CheckCompiled(compiled, pattern, (int) plen, pw, pn);
		}
	}
	if (topic_ok && pattern_ok)
	{
		bool		got = EbPatternMatches(compiled, topic, (int) tlen);

		if (topic_text && pattern_text)
		{
			bool		want = RefMatch(pw, pn, tw, tn);

			if (got != want)
				Fail("EbPatternMatches says %s, the reference matcher %s",
					 got ? "match" : "no match", want ? "match" : "no match");
		}
	}
	if (pattern_ok && pattern_text)
	{
		CheckDerivedTopic(compiled, pw, pn, hash);
		CheckDerivedTopic(compiled, pw, pn, hash * 2654435761u + 1);
	}

	CurTopic = CurPattern = NULL;
	free(compiled);
	free(pattern);
	free(topic);
	EbFuzzResetMemory();
	return 0;
}
