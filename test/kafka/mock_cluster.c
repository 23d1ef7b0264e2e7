/*
 * eb_kafka_mock: a librdkafka mock Kafka cluster driven over stdin, for the
 * tests of the Kafka relay (test/perl/EventbusKafka.pm, docs/testing.md).
 *
 *   eb_kafka_mock [--brokers N] [--partitions P]
 *
 * Prints the bootstrap servers as the first line of stdout, then reads one
 * command a line and answers each with "ok" or "error <text>":
 *
 *   create <topic> [<partitions>]      partitions default to --partitions
 *   down <broker_id> | up <broker_id>  broker ids are 1..N
 *   produce_errors <count> <error>     the next <count> Produce requests fail
 *                                      with <error>: a rd_kafka_resp_err_t name
 *                                      without RD_KAFKA_RESP_ERR_
 *                                      (NOT_LEADER_FOR_PARTITION) or a code (6)
 *   rtt <broker_id> <ms>               added round-trip time of a broker
 *   leader <topic> <partition> <id>    moves a partition's leader (-1: none)
 *   quit                               answers ok, then exits
 *
 * EOF on stdin, SIGTERM or SIGINT destroy the cluster and exit 0.
 *
 * Topic auto-creation (librdkafka 2.0.2, checked by test/t/022_kafka_rig.pl):
 * the mock cluster creates a topic it does not know as soon as a Metadata
 * request names it, with 4 partitions and replication factor min(3,
 * brokers). The mock serves Metadata up to v2, which has no
 * AllowAutoTopicCreation field, so every client creates it that way: a
 * producer, kcat -L, kafkajs, even a consumer with
 * allow.auto.create.topics=false. The count of 4 is fixed inside librdkafka
 * (no API sets it). A Produce request for an unknown topic creates nothing
 * (UNKNOWN_TOPIC_OR_PART), but clients ask for Metadata first anyway.
 * --partitions therefore only applies to "create"; tests that care about
 * partitioning create their topics first.
 *
 * Injected Produce errors are answered before anything is appended, so a
 * retried message lands once: they test the producer's retries, not
 * duplicates.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

/* Kafka protocol ApiKey of Produce. */
#define API_PRODUCE 0

static volatile sig_atomic_t stop_requested = 0;

/* Notes SIGTERM or SIGINT; the main loop polls the flag. */
static void
HandleStop(int sig)
{
	(void) sig;
	stop_requested = 1;
}

/* Prints a usage message and exits with status 2. */
static void
Usage(const char *argv0)
{
	fprintf(stderr, "usage: %s [--brokers N] [--partitions P]\n", argv0);
	exit(2);
}

