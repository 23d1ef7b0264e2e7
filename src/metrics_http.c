/*-------------------------------------------------------------------------
 *
 * metrics_http.c
 *	  An HTTP endpoint for Prometheus: GET /metrics and GET /health.
 *
 * With the library preloaded and eventbus.metrics_address set (for example
 * '127.0.0.1:9187'), a background worker listens there. It connects to
 * eventbus.metrics_database and answers
 *
 *	 GET /metrics  200, the text of eventbus.prometheus() (format 0.0.4);
 *				   503 when the extension is not installed there
 *	 GET /health   200 "healthy" when every check of eventbus.health() passes
 *				   (the worker runs and ticks, lag and new dead letters within
 *				   the eventbus.health_* settings), else 503 "unhealthy";
 *				   each check on a line of its own
 *	 anything else 404 (unknown path) or 405 (other method)
 *
 * It is its own process, so a slow scrape never delays the per-database
 * workers. It reads the requests of every open connection at once (one
 * wait on all their sockets: a connection that sends nothing delays no
 * other), and answers one request at a time with bounded waits: a request
 * must arrive within EB_HTTP_READ_MS of the connection, a response leave
 * within EB_HTTP_WRITE_MS, and the query finish within EB_HTTP_QUERY_MS
 * (statement_timeout).
 *
 * Locking: the endpoint's pid and database (for the ProcessUtility hook of
 * launcher.c, which stops it before DROP DATABASE) are under a spinlock in
 * a small shared struct.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "metrics_http.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include "access/xact.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

/*
 * GET /health: "healthy" or "unhealthy", then one line per check of
 * eventbus.health() (sql/80_stats.sql).
 */
#define EB_HEALTH_QUERY \
	"SELECT CASE WHEN bool_and(h.ok) THEN 'healthy' ELSE 'unhealthy' END || E'\\n' " \
	"    || string_agg(format('%s %s: %s (threshold: %s)', CASE WHEN h.ok THEN 'ok' ELSE 'FAIL' END, " \
	"                         h.check_name, h.value, h.threshold), E'\\n') || E'\\n' " \
	"  FROM eventbus.health() h"

/* eventbus.health_* (read by eventbus.health() through current_setting) */
static int	eb_health_tick_age = 60;
static int	eb_health_max_lag = 0;
static int	eb_health_dead_window = 300;
static int	eb_health_max_new_dead = -1;

#define EB_HTTP_READ_MS		2000
#define EB_HTTP_WRITE_MS	5000
#define EB_HTTP_QUERY_MS	5000
#define EB_HTTP_MAX_REQUEST 8192
#define EB_HTTP_MAX_CLIENTS 64

/* eventbus.metrics_address and eventbus.metrics_database */
static char *eb_metrics_address = NULL;
static char *eb_metrics_database = NULL;

/* The endpoint's process and database, for statements that need the database alone. */
typedef struct EbMetricsShared
{
	slock_t		mutex;			/* protects the fields below */
	pid_t		pid;
	Oid			dboid;
} EbMetricsShared;

static EbMetricsShared *MetricsShared = NULL;
static shmem_request_hook_type PrevShmemRequest = NULL;
static shmem_startup_hook_type PrevShmemStartup = NULL;

void		eventbus_metrics_main(Datum arg);

/* Asks for the shared struct (preload only). */
static void
MetricsShmemRequest(void)
{
	if (PrevShmemRequest)
		PrevShmemRequest();
	RequestAddinShmemSpace(MAXALIGN(sizeof(EbMetricsShared)));
}

