/*-------------------------------------------------------------------------
 *
 * tick.h
 *	  The notifications of one tick of the database's worker (tick.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_TICK_H
#define EB_TICK_H

#include "postgres.h"

#include "utils/timestamp.h"

typedef struct EbTickResult
{
	TimestampTz tick_at;		/* when the tick looked */
	TimestampTz next_due;		/* next delivery due or batch lease end; 0: none */
	int			notified;		/* NOTIFYs queued */
} EbTickResult;

extern void EbTickNotify(TimestampTz prev_at, const int32 *kicks, int nkicks, bool kick_all,
						 const int32 *topics, int ntopics, EbTickResult *res);

#endif							/* EB_TICK_H */