/* Parses a whole decimal integer in [min, max]; returns 0 on success. */
static int
ParseInt(const char *s, long min, long max, long *out)
{
	char	   *end;
	long		v;

	if (s == NULL || *s == '\0')
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/*
 * Resolves an error given by name (with or without RD_KAFKA_RESP_ERR_, any
 * case) or by numeric code; returns 0 on success. MESSAGE_TOO_LARGE is
 * accepted for librdkafka's MSG_SIZE_TOO_LARGE (Kafka's own name).
 */
static int
ParseError(const char *s, rd_kafka_resp_err_t *out)
{
	const struct rd_kafka_err_desc *descs;
	size_t		n;
	size_t		i;
	long		code;

	if (ParseInt(s, -200, 1000, &code) == 0)
	{
		*out = (rd_kafka_resp_err_t) code;
		return 0;
	}
	if (strncasecmp(s, "RD_KAFKA_RESP_ERR_", 18) == 0)
		s += 18;
	if (strcasecmp(s, "MESSAGE_TOO_LARGE") == 0)
		s = "MSG_SIZE_TOO_LARGE";
	rd_kafka_get_err_descs(&descs, &n);
	for (i = 0; i < n; i++)
	{
		if (descs[i].name != NULL && strcasecmp(descs[i].name, s) == 0)
		{
			*out = descs[i].code;
			return 0;
		}
	}
	return -1;
}

/* Writes one answer line and flushes it. */
static void
Answer(const char *fmt, const char *detail)
{
	printf(fmt, detail);
	putchar('\n');
	fflush(stdout);
}

/* Answers an rd_kafka_resp_err_t result: ok, or error with its name. */
static void
AnswerErr(rd_kafka_resp_err_t err)
{
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		Answer("ok%s", "");
	else
		Answer("error %s", rd_kafka_err2name(err));
}

/*
 * Runs one command line; returns 1 when the program should stop (quit).
 */
static int
RunCommand(rd_kafka_mock_cluster_t *mc, char *line, long brokers, long def_parts)
{
	char	   *argv[4];
	int			argc = 0;
	char	   *save = NULL;
	char	   *tok;
	long		a;
	long		b;

	for (tok = strtok_r(line, " \t\r", &save); tok != NULL;
		 tok = strtok_r(NULL, " \t\r", &save))
	{
		if (argc == 4)
		{
			Answer("error %s", "too many arguments");
			return 0;
		}
		argv[argc++] = tok;
	}
	if (argc == 0)
	{
		Answer("error %s", "empty command");
		return 0;
	}

	if (strcmp(argv[0], "quit") == 0 && argc == 1)
	{
		Answer("ok%s", "");
		return 1;
	}
	if (strcmp(argv[0], "create") == 0 && (argc == 2 || argc == 3))
	{
		a = def_parts;
		if (argc == 3 && ParseInt(argv[2], 1, 100000, &a) != 0)
		{
			Answer("error bad partition count: %s", argv[2]);
			return 0;
		}
		AnswerErr(rd_kafka_mock_topic_create(mc, argv[1], (int) a,
											 brokers < 3 ? (int) brokers : 3));
		return 0;
	}
	if ((strcmp(argv[0], "down") == 0 || strcmp(argv[0], "up") == 0) && argc == 2)
	{
		if (ParseInt(argv[1], 1, brokers, &a) != 0)
		{
			Answer("error no such broker: %s", argv[1]);
			return 0;
		}
		if (argv[0][0] == 'd')
			AnswerErr(rd_kafka_mock_broker_set_down(mc, (int32_t) a));
		else
			AnswerErr(rd_kafka_mock_broker_set_up(mc, (int32_t) a));
		return 0;
	}
	if (strcmp(argv[0], "rtt") == 0 && argc == 3)
	{
		if (ParseInt(argv[1], 1, brokers, &a) != 0)
		{
			Answer("error no such broker: %s", argv[1]);
			return 0;
		}
		if (ParseInt(argv[2], 0, 3600000, &b) != 0)
		{
			Answer("error bad rtt: %s", argv[2]);
			return 0;
		}
		AnswerErr(rd_kafka_mock_broker_set_rtt(mc, (int32_t) a, (int) b));
		return 0;
	}
	if (strcmp(argv[0], "leader") == 0 && argc == 4)
	{
		if (ParseInt(argv[2], 0, 100000, &a) != 0)
		{
			Answer("error bad partition: %s", argv[2]);
			return 0;
		}
		if (ParseInt(argv[3], -1, brokers, &b) != 0 || b == 0)
		{
			Answer("error no such broker: %s", argv[3]);
			return 0;
		}
		AnswerErr(rd_kafka_mock_partition_set_leader(mc, argv[1], (int32_t) a,
													 (int32_t) b));
		return 0;
	}
	if (strcmp(argv[0], "produce_errors") == 0 && argc == 3)
	{
		rd_kafka_resp_err_t err;
		rd_kafka_resp_err_t *errs;
		long		i;

		if (ParseInt(argv[1], 0, 100000, &a) != 0)
		{
			Answer("error bad count: %s", argv[1]);
			return 0;
		}
		if (ParseError(argv[2], &err) != 0)
		{
			Answer("error unknown error name or code: %s", argv[2]);
			return 0;
		}
		if (a == 0)
		{
			rd_kafka_mock_clear_request_errors(mc, API_PRODUCE);
			Answer("ok%s", "");
			return 0;
		}
		errs = malloc(sizeof(*errs) * (size_t) a);
		if (errs == NULL)
		{
			Answer("error %s", "out of memory");
			return 0;
		}
		for (i = 0; i < a; i++)
			errs[i] = err;
		rd_kafka_mock_push_request_errors_array(mc, API_PRODUCE, (size_t) a, errs);
		free(errs);
		Answer("ok%s", "");
		return 0;
	}
	Answer("error unknown command or wrong arguments: %s", argv[0]);
	return 0;
}

/* Creates the cluster, serves commands until quit, EOF or a signal. */
int
main(int argc, char **argv)
{
	long		brokers = 3;
	long		partitions = 4;
	char		errstr[512];
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	rd_kafka_mock_cluster_t *mc;
	struct sigaction sa;
	char		buf[8192];
	size_t		len = 0;
	int			done = 0;
	int			skipping = 0;	/* dropping the rest of a too long line */
	int			i;

	for (i = 1; i < argc; i++)
	{
		if (strcmp(argv[i], "--brokers") == 0 && i + 1 < argc)
		{
			if (ParseInt(argv[++i], 1, 100, &brokers) != 0)
				Usage(argv[0]);
		}
		else if (strcmp(argv[i], "--partitions") == 0 && i + 1 < argc)
		{
			if (ParseInt(argv[++i], 1, 100000, &partitions) != 0)
				Usage(argv[0]);
		}
		else
			Usage(argv[0]);
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = HandleStop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* librdkafka wants a client instance to own the mock cluster. */
	conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
	{
		fprintf(stderr, "eb_kafka_mock: %s\n", errstr);
		return 1;
	}
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
	{
		fprintf(stderr, "eb_kafka_mock: rd_kafka_new: %s\n", errstr);
		return 1;
	}
	mc = rd_kafka_mock_cluster_new(rk, (int) brokers);
	if (mc == NULL)
	{
		fprintf(stderr, "eb_kafka_mock: could not create the mock cluster\n");
		rd_kafka_destroy(rk);
		return 1;
	}
	printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
	fflush(stdout);

	/* A read loop of our own, so that a signal is seen within 200 ms. */
	while (!done && !stop_requested)
	{
		struct pollfd pfd = {.fd = STDIN_FILENO,.events = POLLIN};
		ssize_t		n;
		char	   *nl;

		if (poll(&pfd, 1, 200) <= 0)
			continue;
		n = read(STDIN_FILENO, buf + len, sizeof(buf) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t) n;
		buf[len] = '\0';
		while (!done && (nl = strchr(buf, '\n')) != NULL)
		{
			*nl = '\0';
			if (skipping)
				skipping = 0;
			else
				done = RunCommand(mc, buf, brokers, partitions);
			len -= (size_t) (nl + 1 - buf);
			memmove(buf, nl + 1, len + 1);
		}
		if (len == sizeof(buf) - 1)
		{
			if (!skipping)
				Answer("error %s", "line too long");
			skipping = 1;
			len = 0;
		}
	}

	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	return 0;
}
