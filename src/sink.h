/*-------------------------------------------------------------------------
 *
 * sink.h
 *	  What a relay process (relay.c) hands a sink (kafka.c), and how.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_SINK_H
#define EB_SINK_H

#include "postgres.h"

#include "nodes/pg_list.h"
#include "utils/jsonb.h"

/* What became of a message. */
typedef enum EbMsgStatus
{
	EB_MSG_PENDING,				/* sent, no report yet */
	EB_MSG_DONE,				/* the sink acknowledged it */
	EB_MSG_RETRY,				/* failed for now: send again later */
	EB_MSG_DEAD					/* refused for good: a dead letter */
} EbMsgStatus;

#define EB_MSG_ERROR_LEN 256

/* One event as a message to a sink. */
typedef struct EbMsg
{
	int64		event_id;
	const char *ce_id;			/* its CloudEvents id */
	const char *topic;			/* its topic */
	const char *dest;			/* Kafka topic, URL; NULL: none could be made (error says why) */
	const char *key;			/* NULL: none */
	const char *payload;
	int			payload_len;
	int			nheaders;
	const char **hnames;
	const char **hvalues;
	const char *ce_json;		/* structured mode (sinks that ask for it): the CloudEvent as JSON */
	/* Set by the sink, from its reports (possibly in a callback). */
	EbMsgStatus status;
	char		error[EB_MSG_ERROR_LEN];
	int			retry_after_ms;	/* EB_MSG_RETRY: not before this (0: the relay's backoff) */
	bool		started;		/* the sink's: handed to its client */
} EbMsg;

/* A property for the sink's client, from the server, user mapping or relay. */
typedef struct EbSinkProp
{
	const char *name;
	const char *value;
} EbSinkProp;

/* Most properties a relay's client gets from its server, user mapping and options. */
#define EB_MAX_SINK_PROPS 256

/* A sink's client, opened by a relay process. */
typedef struct EbSink EbSink;

/*
 * What a relay process calls on its sink, in its main thread only:
 *	open	 a client from the properties (later ones win); raises an error
 *	dest	 where a message of the event topic goes, from the relay's topic
 *			 (template); NULL with the reason when it goes nowhere
 *	send	 starts sending the messages whose status is EB_MSG_PENDING, in
 *			 order; keeps them until each has an outcome
 *	serve	 waits up to timeout_ms for outcomes; returns how many messages
 *			 still have none
 *	broken	 whether the client cannot go on (open a new one); its last error
 *	close	 waits up to flush_ms for outcomes, drops the rest (from then on
 *			 no outcome reaches a message), frees the client
 */
typedef struct EbSinkOps
{
	const char *name;			/* the sink of create_relay: "kafka", "http" */
	const char *ce_prefix;		/* of the CloudEvents attributes' headers */
	bool		keeps_refusals;	/* a refusal sticks to the client: a new one after a dead letter */
	EbSink	   *(*open) (const char *relay, EbSinkProp *props, int nprops);
	char	   *(*dest) (EbSink *s, const char *template, const char *topic, char *why, int len);
	bool		(*structured) (EbSink *s);	/* wants EbMsg.ce_json */
	void		(*send) (EbSink *s, EbMsg *msgs, int n);
	int			(*serve) (EbSink *s, int timeout_ms);
	bool		(*broken) (EbSink *s, char *error, int len);
	void		(*close) (EbSink *s, int flush_ms);
} EbSinkOps;

/* A JSON object's pairs as properties (relay options, event headers); in kafka.c. */
extern int	EbSinkJsonProps(Jsonb *options, EbSinkProp *props, int n, int max, bool skip_own);

/* kafka.c */
extern const EbSinkOps EbKafkaSink;
extern bool EbKafkaIsRelayOption(const char *name);
extern bool EbKafkaValidTopic(const char *topic, char *why, int len);
extern char *EbKafkaTopicFor(const char *template, const char *topic, char *why, int len);

/* webhook.c */
extern const EbSinkOps EbHttpSink;

#endif							/* EB_SINK_H */
