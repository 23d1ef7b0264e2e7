/*-------------------------------------------------------------------------
 *
 * notify.h
 *	  Coalesced notifications (notify.c): at most one NOTIFY per
 *	  subscription until one of its consumers polls.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_NOTIFY_H
#define EB_NOTIFY_H

#include "postgres.h"

extern void EbNotifyPolled(int32 sub_id, int want);
extern bool EbNotifyRecentPoll(int32 sub_id, int ms, int *want);
extern bool EbNotifyNeeded(int32 sub_id);
extern uint64 EbNotifyCutEpoch(int32 sub_id);
extern void EbNotifySetCutEpoch(int32 sub_id, uint64 epoch);
extern void EbNotifyForgetDatabase(Oid dboid);
extern void EbNotifyPrune(const int32 *live, int nlive);
extern void EbNotifyInit(void);

#endif							/* EB_NOTIFY_H */
