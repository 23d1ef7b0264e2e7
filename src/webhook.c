/*-------------------------------------------------------------------------
 *
 * webhook.c
 *	  The HTTP sink of relays: each event one signed POST (CloudEvents HTTP
 *	  binding), through libcurl's multi interface (its options:
 *	  webhook_options.c).
 *
 * A relay process (relay.c) opens one client (HttpOpen): a libcurl multi
 * handle, which keeps connections alive between requests. Sending starts
 * requests in commit order, at most "concurrency" at once and at most one
 * per key at a time; HttpServe drives them from the relay's own loop
 * (curl_multi_poll, curl_multi_perform) and starts the next ones as
 * answers come. An answer decides a message's outcome:
 *
 *	 2xx					done;
 *	 408, 429, 5xx, no answer (timeout, connection refused or closed, TLS)
 *							for now: the relay sends it again after its
 *							backoff, or after Retry-After when longer; the
 *							later messages of its key wait for it;
 *	 any other status		a dead letter, with the status and the first
 *							bytes of the answer.
 *
 * Signing follows Standard Webhooks: webhook-id (the CloudEvents id),
 * webhook-timestamp (seconds), webhook-signature "v1,<base64 HMAC-SHA256 of
 * id.timestamp.body>" for the user mapping's "secret" and, while it is
 * being rotated, also its "previous_secret". HMAC is PostgreSQL's pg_hmac
 * (OpenSSL's).
 *
 * libcurl may resolve names in a thread of its own: every signal is
 * blocked around the calls that may start one, and CURLOPT_NOSIGNAL keeps
 * libcurl away from signals; nothing of PostgreSQL is called from libcurl's
 * callbacks but memory writes into our own buffers.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "sink.h"
#include "webhook.h"

#include <pthread.h>
#include <signal.h>
#include <time.h>

#include <curl/curl.h>

#include "common/base64.h"
#include "common/hashfn.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#define HTTP_ANSWER_BYTES	200

/* One request in flight. */
typedef struct HttpReq
{
	CURL	   *easy;
	struct curl_slist *hdrs;
	char	   *body;
	int			first;			/* its messages: msgs[first .. first + n - 1] */
	int			n;
	char		answer[HTTP_ANSWER_BYTES + 1];
	int			answer_len;
	int			retry_after;	/* seconds; 0: none */
} HttpReq;

typedef struct EbHttp
{
	HttpConf	conf;
	CURLM	   *multi;
	EbMsg	   *msgs;			/* what send was given */
	int			n;
	HttpReq   **inflight;		/* concurrency slots */
	int			ninflight;
	char		error[EB_MSG_ERROR_LEN];
	MemoryContext scratch;		/* what building a request needs, reset at each */
	MemoryContext cxt;			/* the client's own: all of the above */
} EbHttp;

static bool CurlReady = false;

/* ---- the client ---- */

/* Blocks every signal while libcurl may start its resolver thread. */
static void
BlockSignals(sigset_t *old)
{
	sigset_t	all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, old);
}

static void
RestoreSignals(sigset_t *old)
{
	pthread_sigmask(SIG_SETMASK, old, NULL);
}

static EbSink *
HttpOpen(const char *relay, EbSinkProp *props, int nprops)
{
	EbHttp	   *h;
	/* All of a client, its settings (secrets too) with it, goes at close. */
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "eventbus http sink", ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);

	if (!CurlReady)
	{
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			elog(ERROR, "eventbus: could not initialize libcurl");
		CurlReady = true;
	}
	h = palloc0(sizeof(EbHttp));
	h->cxt = cxt;
	h->conf.timeout_ms = 10000;
	h->conf.concurrency = 8;
	h->conf.mode = "binary";
	h->conf.batch_size = 100;
	h->conf.verify = true;
	for (int i = 0; i < nprops; i++)
		if (strcmp(props[i].name, "source") != 0)
			EbHttpSetOption(&h->conf, props[i].name, props[i].value, NULL);
	if (h->conf.url == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("the server of HTTP relay \"%s\" has no url", relay),
				 errhint("ALTER SERVER ... OPTIONS (ADD url 'https://hooks.example/events').")));
	if (strcmp(h->conf.mode, "batch") == 0)
		h->conf.concurrency = 1;	/* batches go one after the other: commit order */
	h->multi = curl_multi_init();
	if (h->multi == NULL)
		elog(ERROR, "eventbus: could not create a libcurl multi handle");
	curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long) h->conf.concurrency);
	h->inflight = palloc0(sizeof(HttpReq *) * h->conf.concurrency);
	h->scratch = AllocSetContextCreate(cxt, "eventbus http request", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(old);
	return (EbSink *) h;
}

