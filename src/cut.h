/*-------------------------------------------------------------------------
 *
 * cut.h
 *	  Cutting a subscription's stream into batches (cut.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_CUT_H
#define EB_CUT_H

#include "postgres.h"

#include "sub.h"
#include "window.h"

/* Most events one batch holds (its ids array stays small, stored inline). */
#define EB_BATCH_MAX		200

extern int64 EbCut(EbSub *sub, EbLog *log, int batch_size, int64 max_events, bool *caught_up);

#endif							/* EB_CUT_H */
