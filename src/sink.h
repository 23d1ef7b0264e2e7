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
	const char *dest;			/* Kafka topic; NULL: none could be made (error says why) */
	const char *key;			/* NULL: none */
	const char *payload;
	int			payload_len;
	int			nheaders;
	const char **hnames;
	const char **hvalues;
	/* Set by the sink, from its reports (possibly in a callback). */
	EbMsgStatus status;
	char		error[EB_MSG_ERROR_LEN];
} EbMsg;

/* A property for the sink's client, from the server, user mapping or relay. */
typedef struct EbSinkProp
{
	const char *name;
	const char *value;
} EbSinkProp;

/* Most properties a relay's client gets from its server, user mapping and options. */
#define EB_MAX_SINK_PROPS 256

typedef struct EbKafka EbKafka;

/* kafka.c */
extern EbKafka *EbKafkaOpen(const char *relay, EbSinkProp *props, int nprops);
extern void EbKafkaSend(EbKafka *k, EbMsg *msgs, int n);
extern int	EbKafkaServe(EbKafka *k, int timeout_ms);
extern bool EbKafkaBroken(EbKafka *k, char *error, int len);
extern void EbKafkaClose(EbKafka *k, int flush_ms);
extern bool EbKafkaIsRelayOption(const char *name);
extern bool EbKafkaValidTopic(const char *topic, char *why, int len);
extern char *EbKafkaTopicFor(const char *template, const char *topic, char *why, int len);
extern int	EbKafkaRelayProps(Jsonb *options, EbSinkProp *props, int n, int max, bool skip_own);

#endif							/* EB_SINK_H */
