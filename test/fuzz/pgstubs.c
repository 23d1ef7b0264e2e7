/*-------------------------------------------------------------------------
 *
 * pgstubs.c
 *	  Just enough of the PostgreSQL backend for src/topic.c to run outside
 *	  a server, under libFuzzer with ASan and UBSan.
 *
 * - palloc and friends: malloc'd chunks on one list, all freed by
 *	 EbFuzzResetMemory() after each input, so that ASan sees every chunk's
 *	 exact bounds and LeakSanitizer sees no leak when an ERROR skips pfree.
 * - ereport(ERROR): errfinish() siglongjmp()s to *PG_exception_stack, as
 *	 the backend does, after formatting the message (so format mistakes are
 *	 found too). The harness sets PG_exception_stack; the SQLSTATE and the
 *	 texts of the last error are in EbFuzzLastError.
 * - UTF-8 helpers (pg_utf_mblen, utf8_to_unicode, pg_mbcliplen): the same
 *	 logic as PostgreSQL 15's src/common/wchar.c and
 *	 src/backend/utils/mb/mbutils.c, compiled here with the sanitizers.
 * - The SQL entry points of topic.c (fmgr, detoasting) are never called:
 *	 their stubs abort().
 *
 * Which symbols topic.o needs: nm -u test/fuzz/build/topic.o.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "pgstubs.h"

/* ---------------------------------------------------------------- memory */

typedef struct Chunk
{
	struct Chunk *prev;
	struct Chunk *next;
	Size		size;
	Size		pad;			/* keeps the payload MAXALIGNed (16 bytes) */
} Chunk;

static Chunk ChunkList = {&ChunkList, &ChunkList, 0, 0};
static int	NChunks = 0;

/* Not a real context: topic.c only passes it back to us. */
MemoryContext CurrentMemoryContext = NULL;
MemoryContext TopMemoryContext = NULL;
MemoryContext CacheMemoryContext = NULL;

static void *
ChunkAlloc(Size size, bool zero)
{
	Chunk	   *c;

	if (!AllocSizeIsValid(size))
		elog(ERROR, "invalid memory alloc request size %zu", size);
	c = malloc(sizeof(Chunk) + size);
	if (c == NULL)
		abort();
	if (zero)
		memset(c + 1, 0, size);
	c->size = size;
	c->next = ChunkList.next;
	c->prev = &ChunkList;
	ChunkList.next->prev = c;
	ChunkList.next = c;
	NChunks++;
	return c + 1;
}

static Chunk *
ChunkOf(void *pointer)
{
	return ((Chunk *) pointer) - 1;
}

void *
palloc(Size size)
{
	return ChunkAlloc(size, false);
}

void *
palloc0(Size size)
{
	return ChunkAlloc(size, true);
}

void *
palloc_extended(Size size, int flags)
{
	return ChunkAlloc(size, (flags & MCXT_ALLOC_ZERO) != 0);
}

void *
MemoryContextAlloc(MemoryContext context, Size size)
{
	return ChunkAlloc(size, false);
}

void *
MemoryContextAllocZero(MemoryContext context, Size size)
{
	return ChunkAlloc(size, true);
}

void *
MemoryContextAllocZeroAligned(MemoryContext context, Size size)
{
	return ChunkAlloc(size, true);
}

void
pfree(void *pointer)
{
	Chunk	   *c = ChunkOf(pointer);

	c->prev->next = c->next;
	c->next->prev = c->prev;
	NChunks--;
	free(c);
}

void *
repalloc(void *pointer, Size size)
{
	Chunk	   *old = ChunkOf(pointer);
	void	   *p = ChunkAlloc(size, false);

	memcpy(p, pointer, Min(old->size, size));
	pfree(pointer);
	return p;
}

char *
pstrdup(const char *in)
{
	size_t		len = strlen(in);
	char	   *out = palloc(len + 1);

	memcpy(out, in, len + 1);
	return out;
}

void
EbFuzzResetMemory(void)
{
	while (ChunkList.next != &ChunkList)
		pfree(ChunkList.next + 1);
}

int
EbFuzzLiveChunks(void)
{
	return NChunks;
}

/* ---------------------------------------------------------------- strings */

static char *
FormatVA(const char *fmt, va_list args)
{
	va_list		copy;
	int			n;
	char	   *out;

	va_copy(copy, args);
	n = vsnprintf(NULL, 0, fmt, copy);
	va_end(copy);
	if (n < 0)
		abort();
	out = palloc(n + 1);
	vsnprintf(out, n + 1, fmt, args);
	return out;
}

char *
psprintf(const char *fmt,...)
{
	va_list		args;
	char	   *out;

	va_start(args, fmt);
	out = FormatVA(fmt, args);
	va_end(args);
	return out;
}

void
initStringInfo(StringInfo str)
{
	str->maxlen = 1024;
	str->data = palloc(str->maxlen);
	str->len = 0;
	str->data[0] = '\0';
	str->cursor = 0;
}

void
enlargeStringInfo(StringInfo str, int needed)
{
	int			newlen;

	if (needed < 0 || ((Size) needed) >= (MaxAllocSize - (Size) str->len))
		elog(ERROR, "out of memory: cannot enlarge string buffer by %d more bytes", needed);
	needed += str->len + 1;
	if (needed <= str->maxlen)
		return;
	newlen = 2 * str->maxlen;
	while (needed > newlen)
		newlen = 2 * newlen;
	str->data = repalloc(str->data, newlen);
	str->maxlen = newlen;
}

void
appendBinaryStringInfo(StringInfo str, const char *data, int datalen)
{
	enlargeStringInfo(str, datalen);
	memcpy(str->data + str->len, data, datalen);
	str->len += datalen;
	str->data[str->len] = '\0';
}

