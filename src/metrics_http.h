/*-------------------------------------------------------------------------
 *
 * metrics_http.h
 *	  The Prometheus HTTP endpoint (metrics_http.c), a background worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_METRICS_HTTP_H
#define EB_METRICS_HTTP_H

#include "postgres.h"

extern pid_t EbMetricsWorkerIn(Oid dboid);
extern void EbMetricsHttpInit(void);

#endif							/* EB_METRICS_HTTP_H */
