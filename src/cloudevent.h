/*-------------------------------------------------------------------------
 *
 * cloudevent.h
 *	  CloudEvents 1.0 attributes of stored events (cloudevent.c): the one
 *	  mapping that eventbus.to_cloudevent (structured mode) and the Kafka
 *	  relay (binary mode, from C) share. docs/cloudevents.md has the table.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_CLOUDEVENT_H
#define EB_CLOUDEVENT_H

#include "postgres.h"

#include "utils/jsonb.h"
#include "utils/timestamp.h"

/* One attribute: its CloudEvents name and its value as text (palloc'd). */
typedef struct EbCeAttr
{
	const char *name;
	char	   *value;
} EbCeAttr;

/*
 * The CloudEvents context attributes of an event in binary mode, in this
 * order: specversion, id, source, type, time, then datacontenttype
 * ("application/json"), then partitionkey (when key != NULL),
 * subject/dataschema (when headers have ce_subject/ce_dataschema).
 * source NULL: default as to_cloudevent. Returns how many it filled (at
 * most EB_CE_MAX_ATTRS). Call it inside a transaction (the instance id is
 * read from eventbus.instance once per backend).
 */
#define EB_CE_MAX_ATTRS 10
extern int	EbCloudEventAttrs(int64 event_id, const char *topic, const char *key,
							  Datum headers, bool headers_null, TimestampTz published_at,
							  const char *source, EbCeAttr *attrs);

/* "/eventbus/<database name>", cached per backend. */
extern const char *EbCloudEventDefaultSource(void);
extern Jsonb *EbCloudEventStructured(EbCeAttr *attrs, int n, Datum payload, Datum headers,
										   bool headers_null);

#endif							/* EB_CLOUDEVENT_H */