void
appendStringInfoString(StringInfo str, const char *s)
{
	appendBinaryStringInfo(str, s, strlen(s));
}

void
appendStringInfoChar(StringInfo str, char ch)
{
	enlargeStringInfo(str, 1);
	str->data[str->len++] = ch;
	str->data[str->len] = '\0';
}

void
appendStringInfo(StringInfo str, const char *fmt,...)
{
	va_list		args;
	char	   *s;

	va_start(args, fmt);
	s = FormatVA(fmt, args);
	va_end(args);
	appendStringInfoString(str, s);
	pfree(s);
}

/* ---------------------------------------------------------------- errors */

sigjmp_buf *PG_exception_stack = NULL;
ErrorContextCallback *error_context_stack = NULL;

EbFuzzError EbFuzzLastError;
static int	CurrentLevel;

bool
errstart(int elevel, const char *domain)
{
	CurrentLevel = elevel;
	memset(&EbFuzzLastError, 0, sizeof(EbFuzzLastError));
	EbFuzzLastError.elevel = elevel;
	EbFuzzLastError.sqlerrcode = ERRCODE_INTERNAL_ERROR;
	return true;
}

bool
errstart_cold(int elevel, const char *domain)
{
	return errstart(elevel, domain);
}

void
errfinish(const char *filename, int lineno, const char *funcname)
{
	EbFuzzLastError.filename = filename;
	EbFuzzLastError.lineno = lineno;
	if (CurrentLevel < ERROR)
		return;
	if (CurrentLevel > ERROR || PG_exception_stack == NULL)
	{
		fprintf(stderr, "FATAL/PANIC or ERROR outside the harness at %s:%d: %s\n",
				filename, lineno, EbFuzzLastError.message ? EbFuzzLastError.message : "");
		abort();
	}
	siglongjmp(*PG_exception_stack, 1);
}

int
errcode(int sqlerrcode)
{
	EbFuzzLastError.sqlerrcode = sqlerrcode;
	return 0;
}

#define ERRTEXT(field) \
	do { \
		va_list		args; \
		va_start(args, fmt); \
		EbFuzzLastError.field = FormatVA(fmt, args); \
		va_end(args); \
	} while (0)

int
errmsg(const char *fmt,...)
{
	ERRTEXT(message);
	return 0;
}

int
errmsg_internal(const char *fmt,...)
{
	ERRTEXT(message);
	return 0;
}

int
errdetail(const char *fmt,...)
{
	ERRTEXT(detail);
	return 0;
}

int
errdetail_internal(const char *fmt,...)
{
	ERRTEXT(detail);
	return 0;
}

int
errhint(const char *fmt,...)
{
	ERRTEXT(hint);
	return 0;
}

/* src/backend/utils/error/elog.c */
char *
unpack_sql_state(int sql_state)
{
	static char buf[12];

	for (int i = 0; i < 5; i++)
	{
		buf[i] = PGUNSIXBIT(sql_state);
		sql_state >>= 6;
	}
	buf[5] = '\0';
	return buf;
}

/* ---------------------------------------------------------------- encoding */

int			EbFuzzDatabaseEncoding = PG_UTF8;

int
GetDatabaseEncoding(void)
{
	return EbFuzzDatabaseEncoding;
}

/* src/common/wchar.c */
int
pg_utf_mblen(const unsigned char *s)
{
	int			len;

	if ((*s & 0x80) == 0)
		len = 1;
	else if ((*s & 0xe0) == 0xc0)
		len = 2;
	else if ((*s & 0xf0) == 0xe0)
		len = 3;
	else if ((*s & 0xf8) == 0xf0)
		len = 4;
	else
		len = 1;
	return len;
}

/* src/common/wchar.c */
pg_wchar
utf8_to_unicode(const unsigned char *c)
{
	if ((*c & 0x80) == 0)
		return (pg_wchar) c[0];
	else if ((*c & 0xe0) == 0xc0)
		return (pg_wchar) (((c[0] & 0x1f) << 6) |
						   (c[1] & 0x3f));
	else if ((*c & 0xf0) == 0xe0)
		return (pg_wchar) (((c[0] & 0x0f) << 12) |
						   ((c[1] & 0x3f) << 6) |
						   (c[2] & 0x3f));
	else if ((*c & 0xf8) == 0xf0)
		return (pg_wchar) (((c[0] & 0x07) << 18) |
						   ((c[1] & 0x3f) << 12) |
						   ((c[2] & 0x3f) << 6) |
						   (c[3] & 0x3f));
	else
		/* that is an invalid code on purpose */
		return 0xffffffff;
}

/* src/backend/utils/mb/mbutils.c: pg_encoding_mbcliplen() and cliplen() */
int
pg_mbcliplen(const char *mbstr, int len, int limit)
{
	int			clen = 0;
	int			l;

	if (EbFuzzDatabaseEncoding != PG_UTF8)
	{
		while (clen < len && clen < limit && mbstr[clen])
			clen++;
		return clen;
	}
	while (len > 0 && *mbstr)
	{
		l = pg_utf_mblen((const unsigned char *) mbstr);
		if ((clen + l) > limit)
			break;
		clen += l;
		if (clen == limit)
			break;
		len -= l;
		mbstr += l;
	}
	return clen;
}

/* ---------------------------------------------------------------- never called */

struct varlena *
pg_detoast_datum_packed(struct varlena *datum)
{
	abort();
}

struct varlena *
pg_detoast_datum(struct varlena *datum)
{
	abort();
}

char *
text_to_cstring(const text *t)
{
	abort();
}