/*
 * The URL of an event: the server's url with {topic} replaced by the
 * event's topic and {N} by its N-th word, each percent-encoded.
 */
static char *
HttpDest(EbSink *s, const char *template, const char *topic, char *why, int len)
{
	EbHttp	   *h = (EbHttp *) s;
	StringInfoData out;
	char	   *full = psprintf("%s%s", h->conf.url, template ? template : "");

	initStringInfo(&out);
	for (const char *p = full; *p;)
	{
		const char *end = *p == '{' ? strchr(p, '}') : NULL;

		if (end != NULL)
		{
			char	   *ph = pnstrdup(p + 1, end - p - 1);
			char	   *word = NULL;

			if (strcmp(ph, "topic") == 0)
				word = pstrdup(topic);
			else if (atoi(ph) >= 1)
			{
				const char *w = topic;

				for (int i = 1; i < atoi(ph) && w != NULL; i++)
					if ((w = strchr(w, '.')) != NULL)
						w++;
				if (w != NULL)
					word = pnstrdup(w, strcspn(w, "."));
			}
			if (word == NULL || word[0] == '\0')
			{
				snprintf(why, len, "the topic has no word %s", ph);
				return NULL;
			}
			else
			{
				char	   *esc = curl_easy_escape(NULL, word, 0);

				appendStringInfoString(&out, esc);
				curl_free(esc);
			}
			p = end + 1;
		}
		else
			appendStringInfoChar(&out, *p++);
	}
	return out.data;
}

static bool
HttpStructured(EbSink *s)
{
	return strcmp(((EbHttp *) s)->conf.mode, "binary") != 0;
}

/* Collects the first bytes of an answer (a libcurl callback: memory writes only). */
static size_t
OnBody(char *data, size_t size, size_t nmemb, void *arg)
{
	HttpReq    *r = arg;
	size_t		n = size * nmemb;
	size_t		room = HTTP_ANSWER_BYTES - r->answer_len;

	if (room > 0)
	{
		memcpy(r->answer + r->answer_len, data, Min(n, room));
		r->answer_len += Min(n, room);
		r->answer[r->answer_len] = '\0';
	}
	return n;
}

/*
 * Finds Retry-After, delay-seconds or an HTTP-date (RFC 9110 10.2.3), as
 * seconds from now, at most an hour (a libcurl callback: memory writes
 * only; curl_getdate is libcurl's own parser).
 */
static size_t
OnHeader(char *data, size_t size, size_t nmemb, void *arg)
{
	HttpReq    *r = arg;
	size_t		n = size * nmemb;
	char		value[64];
	size_t		len;
	char	   *v;
	long		secs;

	if (n <= 12 || pg_strncasecmp(data, "retry-after:", 12) != 0)
		return n;
	len = Min(n - 12, sizeof(value) - 1);
	memcpy(value, data + 12, len);
	value[len] = '\0';
	v = value + strspn(value, " \t");
	v[strcspn(v, "\r\n")] = '\0';
	if (v[0] >= '0' && v[0] <= '9')
		secs = strtol(v, NULL, 10);
	else
	{
		time_t		at = curl_getdate(v, NULL);

		secs = at < 0 ? 0 : (long) (at - time(NULL));
	}
	if (secs > 0)
		r->retry_after = (int) Min(secs, 3600);
	return n;
}

