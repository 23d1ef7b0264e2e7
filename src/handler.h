/*-------------------------------------------------------------------------
 *
 * handler.h
 *	  Handler subscriptions (handler.c), run by the background worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_HANDLER_H
#define EB_HANDLER_H

#include "postgres.h"

#include <signal.h>

#include "nodes/pg_list.h"

extern void EbHandlerInit(void);

#endif							/* EB_HANDLER_H */
