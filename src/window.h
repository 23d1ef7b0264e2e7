/*-------------------------------------------------------------------------
 *
 * window.h
 *	  Reading the event log in commit order (window.c): snapshots as
 *	  values, and the events committed between two of them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_WINDOW_H
#define EB_WINDOW_H

#include "postgres.h"

#include "executor/tuptable.h"
#include "utils/snapshot.h"

/* A pg_snapshot value taken apart: xmin, xmax and the in-progress xids. */
typedef struct EbSnap
{
	uint64		xmin;
	uint64		xmax;
	int			nxip;
	uint64	   *xip;			/* ascending */
} EbSnap;

/* A place in the log: (txid, id), the order of the log's index. */
typedef struct EbPos
{
	uint64		txid;
	int64		id;
} EbPos;

/* Columns of eventbus.event_log (sql/00_log.sql), 1-based. */
#define EB_LOG_ID			1
#define EB_LOG_TXID			2
#define EB_LOG_PUBLISHED_AT	3
#define EB_LOG_TOPIC_ID		4
#define EB_LOG_KEY			5
#define EB_LOG_PAYLOAD		6
#define EB_LOG_HEADERS		7
#define EB_LOG_DELIVER_AT	8
#define EB_LOG_EXPIRES_AT	9
#define EB_LOG_REJECTED_BY	10
#define EB_LOG_NATTS		10

extern EbSnap *EbSnapFromDatum(Datum d);
extern Datum EbSnapToDatum(const EbSnap *snap);
extern EbSnap *EbSnapCurrent(void);
extern bool EbSnapVisible(const EbSnap *snap, uint64 xid);
extern bool EbSnapBefore(const EbSnap *older, const EbSnap *newer);

/* The log's chunk tables and their (txid, id) indexes, opened together. */
typedef struct EbLog EbLog;

extern EbLog *EbLogOpen(void);
extern EbLog *EbLogOpenChunk(Oid relid);
extern void EbLogClose(EbLog *log);
extern TupleTableSlot *EbLogFetch(EbLog *log, uint64 txid, int64 id);

/* A walk over the events committed after one snapshot and by another. */
typedef struct EbWindowScan EbWindowScan;

extern EbWindowScan *EbWindowBegin(EbLog *log, const EbSnap *lo, const EbSnap *hi,
								   const EbPos *after);
extern TupleTableSlot *EbWindowNext(EbWindowScan *ws, EbPos *pos);
extern void EbWindowEnd(EbWindowScan *ws);

/* A walk over the events between two places of the log whose ids are in a set. */
typedef struct EbRangeScan EbRangeScan;

extern EbRangeScan *EbRangeBegin(EbLog *log, const EbPos *first, const EbPos *last,
								 const int64 *ids, int nids);
extern TupleTableSlot *EbRangeNext(EbRangeScan *rs, int *offset);
extern void EbRangeEnd(EbRangeScan *rs);

#endif							/* EB_WINDOW_H */