/*
 * "v1,<sig>" for each secret, space-separated. pg_hmac registers its
 * OpenSSL context with the current resource owner: the relay sends
 * outside transactions, so the sink has one of its own.
 */
static char *
Signature(EbHttp *h, const char *id, long ts, const char *body)
{
	static ResourceOwner owner = NULL;
	ResourceOwner save = CurrentResourceOwner;
	StringInfoData out;
	char	   *content = psprintf("%s.%ld.%s", id, ts, body);

	if (owner == NULL)
		owner = ResourceOwnerCreate(NULL, "eventbus http sink");
	CurrentResourceOwner = owner;

	initStringInfo(&out);
	for (int i = 0; i < h->conf.nsecrets; i++)
	{
		pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);
		uint8		mac[PG_SHA256_DIGEST_LENGTH];
		char		b64[64];
		int			len;

		if (ctx == NULL || pg_hmac_init(ctx, h->conf.secrets[i], h->conf.secret_len[i]) < 0 ||
			pg_hmac_update(ctx, (const uint8 *) content, strlen(content)) < 0 ||
			pg_hmac_final(ctx, mac, sizeof(mac)) < 0)
			elog(ERROR, "eventbus: could not compute an HMAC: %s", ctx ? pg_hmac_error(ctx) : "out of memory");
		pg_hmac_free(ctx);
		len = pg_b64_encode((const char *) mac, sizeof(mac), b64, sizeof(b64) - 1);
		b64[Max(len, 0)] = '\0';
		appendStringInfo(&out, "%sv1,%s", i > 0 ? " " : "", b64);
	}
	CurrentResourceOwner = save;
	return out.data;
}

/*
 * Starts the request of msgs[first .. first + n - 1] (n > 1: a batch) in a
 * free slot. The request and its body live until RemoveRequest; the rest
 * (header lines, which libcurl copies, the signed text) in h->scratch: the
 * relay sends outside transactions, where palloc would leak into
 * TopMemoryContext (about 1.6 times each body, for good).
 */