/* Finds or creates the shared struct. */
static void
MetricsShmemStartup(void)
{
	bool		found;

	if (PrevShmemStartup)
		PrevShmemStartup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	MetricsShared = ShmemInitStruct("eventbus metrics", sizeof(EbMetricsShared), &found);
	if (!found)
	{
		SpinLockInit(&MetricsShared->mutex);
		MetricsShared->pid = 0;
		MetricsShared->dboid = InvalidOid;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Splits "host:port" or "[v6]:port"; raises 22023 on anything else. */
static void
ParseAddress(const char *address, char **host, char **port)
{
	const char *colon = strrchr(address, ':');

	if (colon == NULL || colon == address || colon[1] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid eventbus.metrics_address: \"%s\"", address),
				 errhint("Use host:port, e.g. '127.0.0.1:9187' or '[::1]:9187'.")));
	if (address[0] == '[' && colon[-1] == ']')
		*host = pnstrdup(address + 1, colon - address - 2);
	else
		*host = pnstrdup(address, colon - address);
	*port = pstrdup(colon + 1);
	/* No host would mean every address: that must be said ("0.0.0.0", "[::]"). */
	if ((*host)[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid eventbus.metrics_address: \"%s\" names no host", address),
				 errhint("Use host:port, e.g. '127.0.0.1:9187' or '[::1]:9187'; to listen on every address, say so: '0.0.0.0:9187' or '[::]:9187'.")));
}

/* Opens the listening socket, non-blocking. */
static pgsocket
Listen(const char *address)
{
	char	   *host;
	char	   *port;
	struct addrinfo hints = {0};
	struct addrinfo *res;
	int			rc;
	pgsocket	fd;
	int			one = 1;

	ParseAddress(address, &host, &port);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid eventbus.metrics_address: \"%s\": %s", address, gai_strerror(rc))));
	fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
	if (fd == PGINVALID_SOCKET)
		ereport(ERROR, (errcode_for_socket_access(), errmsg("could not create socket: %m")));
	(void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("eventbus metrics endpoint could not listen on \"%s\": %m", address),
				 errhint("Choose a free address in eventbus.metrics_address and restart the server.")));
	if (listen(fd, 16) < 0 || !pg_set_noblock(fd))
		ereport(ERROR, (errcode_for_socket_access(), errmsg("could not listen on socket: %m")));
	freeaddrinfo(res);
	return fd;
}

/* Waits until the socket is ready or the deadline passes; false on timeout. */
static bool
WaitSocket(pgsocket fd, int events, TimestampTz deadline)
{
	for (;;)
	{
		long		ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		int			rc;

		if (ms <= 0)
			return false;
		rc = WaitLatchOrSocket(MyLatch, WL_LATCH_SET | events | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							   fd, ms, PG_WAIT_EXTENSION);
		if (rc & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		if (rc & events)
			return true;
	}
}

/*
 * A connection whose request is being read. Requests are read from every
 * open connection at once (one wait for all of them), so clients that
 * connect and send nothing delay nobody: each is dropped EB_HTTP_READ_MS
 * after it connected, and when EB_HTTP_MAX_CLIENTS are open the oldest
 * makes room for a new one.
 */
typedef struct Client
{
	pgsocket	fd;
	TimestampTz deadline;		/* dropped then, request or not */
	StringInfoData req;			/* what it sent so far */
} Client;

static Client Clients[EB_HTTP_MAX_CLIENTS];
static int	NClients = 0;

/* Reads what the client sent: 1 when the request head is whole, 0 for more to come, -1 to drop it. */
static int
ReadMore(Client *c)
{
	char		buf[1024];

	for (;;)
	{
		ssize_t		n;

		if (strstr(c->req.data, "\r\n\r\n") != NULL || strstr(c->req.data, "\n\n") != NULL)
			return 1;
		if (c->req.len >= EB_HTTP_MAX_REQUEST)
			return -1;
		n = recv(c->fd, buf, sizeof(buf), 0);
		if (n > 0)
			appendBinaryStringInfo(&c->req, buf, n);
		else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return 0;
		else
			return -1;
	}
}

/* Closes the connection of Clients[i] and forgets it. */
static void
DropClient(int i)
{
	closesocket(Clients[i].fd);
	pfree(Clients[i].req.data);
	memmove(&Clients[i], &Clients[i + 1], sizeof(Client) * (NClients - i - 1));
	NClients--;
}

/*
 * Accepts every connection waiting; false when accept failed for want of
 * descriptors or the like (the listening socket stays readable: wait a
 * little before trying again).
 */
static bool
AcceptAll(pgsocket listen_fd, MemoryContext clientcxt)
{
	for (;;)
	{
		pgsocket	fd = accept(listen_fd, NULL, NULL);
		MemoryContext old;

		if (fd == PGINVALID_SOCKET)
			return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
		if (!pg_set_noblock(fd))
		{
			closesocket(fd);
			continue;
		}
		if (NClients == EB_HTTP_MAX_CLIENTS)
			DropClient(0);		/* the oldest */
		Clients[NClients].fd = fd;
		Clients[NClients].deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), EB_HTTP_READ_MS);
		old = MemoryContextSwitchTo(clientcxt);
		initStringInfo(&Clients[NClients].req);
		MemoryContextSwitchTo(old);
		NClients++;
	}
}

