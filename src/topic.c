/*-------------------------------------------------------------------------
 *
 * topic.c
 *	  The topic and pattern grammar (docs/topics.md), and matching.
 *
 * A topic is 1 to 32 words joined by ".", at most 255 bytes; a word has no
 * ".", "*", "#", whitespace or control character. A pattern is a topic in
 * which a whole word may be "*" (exactly one word) or "#" (zero or more).
 *
 * Matching runs the pattern as a non-deterministic automaton whose states are
 * "the first i pattern words are matched", kept as a bitmask (at most 33
 * states): one pass over the topic's words, O(words x pattern words), never
 * backtracking, whatever the number of "#" words.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"

/* A parse failure: what to say, or nothing when the text is valid. */
typedef struct ParseFailure
{
	char	   *detail;
} ParseFailure;

#define TOPIC_HINT \
	"A topic is 1 to 32 words joined by \".\", at most 255 bytes, e.g. \"orders.eu.created\"; " \
	"a word has no \".\", \"*\", \"#\", whitespace or control characters."
#define PATTERN_HINT \
	"A pattern is a topic in which a whole word may be \"*\" (exactly one word) " \
	"or \"#\" (zero or more words), e.g. \"orders.*.created\" or \"orders.#\"."

/* Says whether a Unicode code point is a control character (C0, DEL, C1). */
static inline bool
IsControl(pg_wchar c)
{
	return c < 0x20 || c == 0x7F || (c >= 0x80 && c <= 0x9F);
}

/*
 * Says whether a Unicode code point is an invisible format character
 * (general category Cf: soft hyphen, zero-width and joiner characters,
 * bidirectional marks and overrides, tags), which would make two topics
 * that look alike differ, or reorder what a log line or metric label shows.
 */
static bool
IsFormat(pg_wchar c)
{
	return c == 0x00AD || (c >= 0x0600 && c <= 0x0605) || c == 0x061C || c == 0x06DD ||
		c == 0x070F || c == 0x0890 || c == 0x0891 || c == 0x08E2 || c == 0x180E ||
		(c >= 0x200B && c <= 0x200F) || (c >= 0x202A && c <= 0x202E) ||
		(c >= 0x2060 && c <= 0x2064) || (c >= 0x2066 && c <= 0x206F) ||
		(c >= 0xFFF9 && c <= 0xFFFB) || c == 0x110BD || c == 0x110CD ||
		(c >= 0x13430 && c <= 0x1343F) || (c >= 0x1BCA0 && c <= 0x1BCA3) ||
		(c >= 0x1D173 && c <= 0x1D17A) || c == 0xE0001 || (c >= 0xE0020 && c <= 0xE007F);
}

/* Says whether a Unicode code point is whitespace, a control or a format character. */
static bool
IsForbiddenCodePoint(pg_wchar c)
{
	if (IsControl(c) || IsFormat(c))
		return true;
	switch (c)
	{
		case ' ':
		case 0x00A0:
		case 0x1680:
		case 0x2028:
		case 0x2029:
		case 0x202F:
		case 0x205F:
		case 0x3000:
		case 0xFEFF:
			return true;
		default:
			return c >= 0x2000 && c <= 0x200A;
	}
}

/*
 * Returns a printable copy of a value for messages: shortened to 64 bytes,
 * with ASCII control characters written as \xNN so that no message breaks
 * a line or hides a character.
 */
static char *
ShowValue(const char *s, int len)
{
	StringInfoData buf;
	int			shown = len;

	if (len > 64)
		shown = pg_mbcliplen(s, len, 64);
	initStringInfo(&buf);
	for (int i = 0; i < shown; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c < 0x20 || c == 0x7F)
			appendStringInfo(&buf, "\\x%02X", c);
		else
			appendStringInfoChar(&buf, (char) c);
	}
	if (shown < len)
		appendStringInfoString(&buf, "...");
	return buf.data;
}

/* Returns the word that starts at "start", for messages. */
static char *
ShowWord(const char *s, int len, int start)
{
	const char *dot = memchr(s + start, '.', len - start);

	return ShowValue(s + start, dot ? (int) (dot - (s + start)) : len - start);
}

/*
 * Splits and checks a topic (is_pattern false) or pattern (true). On success
 * fills "out" when given and returns true; otherwise sets failure->detail.
 */