static void
StartRequest(EbHttp *h, int slot, int first, int n)
{
	HttpReq    *r = MemoryContextAllocZero(TopMemoryContext, sizeof(HttpReq));
	MemoryContext oldcxt;
	EbMsg	   *m = &h->msgs[first];
	const char *ctype;
	const char *msg_id;
	long		ts = (long) time(NULL);
	ListCell   *lc;
	CURLMcode	rc;
	sigset_t	old;

	MemoryContextReset(h->scratch);
	oldcxt = MemoryContextSwitchTo(h->scratch);
	r->first = first;
	r->n = n;
	if (strcmp(h->conf.mode, "batch") == 0)
	{
		StringInfoData b;

		initStringInfo(&b);
		appendStringInfoChar(&b, '[');
		for (int i = 0; i < n; i++)
			appendStringInfo(&b, "%s%s", i > 0 ? "," : "", m[i].ce_json);
		appendStringInfoChar(&b, ']');
		r->body = MemoryContextStrdup(TopMemoryContext, b.data);
		ctype = "application/cloudevents-batch+json";
	}
	else if (strcmp(h->conf.mode, "structured") == 0)
	{
		r->body = MemoryContextStrdup(TopMemoryContext, m->ce_json);
		ctype = "application/cloudevents+json";
	}
	else
	{
		r->body = MemoryContextAlloc(TopMemoryContext, m->payload_len + 1);
		memcpy(r->body, m->payload, m->payload_len);
		r->body[m->payload_len] = '\0';
		ctype = "application/json";
	}
	r->hdrs = curl_slist_append(r->hdrs, psprintf("content-type: %s", ctype));
	for (int i = 0; i < m->nheaders; i++)
	{
		/* Binary mode: the ce- attributes; every mode: the event's own headers. */
		if (EbHttpReservedHeader(m->hnames[i]) ||
			(strncmp(m->hnames[i], "ce-", 3) == 0 && strcmp(h->conf.mode, "binary") != 0) ||
			!EbHttpIsToken(m->hnames[i]) || EbHttpHasNewline(m->hvalues[i]))
			continue;
		r->hdrs = curl_slist_append(r->hdrs, psprintf("%s: %s", m->hnames[i], m->hvalues[i]));
	}
	/*
	 * The message id a receiver dedupes by: the event's id; for a batch, its
	 * first event's, its size and a hash of its events, so that a batch sent
	 * again with other events (some acked meanwhile, others added) is
	 * another message.
	 */
	if (n > 1)
	{
		uint64		hash = 0;

		for (int i = 0; i < n; i++)
			hash = hash_combine64(hash, hash_bytes_uint32_extended((uint32) m[i].event_id,
																   (uint64) (m[i].event_id >> 32)));
		msg_id = psprintf("batch-%s-%d-%016llx", m->ce_id, n, (unsigned long long) hash);
	}
	else
		msg_id = m->ce_id;
	foreach(lc, h->conf.headers)
		r->hdrs = curl_slist_append(r->hdrs, lfirst(lc));
	r->hdrs = curl_slist_append(r->hdrs, psprintf("webhook-id: %s", msg_id));
	r->hdrs = curl_slist_append(r->hdrs, psprintf("webhook-timestamp: %ld", ts));
	if (h->conf.nsecrets > 0)
		r->hdrs = curl_slist_append(r->hdrs, psprintf("webhook-signature: %s", Signature(h, msg_id, ts, r->body)));
	r->hdrs = curl_slist_append(r->hdrs, "Expect:");	/* no 100-continue round trip */
	MemoryContextSwitchTo(oldcxt);

	r->easy = curl_easy_init();
	if (r->easy == NULL)
		elog(ERROR, "eventbus: could not create a libcurl handle");
	curl_easy_setopt(r->easy, CURLOPT_URL, m->dest);
	curl_easy_setopt(r->easy, CURLOPT_POST, 1L);
	curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body);
	curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE, (long) strlen(r->body));
	curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->hdrs);
	curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, (long) h->conf.timeout_ms);
	curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, OnBody);
	curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(r->easy, CURLOPT_HEADERFUNCTION, OnHeader);
	curl_easy_setopt(r->easy, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
	curl_easy_setopt(r->easy, CURLOPT_USERAGENT, "eventbus-relay/" EB_VERSION);
	curl_easy_setopt(r->easy, CURLOPT_SSL_VERIFYPEER, h->conf.verify ? 1L : 0L);
	curl_easy_setopt(r->easy, CURLOPT_SSL_VERIFYHOST, h->conf.verify ? 2L : 0L);
	if (h->conf.ca_file)
		curl_easy_setopt(r->easy, CURLOPT_CAINFO, h->conf.ca_file);
	if (h->conf.client_cert)
		curl_easy_setopt(r->easy, CURLOPT_SSLCERT, h->conf.client_cert);
	if (h->conf.client_key)
		curl_easy_setopt(r->easy, CURLOPT_SSLKEY, h->conf.client_key);
	BlockSignals(&old);
	rc = curl_multi_add_handle(h->multi, r->easy);
	RestoreSignals(&old);
	if (rc != CURLM_OK)
		elog(ERROR, "eventbus: libcurl refused a request: %s", curl_multi_strerror(rc));
	for (int i = 0; i < n; i++)
		h->msgs[first + i].started = true;
	h->inflight[slot] = r;
	h->ninflight++;
}

/* Whether a message of this key is in flight. */
static bool
KeyInFlight(EbHttp *h, const char *key)
{
	for (int s = 0; s < h->conf.concurrency; s++)
	{
		HttpReq    *r = h->inflight[s];

		if (r != NULL && h->msgs[r->first].key != NULL && strcmp(h->msgs[r->first].key, key) == 0)
			return true;
	}
	return false;
}

