/*-------------------------------------------------------------------------
 *
 * pgstubs.h
 *	  What the fuzz harnesses see of test/fuzz/pgstubs.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_PGSTUBS_H
#define EB_PGSTUBS_H

/* The last ereport(): level, SQLSTATE, texts (freed by EbFuzzResetMemory). */
typedef struct EbFuzzError
{
	int			elevel;
	int			sqlerrcode;
	const char *message;
	const char *detail;
	const char *hint;
	const char *filename;
	int			lineno;
} EbFuzzError;

extern EbFuzzError EbFuzzLastError;

/* What GetDatabaseEncoding() returns (PG_UTF8 unless the harness says). */
extern int	EbFuzzDatabaseEncoding;

/* Frees every palloc'd chunk. */
extern void EbFuzzResetMemory(void);

/* Number of palloc'd chunks not yet freed. */
extern int	EbFuzzLiveChunks(void);

#endif							/* EB_PGSTUBS_H */
