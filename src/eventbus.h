/*-------------------------------------------------------------------------
 *
 * eventbus.h
 *	  Shared declarations of the eventbus extension. Every non-static symbol
 *	  of src/ is declared here, except the JSON Schema validator's
 *	  (src/jsonschema.h, and src/jsonschema/jsonschema_int.h within it).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENTBUS_H
#define EVENTBUS_H

#include "postgres.h"

#include <signal.h>

#include "fmgr.h"
#include "nodes/pg_list.h"
#include "storage/itemptr.h"
#include "storage/lockdefs.h"
#include "utils/relcache.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

/* Grammar limits of a topic (docs/topics.md). */
#define EB_TOPIC_MAX_BYTES	255
#define EB_TOPIC_MAX_WORDS	32

/* Number of chunk tables in the ring (sql/00_log.sql). */
#define EB_NUM_CHUNKS		3

/* The schema every object lives in. */
#define EB_SCHEMA			"eventbus"

/* ---- publish.c: publish and publish_batch ---- */
extern void EbPublishInit(void);
extern int64 EbPublishEvent(text *topic, Datum payload, text *key, Datum headers, bool headers_null);

/* ---- consume.c: poll, ack, nack, extend_lease ---- */
extern void EbConsumeInit(void);

/* ---- topic.c: topic and pattern grammar ---- */

/* Kinds of a pattern word. */
typedef enum EbWordKind
{
	EB_WORD_LITERAL,
	EB_WORD_STAR,				/* "*": exactly one word */
	EB_WORD_HASH				/* "#": zero or more words */
} EbWordKind;

typedef struct EbWord
{
	EbWordKind	kind;
	int			len;			/* bytes, literals only */
	const char *str;			/* points into EbPattern.text */
} EbWord;

/* A pattern parsed once, matched many times. */
typedef struct EbPattern
{
	int			nwords;
	bool		has_hash;
	EbWord		words[EB_TOPIC_MAX_WORDS];
	char		text[EB_TOPIC_MAX_BYTES + 1];
} EbPattern;

extern void EbCheckTopic(const char *topic, int len);
extern void EbCompilePattern(const char *pattern, int len, EbPattern *out);
extern bool EbPatternMatches(const EbPattern *pattern, const char *topic, int len);

/* ---- acl.c: per-topic rights ---- */
extern void EbCheckPublishAcl(const char *topic, int len);
extern bool EbMayReadTopic(const char *topic, int len);
extern void EbAclInit(void);

/* ---- topicdict.c: the topic dictionary ---- */
extern int32 EbTopicId(const char *topic, int len, int64 generation);
extern const char *EbTopicName(int32 id);
extern void EbTopicDictInit(void);

/* ---- eventlog.c: the chunked event log ---- */

/* One event, as publish hands it to the log. */
typedef struct EbEvent
{
	const char *topic;			/* not NUL-terminated */
	int			topic_len;
	int32		topic_id;		/* for the writer's chunk: EbTopicId */
	Datum		payload;		/* jsonb */
	text	   *key;			/* NULL: none */
	Datum		headers;		/* jsonb; 0 when headers_null */
	bool		headers_null;
	TimestampTz deliver_at;		/* 0 when deliver_at_null */
	bool		deliver_at_null;
	TimestampTz expires_at;		/* 0 when expires_at_null */
	bool		expires_at_null;
	char	   *rejected_by;	/* schema (pattern) it failed, dead-lettered; NULL: valid */
	char	   *schema_error;	/* then: the first failure, for last_error */
	int64		bytes;			/* payload, headers and key, for the stats */
} EbEvent;

typedef struct EbLogWriter EbLogWriter;

extern Oid	EbSchemaOid(void);
extern Oid	EbRelid(const char *relname);
extern Relation EbTableOpen(Oid relid, LOCKMODE lockmode);
extern EbLogWriter *EbLogWriterOpen(void);
extern int64 EbLogWriterGeneration(EbLogWriter *writer);
extern int64 EbLogWrite(EbLogWriter *writer, const EbEvent *event);
extern void EbLogWriterClose(EbLogWriter *writer);
extern void EbEventLogInit(void);

/* Row writes through the table AM, shared by the log and the dictionary. */
typedef struct EbRowWriter EbRowWriter;
extern EbRowWriter *EbRowWriterOpen(Oid relid, int natts);
extern void EbRowWrite(EbRowWriter *writer, Datum *values, bool *nulls);
extern void EbRowUpdate(EbRowWriter *writer, ItemPointer tid, Datum *values, bool *nulls);
extern void EbRowDelete(EbRowWriter *writer, ItemPointer tid);
extern Relation EbRowWriterRelation(EbRowWriter *writer);
extern void EbRowWriterClose(EbRowWriter *writer);

/* ---- origin.c: data restored from another cluster ---- */
extern void EbCheckOrigin(void);
extern void EbOriginInit(void);

/* ---- backlog.c: max_backlog with on_overflow 'reject' ---- */
extern void EbCheckBacklog(const char *topic, int len);
extern void EbBacklogInit(void);

/* ---- schemareg.c: registered schemas, checked at publish ---- */
extern void EbCheckSchema(const char *topic, int len, Datum payload, EbEvent *ev);
extern void EbSchemaDeadLetter(int64 event_id, const char *topic, int len, const EbEvent *ev);
extern void EbSchemaRegInit(void);
/* Finds a registered schema document by URI, for $ref: an EbSchemaResolver. */
extern Jsonb *EbSchemaLookupUri(const char *uri, void *arg);

/* ---- wake.c: waking waiting pollers ---- */
extern void EbWakeAtCommit(void);
extern void EbCutAtCommit(void);
extern uint64 EbCutEpoch(void);
extern void EbWakeSub(int32 sub_id);
extern void EbWakeDueAt(int32 sub_id, TimestampTz due);
extern void EbWakeAll(void);
extern uint64 EbWakeCount(void);
extern void EbWakeWait(uint64 seen, TimestampTz until);
extern void EbWakeInit(void);

#endif							/* EVENTBUS_H */