/*
 * Starts what may start, in order: in batch mode the next batch when none
 * is in flight; else messages while a slot is free, skipping those whose
 * key has a message in flight or an earlier one waiting (commit order per
 * key).
 */
static void
StartMore(EbHttp *h)
{
	List	   *waiting = NIL;	/* keys that wait in this pass */

	for (int i = 0; i < h->n && h->ninflight < h->conf.concurrency; i++)
	{
		EbMsg	   *m = &h->msgs[i];
		int			slot = 0;

		if (h->msgs[i].started || m->status != EB_MSG_PENDING)
			continue;
		if (strcmp(h->conf.mode, "batch") == 0)
		{
			int			n = 1;

			while (i + n < h->n && n < h->conf.batch_size && !h->msgs[i + n].started &&
				   h->msgs[i + n].status == EB_MSG_PENDING && strcmp(h->msgs[i + n].dest, m->dest) == 0)
				n++;
			StartRequest(h, 0, i, n);
			break;
		}
		if (m->key != NULL)
		{
			ListCell   *lc;
			bool		wait = KeyInFlight(h, m->key);

			foreach(lc, waiting)
				wait = wait || strcmp(lfirst(lc), m->key) == 0;
			if (wait)
			{
				waiting = lappend(waiting, (char *) m->key);
				continue;
			}
		}
		while (h->inflight[slot] != NULL)
			slot++;
		StartRequest(h, slot, i, 1);
	}
	list_free(waiting);
}


/*
 * An answer's bytes made text of the database's encoding: each byte that
 * starts no valid character (a body in another encoding, a character cut
 * by the length limit) becomes '?'. It goes into dead letters and
 * eventbus.relays.last_error.
 */
static void
MakeValidText(char *s)
{
	int			enc = GetDatabaseEncoding();
	int			len = strlen(s);

	while (len > 0)
	{
		int			ok = pg_encoding_verifymbstr(enc, s, len);

		if (ok >= len)
			break;
		s[ok] = '?';
		s += ok + 1;
		len -= ok + 1;
	}
}

/* The outcome of a finished request, for each of its messages. */
static void
Finish(EbHttp *h, HttpReq *r, CURLcode result)
{
	long		status = 0;
	EbMsgStatus outcome;
	char		error[EB_MSG_ERROR_LEN];

	if (result == CURLE_OK)
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	if (result != CURLE_OK)
	{
		outcome = EB_MSG_RETRY;
		snprintf(error, sizeof(error), "HTTP: %s", curl_easy_strerror(result));
	}
	else if (status >= 200 && status < 300)
		outcome = EB_MSG_DONE;
	else
	{
		outcome = (status == 408 || status == 429 || status >= 500) ? EB_MSG_RETRY : EB_MSG_DEAD;
		snprintf(error, sizeof(error), "HTTP %ld: %s", status, r->answer);
		MakeValidText(error);
	}
	for (int i = 0; i < r->n; i++)
	{
		EbMsg	   *m = &h->msgs[r->first + i];

		m->status = outcome;
		if (outcome != EB_MSG_DONE)
			strlcpy(m->error, error, EB_MSG_ERROR_LEN);
		m->retry_after_ms = r->retry_after * 1000;
		/* The later messages of its key wait for it: they go again after it. */
		if (outcome == EB_MSG_RETRY && m->key != NULL)
			for (int j = r->first + r->n; j < h->n; j++)
				if (!h->msgs[j].started && h->msgs[j].status == EB_MSG_PENDING && h->msgs[j].key != NULL &&
					strcmp(h->msgs[j].key, m->key) == 0)
				{
					h->msgs[j].status = EB_MSG_RETRY;
					snprintf(h->msgs[j].error, EB_MSG_ERROR_LEN, "waits for event " INT64_FORMAT " of its key",
							 m->event_id);
				}
	}
	if (outcome != EB_MSG_DONE)
		strlcpy(h->error, error, sizeof(h->error));
}

