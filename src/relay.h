/*-------------------------------------------------------------------------
 *
 * relay.h
 *	  Relay processes (relay.c), run by the database's worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_RELAY_H
#define EB_RELAY_H

#include "postgres.h"

extern void EbRelayInit(void);

/* relaystatus.c */
extern void EbRelayStatusInit(void);
extern void EbRelayStatusClaim(int32 sub_id);
extern void EbRelayStatusSet(const char *state, const char *error);
extern void EbRelayStatusCount(int produced, int resent);

#endif							/* EB_RELAY_H */
