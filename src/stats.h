/*-------------------------------------------------------------------------
 *
 * stats.h
 *	  Counters and latency histograms in shared memory (stats.c), counted
 *	  at commit by publish and the consuming functions.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_STATS_H
#define EB_STATS_H

#include "postgres.h"

/* A subscription's counters, in the argument order of eventbus._stats_sub. */
typedef enum EbSubCounter
{
	EB_SUB_READ,				/* taken from the log (passed the filter) */
	EB_SUB_DELIVERED,			/* handed out by poll, any attempt */
	EB_SUB_ACKED,
	EB_SUB_NACKED,
	EB_SUB_RETRIED,				/* handed out again (attempt > 1) */
	EB_SUB_DEAD,
	EB_SUB_EXPIRED,
	EB_SUB_REDRIVEN,
	EB_SUB_DISCARDED,			/* dead letters purged */
	EB_SUB_NCOUNTERS
} EbSubCounter;

/* A topic's counters (the first two slots). */
#define EB_TOPIC_PUBLISHED	0
#define EB_TOPIC_BYTES		1

/* Latency histograms of a subscription. */
typedef enum EbHist
{
	EB_HIST_DELIVERY,			/* deliverable -> first handed out */
	EB_HIST_ACK,				/* leased -> acked */
	EB_NHISTS
} EbHist;

#define EB_HIST_BUCKETS		16	/* 1 ms ... 60 s, +Inf */

extern int	eb_stats_max;
extern void EbStatsCountPublish(int32 topic_id, int64 bytes);
extern void EbStatsCountSub(int32 sub_id, EbSubCounter counter, int64 n);
extern void EbStatsObserve(int32 sub_id, EbHist hist, double seconds);
extern void EbStatsObserveN(int32 sub_id, EbHist hist, double seconds, int64 n);

/* A histogram kept by a caller, added to the stats once (many events). */
typedef struct EbHistAcc
{
	int64		n[EB_HIST_BUCKETS];
	double		sum;
	bool		any;
} EbHistAcc;

extern void EbHistAdd(EbHistAcc *acc, double seconds);
extern void EbStatsObserveAcc(int32 sub_id, EbHist hist, const EbHistAcc *acc);
extern void EbStatsPolled(int32 sub_id);
extern void EbStatsForgetDatabase(Oid dboid);
extern void EbStatsInit(void);

#endif							/* EB_STATS_H */
