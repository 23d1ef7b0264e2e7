/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The per-database background worker (worker.c): ticks, handlers,
 *	  maintenance. Started by the launcher through its entry point name.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_WORKER_H
#define EB_WORKER_H

#include "postgres.h"

extern void EbWorkerInit(void);

#endif							/* EB_WORKER_H */