static void
RemoveRequest(EbHttp *h, int slot)
{
	HttpReq    *r = h->inflight[slot];

	curl_multi_remove_handle(h->multi, r->easy);
	curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->hdrs);
	pfree(r->body);
	pfree(r);
	h->inflight[slot] = NULL;
	h->ninflight--;
}

static void
HttpSend(EbSink *s, EbMsg *msgs, int n)
{
	EbHttp	   *h = (EbHttp *) s;

	h->msgs = msgs;
	h->n = n;
	for (int i = 0; i < n; i++)
		if (msgs[i].status == EB_MSG_PENDING)
			msgs[i].started = false;
	StartMore(h);
}

/* Counts the messages without an outcome. */
static int
Pending(EbHttp *h)
{
	int			n = 0;

	for (int i = 0; i < h->n; i++)
		if (h->msgs[i].status == EB_MSG_PENDING)
			n++;
	return n;
}

/*
 * Drops the sink's pointer to the messages once each has an outcome and
 * nothing is in flight: they live in the relay's round context, reset
 * before the next round, whose serve() of an empty poll must not read
 * them (it did: a segfault once the freed array had been unmapped).
 * Returns pending.
 */
static int
Forget(EbHttp *h, int pending)
{
	if (pending == 0 && h->ninflight == 0)
	{
		h->msgs = NULL;
		h->n = 0;
	}
	return pending;
}

static int
HttpServe(EbSink *s, int timeout_ms)
{
	EbHttp	   *h = (EbHttp *) s;
	int			running;
	int			left;
	CURLMsg    *msg;
	sigset_t	old;

	if (h->msgs == NULL)
		return 0;
	if (h->ninflight == 0)
		StartMore(h);
	if (h->ninflight == 0)
	{
		/* Nothing can start (cannot happen): what waits goes again later, not in a busy loop. */
		for (int i = 0; i < h->n; i++)
			if (h->msgs[i].status == EB_MSG_PENDING)
			{
				h->msgs[i].status = EB_MSG_RETRY;
				strlcpy(h->msgs[i].error, "HTTP: not sent", EB_MSG_ERROR_LEN);
			}
		return Forget(h, 0);
	}
	(void) curl_multi_poll(h->multi, NULL, 0, timeout_ms, NULL);
	BlockSignals(&old);
	(void) curl_multi_perform(h->multi, &running);
	RestoreSignals(&old);
	while ((msg = curl_multi_info_read(h->multi, &left)) != NULL)
	{
		HttpReq    *r;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &r);
		Finish(h, r, msg->data.result);
		for (int slot = 0; slot < h->conf.concurrency; slot++)
			if (h->inflight[slot] == r)
				RemoveRequest(h, slot);
	}
	StartMore(h);
	return Forget(h, Pending(h));
}

static bool
HttpBroken(EbSink *s, char *error, int len)
{
	if (error != NULL)
		strlcpy(error, ((EbHttp *) s)->error, len);
	return false;
}

static void
HttpClose(EbSink *s, int flush_ms)
{
	EbHttp	   *h = (EbHttp *) s;
	TimestampTz until = GetCurrentTimestamp() + (int64) flush_ms * 1000;

	while (h->ninflight > 0 && GetCurrentTimestamp() < until)
		(void) HttpServe(s, 100);
	for (int slot = 0; slot < h->conf.concurrency; slot++)
		if (h->inflight[slot] != NULL)
			RemoveRequest(h, slot);
	curl_multi_cleanup(h->multi);
	MemoryContextDelete(h->cxt);
}

const EbSinkOps EbHttpSink = {
	.name = "http",
	.ce_prefix = "ce-",
	.open = HttpOpen,
	.dest = HttpDest,
	.structured = HttpStructured,
	.send = HttpSend,
	.serve = HttpServe,
	.broken = HttpBroken,
	.close = HttpClose,
};