/* Sends the whole buffer within EB_HTTP_WRITE_MS, or gives up. */
static void
SendAll(pgsocket fd, const char *data, size_t len)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), EB_HTTP_WRITE_MS);

	while (len > 0)
	{
		ssize_t		n = send(fd, data, len, MSG_NOSIGNAL);

		if (n > 0)
		{
			data += n;
			len -= n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return;
		if (!WaitSocket(fd, WL_SOCKET_WRITEABLE, deadline))
			return;
	}
}

/* Sends a complete response; HEAD gets the head only. */
static void
Respond(pgsocket fd, bool head_only, const char *status, const char *content_type,
		const char *extra_header, const char *body)
{
	StringInfoData out;

	initStringInfo(&out);
	appendStringInfo(&out,
					 "HTTP/1.1 %s\r\n"
					 "Content-Type: %s\r\n"
					 "Content-Length: %zu\r\n"
					 "%s"
					 "Connection: close\r\n"
					 "\r\n",
					 status, content_type, strlen(body), extra_header ? extra_header : "");
	if (!head_only)
		appendStringInfoString(&out, body);
	SendAll(fd, out.data, out.len);
	pfree(out.data);
}

/*
 * Runs "sql" (one text column, one row) in its own transaction, within
 * EB_HTTP_QUERY_MS. Returns the text, or NULL with *error set; *missing
 * when the extension is not installed (the query is not run).
 */
