/*-------------------------------------------------------------------------
 *
 * batch.h
 *	  Batch rows and delivery rows (batch.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_BATCH_H
#define EB_BATCH_H

#include "postgres.h"

#include "eventbus.h"
#include "access/genam.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"
#include "window.h"

/* Columns of eventbus.batch (sql/30_subscriptions.sql), 1-based. */
#define EB_BATCH_SUB_ID		1
#define EB_BATCH_BATCH_ID	2
#define EB_BATCH_LEASED		3
#define EB_BATCH_ATTEMPT	4
#define EB_BATCH_LEASE_UNTIL 5
#define EB_BATCH_LEASED_AT	6
#define EB_BATCH_TOKEN		7
#define EB_BATCH_FIRST_TXID	8
#define EB_BATCH_FIRST_ID	9
#define EB_BATCH_LAST_TXID	10
#define EB_BATCH_LAST_ID	11
#define EB_BATCH_IDS		12
#define EB_BATCH_DONE		13
#define EB_BATCH_NDONE		14
#define EB_BATCH_CUT_AT		15
#define EB_BATCH_NATTS		15

/* A batch row, taken apart. */
typedef struct EbBatch
{
	ItemPointerData tid;
	int32		sub_id;
	int64		batch_id;
	bool		leased;
	int32		attempt;
	TimestampTz lease_until;	/* 0: none */
	TimestampTz leased_at;		/* 0: none */
	bool		has_token;
	int64		token;
	EbPos		first;			/* its events lie between these places of the log */
	EbPos		last;
	int			n;
	int64	   *ids;			/* ascending */
	uint8	   *done;			/* n bits */
	int			ndone;
	TimestampTz cut_at;
} EbBatch;

extern void EbBatchRead(TupleTableSlot *slot, EbBatch *b);
extern void EbBatchWrite(EbRowWriter *w, const EbBatch *b, bool update);
extern bool EbBatchIsDone(const EbBatch *b, int i);
extern void EbBatchSetDone(EbBatch *b, int i);
extern int	EbBatchFind(const EbBatch *b, int64 id);

/* eventbus.batch and its primary key, opened for changes. */
typedef struct EbBatchRel
{
	EbRowWriter *writer;
	Relation	rel;
	Relation	index;
	TupleTableSlot *slot;		/* the scan's */
	TupleTableSlot *locked;		/* the locked version's */
} EbBatchRel;

extern void EbBatchOpen(EbBatchRel *br);
extern void EbBatchClose(EbBatchRel *br);
extern IndexScanDesc EbBatchScan(EbBatchRel *br, int32 sub_id);
extern bool EbBatchLock(EbBatchRel *br, ItemPointer tid, bool wait);
extern int64 *EbBatchOpenIds(const EbBatch *b, int *n);
extern uint64 *EbBatchTxids(EbLog *log, const EbBatch *b, const int64 *ids, int n);

/* Columns of eventbus.delivery, 1-based. */
#define EB_DLV_SUB_ID		1
#define EB_DLV_EVENT_ID		2
#define EB_DLV_TXID			3
#define EB_DLV_STATE		4
#define EB_DLV_ATTEMPT		5
#define EB_DLV_AVAILABLE_AT	6
#define EB_DLV_LAST_ERROR	7
#define EB_DLV_REASON		8
#define EB_DLV_DEAD_AT		9
#define EB_DLV_KEY			10
#define EB_DLV_ORD			11
#define EB_DLV_LEASED_AT	12
#define EB_DLV_TOKEN		13
#define EB_DLV_NATTS		13

/* A delivery row to write: an event that needs state of its own. */
typedef struct EbDelivery
{
	int32		sub_id;
	int64		event_id;
	uint64		txid;
	const char *state;			/* "leased", "waiting", "dead" */
	int32		attempt;
	TimestampTz available_at;
	const char *last_error;		/* NULL: none */
	const char *reason;			/* NULL: none */
	TimestampTz dead_at;		/* 0: none */
	text	   *key;			/* NULL: none */
	bool		has_ord;
	int64		ord;
} EbDelivery;

extern void EbDeliveryInsert(EbRowWriter *w, const EbDelivery *d);
extern void EbBatchSpill(EbLog *log, const EbBatch *b, const int64 *ids, int n, EbDelivery *proto);
extern int64 EbNextOrd(void);


#endif							/* EB_BATCH_H */
