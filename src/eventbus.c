/*-------------------------------------------------------------------------
 *
 * eventbus.c
 *	  Module entry point: calls each subsystem's Init, which defines its
 *	  own settings and registers its hooks and callbacks. It holds no
 *	  logic of its own; each concern lives in its own file.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "context.h"
#include "handler.h"
#include "subproc.h"
#include "launcher.h"
#include "metrics_http.h"
#include "notify.h"
#include "relay.h"
#include "stats.h"
#include "worker.h"

#include "utils/guc.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* Registers every subsystem. */
void
_PG_init(void)
{
	EbPublishInit();
	EbConsumeInit();
	EbTopicDictInit();
	EbEventLogInit();
	EbOriginInit();
	EbBacklogInit();
	EbSchemaRegInit();
	EbAclInit();
	EbWakeInit();
	EbStatsInit();
	EbNotifyInit();
	EbMetricsHttpInit();
	EbLauncherInit();
	EbWorkerInit();
	EbProcsInit();
	EbHandlerInit();
	EbRelayInit();
	EbContextInit();
	/* Last: the subsystems above define settings of their own. */
	MarkGUCPrefixReserved("eventbus");
}