static bool
ParseWords(const char *s, int len, bool is_pattern, EbPattern *out,
		   ParseFailure *failure)
{
	bool		utf8 = (GetDatabaseEncoding() == PG_UTF8);
	int			nwords = 0;
	int			pos = 0;

	if (len == 0)
	{
		failure->detail = psprintf("A %s must have at least one word.",
								   is_pattern ? "pattern" : "topic");
		return false;
	}
	if (len > EB_TOPIC_MAX_BYTES)
	{
		failure->detail = psprintf("It is %d bytes long; the limit is %d bytes.",
								   len, EB_TOPIC_MAX_BYTES);
		return false;
	}
	if (out)
	{
		memcpy(out->text, s, len);
		out->text[len] = '\0';
		out->has_hash = false;
	}

	while (pos <= len)
	{
		int			start = pos;
		bool		has_wild = false;
		bool		has_other = false;
		EbWordKind	kind = EB_WORD_LITERAL;

		while (pos < len && s[pos] != '.')
		{
			unsigned char c = (unsigned char) s[pos];
			int			clen = 1;
			pg_wchar	cp = c;

			if (c >= 0x80 && utf8)
			{
				clen = pg_utf_mblen((const unsigned char *) s + pos);
				if (pos + clen > len)
					clen = len - pos;
				cp = utf8_to_unicode((const unsigned char *) s + pos);
			}
			if (c == '*' || c == '#')
			{
				if (!is_pattern)
				{
					failure->detail = psprintf("Word %d contains the wildcard \"%c\"; wildcards belong in patterns, not in topics.",
											   nwords + 1, c);
					return false;
				}
				if (has_wild || has_other)
				{
					failure->detail = psprintf("Word %d \"%s\" mixes \"%c\" with other characters; \"*\" and \"#\" must stand alone as a whole word.",
											   nwords + 1, ShowWord(s, len, start), c);
					return false;
				}
				has_wild = true;
				kind = (c == '*') ? EB_WORD_STAR : EB_WORD_HASH;
			}
			else if ((c < 0x80 || utf8) && IsForbiddenCodePoint(cp))
			{
				failure->detail = psprintf("Word %d contains the %s character U+%04X at byte %d of the %s.",
										   nwords + 1, IsControl(cp) ? "control" : IsFormat(cp) ? "invisible format" : "whitespace",
										   (unsigned int) cp, pos + 1,
										   is_pattern ? "pattern" : "topic");
				return false;
			}
			else
			{
				if (has_wild)
				{
					failure->detail = psprintf("Word %d \"%s\" mixes \"%c\" with other characters; \"*\" and \"#\" must stand alone as a whole word.",
											   nwords + 1, ShowWord(s, len, start),
											   kind == EB_WORD_STAR ? '*' : '#');
					return false;
				}
				has_other = true;
			}
			pos += clen;
		}

		if (pos == start)
		{
			failure->detail = psprintf("Word %d is empty: a %s cannot start or end with \".\" or contain \"..\".",
									   nwords + 1, is_pattern ? "pattern" : "topic");
			return false;
		}
		if (nwords == EB_TOPIC_MAX_WORDS)
		{
			failure->detail = psprintf("It has more than %d words.", EB_TOPIC_MAX_WORDS);
			return false;
		}
		if (out)
		{
			EbWord	   *w = &out->words[nwords];

			w->kind = kind;
			w->str = out->text + start;
			w->len = pos - start;
			if (kind == EB_WORD_HASH)
				out->has_hash = true;
		}
		nwords++;
		pos++;					/* skip the "." (or step past the end) */
	}

	if (out)
		out->nwords = nwords;
	return true;
}

/* Raises 22023 for an invalid topic or pattern. */
static void
ReportInvalid(const char *s, int len, bool is_pattern, ParseFailure *failure)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid %s \"%s\"", is_pattern ? "pattern" : "topic",
					ShowValue(s, len)),
			 errdetail_internal("%s", failure->detail),
			 errhint("%s", is_pattern ? PATTERN_HINT : TOPIC_HINT)));
}

/* Raises 22023 unless the text is a valid topic. */
void
EbCheckTopic(const char *topic, int len)
{
	ParseFailure failure;

	if (!ParseWords(topic, len, false, NULL, &failure))
		ReportInvalid(topic, len, false, &failure);
}

/* Parses a pattern into "out", raising 22023 if it is invalid. */
void
EbCompilePattern(const char *pattern, int len, EbPattern *out)
{
	ParseFailure failure;

	if (!ParseWords(pattern, len, true, out, &failure))
		ReportInvalid(pattern, len, true, &failure);
}

/* Adds to "states" every state reachable by letting "#" words match nothing. */
static inline uint64
HashClosure(const EbPattern *p, uint64 states)
{
	for (int i = 0; i < p->nwords; i++)
		if ((states & (UINT64CONST(1) << i)) && p->words[i].kind == EB_WORD_HASH)
			states |= UINT64CONST(1) << (i + 1);
	return states;
}

