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
	MarkGUCPrefixReserved("eventbus");

	EbTopicDictInit();
	EbEventLogInit();
	EbOriginInit();
}
