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

#endif							/* EB_RELAY_H */
