/*-------------------------------------------------------------------------
 *
 * subproc.h
 *	  Handler and relay processes, run by the database's worker (subproc.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_SUBPROC_H
#define EB_SUBPROC_H

#include "postgres.h"

/* What a handler or relay process is for (its bgw_extra). */
typedef struct EbProcArgs
{
	Oid			dboid;
	int32		sub_id;
	int32		index;			/* 0 .. concurrency - 1 (a relay: 0) */
	int32		slot;			/* its slot; -1: none */
} EbProcArgs;

extern int	eb_handler_timeout;

extern void EbProcsInit(void);
extern void EbProcsEnsure(void);
extern void EbProcsStop(void);
extern void EbProcTakeSlot(int slot);
extern void EbProcSetSlot(int slot, int64 event_id, int64 token);

#endif							/* EB_SUBPROC_H */
