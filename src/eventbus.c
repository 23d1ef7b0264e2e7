/*-------------------------------------------------------------------------
 *
 * eventbus.c
 *	  Module entry point: settings and the registration of each subsystem.
 *	  It holds no logic of its own; each concern lives in its own file.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"

#include <limits.h>

#include "utils/guc.h"
#include "utils/memutils.h"

PG_MODULE_MAGIC;

/* eventbus.max_payload_size, in bytes */
int			eb_max_payload_size = 1024 * 1024;

/* Read by maintenance (sql/60_workers.sql) through current_setting(). */
static int	eb_retention = 0;	/* s */
static int	eb_chunk_interval = 600;	/* s */
static int	eb_chunk_size = 128 * 1024; /* kB */

void		_PG_init(void);

/* Defines the settings and registers every subsystem's callbacks. */
void
_PG_init(void)
{
	DefineCustomIntVariable("eventbus.max_payload_size",
							"Largest event accepted by publish (payload, headers and key together).",
							"Valid range: 1kB to 1GB. Publishing a larger event fails with SQLSTATE 54000.",
							&eb_max_payload_size,
							1024 * 1024,
							1024,
							MaxAllocSize,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomIntVariable("eventbus.backlog_check_interval",
							"How old a subscription's counted backlog may be when publish compares it with max_backlog.",
							"0 counts on every publish. Only subscriptions with max_backlog and on_overflow 'reject' are counted.",
							&eb_backlog_check_interval,
							1000,
							0,
							3600 * 1000,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("eventbus.tick_interval",
							"Longest time the background worker sleeps between two ticks when nothing wakes it.",
							"Publishing commits wake it at once; this bounds how late it notices anything else.",
							&eb_tick_interval,
							1000,
							10,
							60 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("eventbus.tick_min_interval",
							"Shortest time between two ticks of the background worker.",
							"Commits within it are taken by one tick: fewer ticks under load, a little more notification latency.",
							&eb_tick_min_interval,
							2,
							0,
							1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("eventbus.maintenance_interval",
							"Time between two rounds of maintenance (chunk rotation and reclaim) by the background worker.",
							NULL,
							&eb_maintenance_interval,
							60,
							1,
							24 * 3600,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("eventbus.worker_restart_delay",
							"Time before the launcher starts a worker again after it failed or was terminated.",
							NULL,
							&eb_worker_restart_delay,
							5,
							0,
							3600,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("eventbus.handler_timeout",
							"Longest time one call of a subscription's handler may take; 0 means no limit.",
							"A call that takes longer is cancelled and the event nacked.",
							&eb_handler_timeout,
							30000,
							0,
							INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("eventbus.handler_batch",
							"Most events the worker hands to one handler subscription before it turns to the others.",
							NULL,
							&eb_handler_batch,
							100,
							1,
							100000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("eventbus.retention",
							"How long events are kept at least, even when every subscription is done with them.",
							"0 reclaims a chunk as soon as no subscription needs its events.",
							&eb_retention,
							0,
							0,
							INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("eventbus.chunk_interval",
							"Age at which maintenance moves publishing on to the next chunk of the log.",
							NULL,
							&eb_chunk_interval,
							600,
							1,
							INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("eventbus.chunk_size",
							"Size at which maintenance moves publishing on to the next chunk of the log.",
							NULL,
							&eb_chunk_size,
							128 * 1024,
							64,
							INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	EbTopicDictInit();
	EbEventLogInit();
	EbOriginInit();
	EbBacklogInit();
	EbSchemaRegInit();
	EbWakeInit();
	EbStatsInit();
	EbMetricsHttpInit();
	EbWorkerInit();
	/* Last: the subsystems above define settings of their own. */
	MarkGUCPrefixReserved("eventbus");
}
