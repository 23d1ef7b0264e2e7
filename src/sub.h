/*-------------------------------------------------------------------------
 *
 * sub.h
 *	  A subscription as the consuming code sees it (sub.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_SUB_H
#define EB_SUB_H

#include "postgres.h"

#include "eventbus.h"
#include "access.h"
#include "executor/spi.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

/* A subscription's options, loaded once per call. */
typedef struct EbSub
{
	int32		id;
	char	   *name;
	int			npatterns;
	EbPattern  *patterns;
	int32		max_attempts;
	int64		backoff_initial;	/* microseconds */
	int64		backoff_max;	/* microseconds */
	Interval	lease;
	bool		ordered;
	bool		has_filter;
	Datum		filter;			/* jsonpath */
	int64		max_backlog;	/* 0: none */
	bool		drop_oldest;
	bool		paused;
	bool		relay;			/* a relay's: only its relay process consumes it */
	EbRights	rights;			/* owner, consumers, managers */
	HTAB	   *topics;			/* topic id -> matches, filled as met */
} EbSub;

extern EbSub *EbSubFind(const char *name);
extern EbSub *EbSubByName(const char *name);
extern void EbRightsFromArrays(EbRights *rights, Oid owner, Datum consumers, Datum managers);
extern EbSub *EbSubById(int32 id);
extern bool EbSubMatchesTopic(EbSub *sub, int32 topic_id);
extern int64 EbBackoff(const EbSub *sub, int attempt);
extern bool EbSubPassesFilter(EbSub *sub, Datum payload);
extern SPIPlanPtr EbKeepPlan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types);

#endif							/* EB_SUB_H */
