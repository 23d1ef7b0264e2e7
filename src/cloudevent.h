/*-------------------------------------------------------------------------
 *
 * cloudevent.h
 *	  Events as CloudEvents (cloudevent.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_CLOUDEVENT_H
#define EB_CLOUDEVENT_H

#include "postgres.h"

#include "utils/timestamp.h"

typedef struct EbCeAttr
{
	const char *name;
	char	   *value;			/* palloc'd */
} EbCeAttr;

#define EB_CE_MAX_ATTRS 10

extern int	EbCloudEventAttrs(int64 event_id, const char *topic, const char *key, Datum headers,
							  bool headers_null, TimestampTz published_at, const char *source,
							  EbCeAttr *attrs);
extern const char *EbCloudEventDefaultSource(void);

#endif							/* EB_CLOUDEVENT_H */