static char *
RunQuery(const char *sql, bool need_extension, char **error, bool *missing)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *volatile result = NULL;

	*error = NULL;
	*missing = false;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		pgstat_report_activity(STATE_RUNNING, sql);
		if (need_extension && !OidIsValid(get_extension_oid("eventbus", true)))
			*missing = true;
		else
		{
			if (SPI_connect() != SPI_OK_CONNECT)
				elog(ERROR, "SPI_connect failed");
			PushActiveSnapshot(GetTransactionSnapshot());
			enable_timeout_after(STATEMENT_TIMEOUT, EB_HTTP_QUERY_MS);
			if (SPI_execute(sql, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
				elog(ERROR, "query returned no row");
			disable_timeout(STATEMENT_TIMEOUT, false);
			{
				char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
				MemoryContext old = MemoryContextSwitchTo(cxt);

				result = pstrdup(v ? v : "");
				MemoryContextSwitchTo(old);
			}
			PopActiveSnapshot();
			SPI_finish();
		}
		CommitTransactionCommand();
		MemoryContextSwitchTo(cxt);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		disable_timeout(STATEMENT_TIMEOUT, false);
		/* Termination must not be swallowed. */
		if (ProcDiePending)
			PG_RE_THROW();
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(cxt);
		/* A cancel (or a timeout that fired as the query ended) is handled. */
		QueryCancelPending = false;
		*error = psprintf("%s\n", edata->message ? edata->message : "error");
		ereport(LOG,
				(errmsg("eventbus metrics endpoint: %s", edata->message ? edata->message : "error")));
		FreeErrorData(edata);
		result = NULL;
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
	return result;
}

/* Answers one request (its head in req, complete when "whole"). */
static void
Serve(pgsocket fd, const char *req, bool whole)
{
	char		method[16];
	char		path[256];
	bool		head_only;
	size_t		plen;

	if (!whole || sscanf(req, "%15s %255s", method, path) != 2)
	{
		if (req[0] != '\0')
			Respond(fd, false, "400 Bad Request", "text/plain; charset=utf-8", NULL, "bad request\n");
		return;
	}
	head_only = strcmp(method, "HEAD") == 0;
	plen = strcspn(path, "?");	/* a query string is ignored */
	path[plen] = '\0';

	if (strcmp(path, "/metrics") != 0 && strcmp(path, "/health") != 0)
		Respond(fd, head_only, "404 Not Found", "text/plain; charset=utf-8", NULL,
				"not found: try /metrics or /health\n");
	else if (strcmp(method, "GET") != 0 && !head_only)
		Respond(fd, false, "405 Method Not Allowed", "text/plain; charset=utf-8",
				"Allow: GET, HEAD\r\n", "method not allowed\n");
	else
	{
		bool		metrics = strcmp(path, "/metrics") == 0;
		char	   *error;
		bool		missing;
		char	   *body = RunQuery(metrics ? "SELECT eventbus.prometheus()" : EB_HEALTH_QUERY,
									true, &error, &missing);

		if (missing)
			Respond(fd, head_only, "503 Service Unavailable", "text/plain; charset=utf-8", NULL,
					psprintf("eventbus is not installed in database \"%s\"\n", eb_metrics_database));
		else if (body == NULL)
			Respond(fd, head_only, "503 Service Unavailable", "text/plain; charset=utf-8", NULL, error);
		else if (metrics)
			Respond(fd, head_only, "200 OK", "text/plain; version=0.0.4; charset=utf-8", NULL,
					pg_server_to_any(body, strlen(body), PG_UTF8));
		else
			Respond(fd, head_only, strncmp(body, "healthy", 7) == 0 ? "200 OK" : "503 Service Unavailable",
					"text/plain; charset=utf-8", NULL, pg_server_to_any(body, strlen(body), PG_UTF8));
	}
}

/* Answers one request; an error is logged and the loop goes on. */
static void
ServeOrLog(pgsocket fd, const char *req, bool whole)
{
	PG_TRY();
	{
		Serve(fd, req, whole);
	}
	PG_CATCH();
	{
		if (ProcDiePending)
			PG_RE_THROW();
		EmitErrorReport();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		QueryCancelPending = false;
	}
	PG_END_TRY();
}

/* Records (or, with pid 0, clears) this process and its database in shared memory. */
static void
SetMetricsWorker(pid_t pid, Oid dboid)
{
	if (MetricsShared == NULL)
		return;
	SpinLockAcquire(&MetricsShared->mutex);
	MetricsShared->pid = pid;
	MetricsShared->dboid = dboid;
	SpinLockRelease(&MetricsShared->mutex);
}

/* The endpoint's pid when it is connected to the database, else 0. */
pid_t
EbMetricsWorkerIn(Oid dboid)
{
	pid_t		pid = 0;

	if (MetricsShared == NULL)
		return 0;
	SpinLockAcquire(&MetricsShared->mutex);
	if (MetricsShared->dboid == dboid)
		pid = MetricsShared->pid;
	SpinLockRelease(&MetricsShared->mutex);
	return pid;
}

/* Forgets this process in shared memory. */
static void
MetricsOnExit(int code, Datum arg)
{
	SetMetricsWorker(0, InvalidOid);
}

/* The endpoint's main loop. */
void
eventbus_metrics_main(Datum arg)
{
	pgsocket	listen_fd;
	MemoryContext cxt;
	MemoryContext clientcxt;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(eb_metrics_database, NULL, 0);
	pgstat_report_appname("eventbus metrics");
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_read_only", "on", PGC_SUSET, PGC_S_OVERRIDE);

	SetMetricsWorker(MyProcPid, MyDatabaseId);
	before_shmem_exit(MetricsOnExit, (Datum) 0);
	listen_fd = Listen(eb_metrics_address);
	ereport(LOG, (errmsg("eventbus metrics endpoint listening on \"%s\" for database \"%s\"",
						 eb_metrics_address, eb_metrics_database)));

	cxt = AllocSetContextCreate(TopMemoryContext, "eventbus metrics", ALLOCSET_DEFAULT_SIZES);
	clientcxt = AllocSetContextCreate(TopMemoryContext, "eventbus metrics clients", ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		WaitEventSet *set;
		WaitEvent	events[EB_HTTP_MAX_CLIENTS + 3];
		int			nevents;
		bool		accepting;
		long		timeout = -1;
		TimestampTz now;

		/* Nothing runs between requests: a cancel has nothing to cancel. */
		QueryCancelPending = false;
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		accepting = AcceptAll(listen_fd, clientcxt);
		now = GetCurrentTimestamp();
		for (int i = NClients - 1; i >= 0; i--)
			if (Clients[i].deadline <= now)
				DropClient(i);
		if (NClients > 0)
			timeout = Max(TimestampDifferenceMilliseconds(now, Clients[0].deadline), 1);
		if (!accepting)
			timeout = timeout < 0 ? 100 : Min(timeout, 100);

		set = CreateWaitEventSet(cxt, NClients + 3);
		AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		if (accepting)
			AddWaitEventToSet(set, WL_SOCKET_READABLE, listen_fd, NULL, NULL);
		for (int i = 0; i < NClients; i++)
			AddWaitEventToSet(set, WL_SOCKET_READABLE, Clients[i].fd, NULL, NULL);
		nevents = WaitEventSetWait(set, timeout, events, lengthof(events), PG_WAIT_EXTENSION);
		FreeWaitEventSet(set);

		for (int e = 0; e < nevents; e++)
		{
			if (events[e].events & WL_LATCH_SET)
				ResetLatch(MyLatch);
			if (!(events[e].events & WL_SOCKET_READABLE) || events[e].fd == listen_fd)
				continue;
			for (int i = 0; i < NClients; i++)
			{
				int			r;

				if (Clients[i].fd != events[e].fd)
					continue;
				r = ReadMore(&Clients[i]);
				if (r != 0)
				{
					MemoryContextSwitchTo(cxt);
					ServeOrLog(Clients[i].fd, Clients[i].req.data, r == 1);
					MemoryContextSwitchTo(TopMemoryContext);
					DropClient(i);
				}
				break;
			}
		}
		MemoryContextReset(cxt);
	}
}

/* Defines the settings; registers the endpoint when an address is set (preload only). */
void
EbMetricsHttpInit(void)
{
	BackgroundWorker worker;

	/* The thresholds of eventbus.health() (GET /health), in any backend. */
	DefineCustomIntVariable("eventbus.health_tick_age",
							"Age of the worker's last tick beyond which eventbus.health() (GET /health) fails.",
							"Valid range: 1 s to 1 day.",
							&eb_health_tick_age, 60, 1, 86400, PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("eventbus.health_max_lag",
							"Age of the oldest pending event of a subscription beyond which eventbus.health() fails; 0: not checked.",
							"Paused subscriptions do not count. Valid range: 0 to 30 days.",
							&eb_health_max_lag, 0, 0, 30 * 86400, PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("eventbus.health_dead_letter_window",
							"Window in which eventbus.health() counts new dead letters.",
							"Valid range: 1 s to 30 days.",
							&eb_health_dead_window, 300, 1, 30 * 86400, PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("eventbus.health_max_new_dead_letters",
							"Most new dead letters in the window that eventbus.health() accepts; -1: not checked.",
							"Valid range: -1 to 2147483647.",
							&eb_health_max_new_dead, -1, -1, INT_MAX, PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	/* Server-start settings can only be defined while preloading. */
	if (!process_shared_preload_libraries_in_progress)
		return;
	PrevShmemRequest = shmem_request_hook;
	shmem_request_hook = MetricsShmemRequest;
	PrevShmemStartup = shmem_startup_hook;
	shmem_startup_hook = MetricsShmemStartup;
	DefineCustomStringVariable("eventbus.metrics_address",
							   "Address (host:port) of the HTTP endpoint serving /metrics and /health; empty: none.",
							   "E.g. '127.0.0.1:9187'. Needs eventbus in shared_preload_libraries.",
							   &eb_metrics_address,
							   "",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("eventbus.metrics_database",
							   "Database whose eventbus.prometheus() the HTTP endpoint serves.",
							   NULL,
							   &eb_metrics_database,
							   "postgres",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);
	if (eb_metrics_address == NULL || eb_metrics_address[0] == '\0')
		return;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "eventbus");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "eventbus_metrics_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "eventbus metrics");
	snprintf(worker.bgw_type, BGW_MAXLEN, "eventbus metrics");
	RegisterBackgroundWorker(&worker);
}
