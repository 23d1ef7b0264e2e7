/*-------------------------------------------------------------------------
 *
 * context.h
 *	  The backend's current context (context.c): the event being handled,
 *	  whose ids and trace the events published meanwhile inherit, and the
 *	  lookup of one stored event by id that set_context and to_cloudevent
 *	  share.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_CONTEXT_H
#define EB_CONTEXT_H

#include "postgres.h"

#include "utils/timestamp.h"

/* One stored event, as eventbus.events shows it (palloc'd copies). */
typedef struct EbStoredEvent
{
	int64		id;
	const char *topic;
	text	   *key;			/* NULL: none */
	Datum		payload;		/* jsonb */
	Datum		headers;		/* jsonb; 0 when headers_null */
	bool		headers_null;
	TimestampTz published_at;
} EbStoredEvent;

/* Whether a context is set: the one check publish makes (hot path). */
extern bool EbContextActive;

extern void EbFetchVisibleEvent(int64 event_id, EbStoredEvent *ev);
extern void EbContextEnter(int64 event_id, Datum headers, bool headers_null);
extern void EbContextEnterEvent(Datum event);
extern void EbContextLeave(void);
extern void EbContextApply(Datum *headers, bool *headers_null);
extern const char *EbJsonbGetString(Datum headers, bool headers_null, const char *name);
extern void EbContextInit(void);

#endif							/* EB_CONTEXT_H */
