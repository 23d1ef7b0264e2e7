/*-------------------------------------------------------------------------
 *
 * consume.h
 *	  What poll (poll.c) and ack, nack, extend_lease (ack.c) share
 *	  (consume.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_CONSUME_H
#define EB_CONSUME_H

#include "postgres.h"

#include "sub.h"
#include "utils/array.h"
#include "utils/timestamp.h"

/* Longest error text a delivery keeps (nack's error, a handler's message). */
#define EB_MAX_ERROR_BYTES	8192

/* Batches a backend remembers having claimed (for ack by primary key). */
#define EB_CLAIM_CACHE		1024

extern bool eb_cut_by_poll;
extern bool eb_relay_process;

extern int	EbCompareIds(const void *a, const void *b);
extern int64 *EbSortedIds(ArrayType *arr, int *count);
extern bool EbHasId(const int64 *ids, int n, int64 id);
extern void EbCheckLease(const char *what, Interval *lease);
extern TimestampTz EbAddInterval(TimestampTz t, Interval *iv);
extern Datum EbIdArray(const int64 *ids, int n);
extern void EbNewSnapshot(bool pop);
extern char *EbClipError(const char *error);
extern EbSub *EbConsumeBegin(const char *name, EbUserSave *save);
extern void EbConsumeEnd(const EbUserSave *save);

extern void EbRememberClaim(int32 sub_id, int64 batch_id, int64 token);
extern int	EbRecentClaims(int32 sub_id, bool has_token, int64 token, int64 *batch_ids, int max);
extern bool EbClaimsComplete(int64 token);

/* ack.c */
extern int	EbAckDeliveries(EbSub *sub, const int64 *ids, int nids, bool has_token, int64 token);
extern int	EbAckBatches(EbSub *sub, const int64 *ids, int nids, bool has_token, int64 token);

#endif							/* EB_CONSUME_H */
