/*-------------------------------------------------------------------------
 *
 * webhook.h
 *	  The HTTP sink's settings, shared by its client (webhook.c) and the
 *	  checks of its options (webhook_options.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENTBUS_WEBHOOK_H
#define EVENTBUS_WEBHOOK_H

#include "nodes/pg_list.h"

#define HTTP_MAX_SECRETS	2

/* The settings of a client: server options, user mapping, relay options. */
typedef struct HttpConf
{
	char	   *url;
	int			timeout_ms;
	int			concurrency;
	char	   *mode;			/* binary, structured, batch */
	int			batch_size;
	List	   *headers;		/* "Name: value" */
	int			nsecrets;
	uint8	   *secrets[HTTP_MAX_SECRETS];
	int			secret_len[HTTP_MAX_SECRETS];
	char	   *ca_file;
	bool		verify;
	char	   *client_cert;
	char	   *client_key;
} HttpConf;

/* Checks option name; with c, also records it there (where: NULL for a client's). */
extern void EbHttpSetOption(HttpConf *c, const char *name, const char *value, const char *where);
extern bool EbHttpIsToken(const char *s);
extern bool EbHttpReservedHeader(const char *name);
extern bool EbHttpHasNewline(const char *s);

#endif							/* EVENTBUS_WEBHOOK_H */