/* Says whether a pattern word matches one topic word. */
static inline bool
WordMatches(const EbWord *w, const char *word, int len)
{
	return w->kind != EB_WORD_LITERAL ||
		(w->len == len && memcmp(w->str, word, len) == 0);
}

/*
 * Says whether a valid topic matches a compiled pattern. The topic is not
 * checked here; callers check user input with EbCheckTopic first.
 */
bool
EbPatternMatches(const EbPattern *p, const char *topic, int len)
{
	uint64		states;
	int			pos = 0;

	if (!p->has_hash)
	{
		/* Word by word: "*" and literals consume exactly one word each. */
		for (int i = 0; i < p->nwords; i++)
		{
			const char *dot;
			int			wlen;

			if (pos > len)
				return false;
			dot = memchr(topic + pos, '.', len - pos);
			wlen = dot ? (int) (dot - (topic + pos)) : len - pos;
			if (!WordMatches(&p->words[i], topic + pos, wlen))
				return false;
			pos += wlen + 1;
		}
		return pos == len + 1;
	}

	states = HashClosure(p, UINT64CONST(1));
	while (pos <= len)
	{
		const char *dot = memchr(topic + pos, '.', len - pos);
		int			wlen = dot ? (int) (dot - (topic + pos)) : len - pos;
		uint64		next = 0;

		for (int i = 0; i < p->nwords; i++)
		{
			if (!(states & (UINT64CONST(1) << i)))
				continue;
			if (p->words[i].kind == EB_WORD_HASH)
				next |= UINT64CONST(1) << i;
			else if (WordMatches(&p->words[i], topic + pos, wlen))
				next |= UINT64CONST(1) << (i + 1);
		}
		states = HashClosure(p, next);
		if (states == 0)
			return false;
		pos += wlen + 1;
	}
	return (states & (UINT64CONST(1) << p->nwords)) != 0;
}

/* Returns the compiled pattern for "pattern", cached in the call's fn_extra. */
static const EbPattern *
CachedPattern(FunctionCallInfo fcinfo, text *pattern)
{
	const char *s = VARDATA_ANY(pattern);
	int			len = VARSIZE_ANY_EXHDR(pattern);
	EbPattern  *p = (EbPattern *) fcinfo->flinfo->fn_extra;

	if (p == NULL)
	{
		p = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(EbPattern));
		p->nwords = -1;
		fcinfo->flinfo->fn_extra = p;
	}
	if (p->nwords < 0 || strlen(p->text) != len || memcmp(p->text, s, len) != 0)
	{
		p->nwords = -1;			/* stays invalid if compiling fails */
		EbCompilePattern(s, len, p);
	}
	return p;
}

PG_FUNCTION_INFO_V1(eventbus_topic_matches);

/* SQL eventbus.topic_matches(topic, pattern): does the topic match? */
Datum
eventbus_topic_matches(PG_FUNCTION_ARGS)
{
	text	   *topic = PG_GETARG_TEXT_PP(0);
	text	   *pattern = PG_GETARG_TEXT_PP(1);
	const EbPattern *p;

	EbCheckTopic(VARDATA_ANY(topic), VARSIZE_ANY_EXHDR(topic));
	p = CachedPattern(fcinfo, pattern);
	PG_RETURN_BOOL(EbPatternMatches(p, VARDATA_ANY(topic), VARSIZE_ANY_EXHDR(topic)));
}

PG_FUNCTION_INFO_V1(eventbus_is_valid_topic);

/* SQL eventbus.is_valid_topic(topic): true for a valid topic, never raises. */
Datum
eventbus_is_valid_topic(PG_FUNCTION_ARGS)
{
	text	   *topic = PG_GETARG_TEXT_PP(0);
	ParseFailure failure;

	PG_RETURN_BOOL(ParseWords(VARDATA_ANY(topic), VARSIZE_ANY_EXHDR(topic),
							  false, NULL, &failure));
}

PG_FUNCTION_INFO_V1(eventbus_is_valid_pattern);

/* SQL eventbus.is_valid_pattern(pattern): true for a valid pattern, never raises. */
Datum
eventbus_is_valid_pattern(PG_FUNCTION_ARGS)
{
	text	   *pattern = PG_GETARG_TEXT_PP(0);
	ParseFailure failure;

	PG_RETURN_BOOL(ParseWords(VARDATA_ANY(pattern), VARSIZE_ANY_EXHDR(pattern),
							  true, NULL, &failure));
}
