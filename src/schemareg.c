/*-------------------------------------------------------------------------
 *
 * schemareg.c
 *	  Registered schemas: lookup by URI (for $ref), and the check of
 *	  payloads at publish against the schemas whose pattern matches.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "jsonschema.h"

/* Finds a registered schema document by URI; NULL if none (stub for now). */
Jsonb *
EbSchemaLookupUri(const char *uri, void *arg)
{
	return NULL;
}
