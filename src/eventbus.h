/*-------------------------------------------------------------------------
 *
 * eventbus.h
 *	  Shared declarations of the eventbus extension. Every non-static symbol
 *	  of src/ is declared here.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENTBUS_H
#define EVENTBUS_H

#include "postgres.h"

#include <signal.h>

#include "fmgr.h"
#include "nodes/pg_list.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

/* Grammar limits of design §2. */
#define EB_TOPIC_MAX_BYTES	255
#define EB_TOPIC_MAX_WORDS	32

/* Number of chunk tables in the ring (sql/00_log.sql). */
#define EB_NUM_CHUNKS		3

/* The schema every object lives in. */
#define EB_SCHEMA			"eventbus"

/* ---- eventbus.c: settings ---- */
extern int	eb_max_payload_size;	/* bytes */
extern int	eb_backlog_check_interval;	/* milliseconds */

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

/* ---- topicdict.c: the topic dictionary ---- */
extern int32 EbTopicId(const char *topic, int len);
extern void EbTopicDictInit(void);

/* ---- eventlog.c: the chunked event log ---- */

/* One event, as publish hands it to the log. */
typedef struct EbEvent
{
	int32		topic_id;
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
extern EbLogWriter *EbLogWriterOpen(void);
extern int64 EbLogWrite(EbLogWriter *writer, const EbEvent *event);
extern void EbLogWriterClose(EbLogWriter *writer);
extern void EbEventLogInit(void);

/* Row writes through the table AM, shared by the log and the dictionary. */
typedef struct EbRowWriter EbRowWriter;
extern EbRowWriter *EbRowWriterOpen(Oid relid, int natts);
extern void EbRowWrite(EbRowWriter *writer, Datum *values, bool *nulls);
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

/* ---- wake.c: waking waiting pollers ---- */
extern void EbWakeAtCommit(void);
extern void EbWakeInit(void);

/* ---- stats.c: counters and histograms in shared memory ---- */

/* A subscription's counters, in the argument order of eventbus._stats_sub. */
typedef enum EbSubCounter
{
	EB_SUB_READ,				/* taken from the log (passed the filter) */
	EB_SUB_DELIVERED,			/* handed out by poll, any attempt */
	EB_SUB_ACKED,
	EB_SUB_NACKED,
	EB_SUB_RETRIED,				/* handed out again (attempt > 1) */
	EB_SUB_DEAD,
	EB_SUB_EXPIRED,
	EB_SUB_REDRIVEN,
	EB_SUB_DISCARDED,			/* dead letters purged */
	EB_SUB_NCOUNTERS
} EbSubCounter;

/* A topic's counters (the first two slots). */
#define EB_TOPIC_PUBLISHED	0
#define EB_TOPIC_BYTES		1

/* Latency histograms of a subscription. */
typedef enum EbHist
{
	EB_HIST_DELIVERY,			/* deliverable -> first handed out */
	EB_HIST_ACK,				/* leased -> acked */
	EB_NHISTS
} EbHist;

#define EB_HIST_BUCKETS		16	/* 1 ms ... 60 s, +Inf */

extern int	eb_stats_max;
extern void EbStatsCountPublish(int32 topic_id, int64 bytes);
extern void EbStatsCountSub(int32 sub_id, EbSubCounter counter, int64 n);
extern void EbStatsObserve(int32 sub_id, EbHist hist, double seconds);
extern void EbStatsForgetDatabase(Oid dboid);
extern void EbStatsSetMetricsWorker(pid_t pid, Oid dboid);
extern pid_t EbStatsMetricsWorkerIn(Oid dboid);
extern void EbStatsInit(void);

/* ---- metrics_http.c: the Prometheus endpoint ---- */
extern void EbMetricsHttpInit(void);

/* ---- worker.c: the launcher and the per-database workers ---- */
extern int	eb_tick_interval;	/* ms */
extern int	eb_tick_min_interval;	/* ms */
extern int	eb_maintenance_interval;	/* s */
extern int	eb_worker_restart_delay;	/* s */
extern void EbWorkerKick(const int32 *sub_ids, int nsubs, bool kick_all);
extern void EbWorkerStartAtCommit(void);
extern void EbWorkerCountHandlerCall(void);
extern void EbWorkerResetStats(Oid dboid);
extern void EbWorkerInit(void);

/* ---- handler.c: handler subscriptions, run by the worker ---- */
extern int	eb_handler_timeout; /* ms */
extern int	eb_handler_batch;
extern volatile bool EbInHandler;
extern bool EbRunHandlers(List *subs, volatile sig_atomic_t *stop);

#endif							/* EVENTBUS_H */
