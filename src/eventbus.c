/*-------------------------------------------------------------------------
 *
 * eventbus.c
 *	  Module entry point: settings and the registration of each subsystem.
 *	  It holds no logic of its own; each concern lives in its own file.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"

#include "utils/guc.h"
#include "utils/memutils.h"

PG_MODULE_MAGIC;

/* eventbus.max_payload_size, in bytes */
int			eb_max_payload_size = 1024 * 1024;

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
	MarkGUCPrefixReserved("eventbus");

	EbTopicDictInit();
	EbEventLogInit();
	EbOriginInit();
	EbBacklogInit();
	EbWakeInit();
}
