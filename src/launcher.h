/*-------------------------------------------------------------------------
 *
 * launcher.h
 *	  The launcher and the slots of the per-database workers (launcher.c):
 *	  what ordinary backends tell the workers, and what a worker reads and
 *	  records in its own slot (worker.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_LAUNCHER_H
#define EB_LAUNCHER_H

#include "postgres.h"

#include "utils/timestamp.h"

/* Subscriptions a database remembers as kicked between two ticks. */
#define EB_MAX_KICKS		64

/* What the launcher knows of a database's worker. */
typedef enum EbDbState
{
	EB_DB_FREE = 0,				/* slot unused */
	EB_DB_NEW,					/* not probed yet: start a worker */
	EB_DB_STARTING,				/* worker registered, not yet running */
	EB_DB_RUNNING,				/* worker running */
	EB_DB_RESTART,				/* worker died: start again at restart_at */
	EB_DB_ABSENT,				/* no extension in it: no worker */
	EB_DB_STOPPED				/* asked to stop (DROP DATABASE ...) */
} EbDbState;

/* Ordinary backends, at commit (wake.c). */
extern void EbWorkerKick(const int32 *sub_ids, int nsubs, bool kick_all);

/* Pollers: ask the worker to cut batches now, and wait for it. */
extern bool EbWorkerRunning(void);
extern uint64 EbWorkerRequestCut(void);
extern bool EbWorkerCutDone(uint64 seq);

/* A worker, about its own slot (worker.c). */
extern bool EbSlotClaim(Oid dboid);
extern void EbSlotSetState(EbDbState state);
extern bool EbSlotTakeKicks(int32 *kicks, int *nkicks);
extern uint64 EbSlotCutRequested(void);
extern void EbSlotSetCutDone(uint64 seq);
extern void EbSlotCountTick(int notifications, TimestampTz at);
extern void EbSlotCountRound(double seconds);
extern void EbCountHandlerCalls(Oid dboid, int calls);
extern void EbSlotSetError(const char *message);
extern void EbSlotSetSigterm(void);

extern void EbLauncherInit(void);

#endif							/* EB_LAUNCHER_H */
