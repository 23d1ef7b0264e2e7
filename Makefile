# eventbus: PGXS build, tests, demo.
#
#   make                     build the extension
#   make install             install it into the PostgreSQL found by pg_config
#   make installcheck        the regress and isolation suites, on temporary instances
#   make prove_installcheck  the TAP tests (test/t)
#   make test                install packages (as root), build, install, run every
#                            suite (docs/testing.md); ends with "N passed, N failed"
#   make demo                the same set-up, then a persistent local cluster with a demo
#   make demo-stop           stop and remove the demo cluster
#   make fuzz                build the libFuzzer targets (test/fuzz) and run each FUZZ_SECONDS (60)
#   make bench               the performance targets, side by side on a throwaway cluster (docs/performance.md)
#   make kafka-mock          build the mock Kafka cluster of the relay tests (test/kafka/eb_kafka_mock)
#   make chaos               the crash-cycle test with 20 immediate shutdowns under load; prints
#                            the figures of docs/reliability.md (EB_CHAOS_CYCLES=N for another count)

EXTENSION  = eventbus
EXTVERSION = 0.2.0

MODULE_big = eventbus
OBJS = \
	src/eventbus.o \
	src/topic.o \
	src/topicdict.o \
	src/eventlog.o \
	src/publish.o \
	src/origin.o \
	src/backlog.o \
	src/wake.o \
	src/notify.o \
	src/slots.o \
	src/launcher.o \
	src/worker.o \
	src/tick.o \
	src/subproc.o \
	src/handler.o \
	src/cloudevent.o \
	src/kafka.o \
	src/relay.o \
	src/relaystatus.o \
	src/webhook.o \
	src/webhook_options.o \
	src/util.o \
	src/access.o \
	src/acl.o \
	src/jsonschema/value.o \
	src/jsonschema/uri.o \
	src/jsonschema/compile.o \
	src/jsonschema/keywords.o \
	src/jsonschema/regex.o \
	src/jsonschema/validate.o \
	src/jsonschema/failure.o \
	src/jsonschema/unevaluated.o \
	src/schemareg.o \
	src/stats.o \
	src/stats_sql.o \
	src/window.o \
	src/sub.o \
	src/batch.o \
	src/cut.o \
	src/consume.o \
	src/poll.o \
	src/ack.o \
	src/metrics_http.o \
	src/context.o

# The install script is concatenated from sql/NN_*.sql, by concern.
SQL_PARTS  = $(sort $(wildcard sql/[0-9]*.sql))
DATA_built = $(EXTENSION)--$(EXTVERSION).sql
DATA       = $(wildcard sql/updates/$(EXTENSION)--*--*.sql)

# Tests (docs/testing.md). make installcheck runs the regress and isolation
# suites, each on a temporary instance that pg_regress starts from the
# installed binaries with test/eventbus.conf; naming tests of one suite runs
# only those (make installcheck REGRESS=publish, ISOLATION=ordered). Results,
# diffs and logs go under TEST_OUTDIR, which the user running the tests must
# be able to write; initdb refuses to run as root.
TEST_OUTDIR ?= $(CURDIR)/tmp_check
named_on_command_line = $(and $(filter command line,$(origin $(1))),$(strip $($(1))))

REGRESS := $(if $(call named_on_command_line,ISOLATION),,\
	topics publish consume_subscribe consume_routing consume_basic consume_leases \
	consume_retry consume_delay_ttl errors options workers schemas stats access acl relay cloudevents)
REGRESS_OPTS = --inputdir=test/regress --outputdir=$(TEST_OUTDIR)/regress \
	--temp-instance=$(TEST_OUTDIR)/regress/instance \
	--temp-config=$(CURDIR)/test/eventbus.conf --load-extension=$(EXTENSION)

ISOLATION := $(if $(call named_on_command_line,REGRESS),,\
	$(basename $(notdir $(wildcard test/isolation/specs/*.spec))))
ISOLATION_OPTS = --inputdir=test/isolation --outputdir=$(TEST_OUTDIR)/isolation \
	--temp-instance=$(TEST_OUTDIR)/isolation/instance \
	--temp-config=$(CURDIR)/test/eventbus.conf --load-extension=$(EXTENSION)
REGRESS_PREP = test_outdir

PG_CONFIG ?= pg_config
# Warnings as the style card asks; the test command adds -Werror and
# assertions through EB_CFLAGS.
EB_CFLAGS ?=
PG_CPPFLAGS += -DEB_VERSION='"$(EXTVERSION)"'
PG_CFLAGS += -Wall -Wextra -Wmissing-prototypes -Wno-unused-parameter \
	-Wno-sign-compare -Wno-missing-field-initializers $(EB_CFLAGS)

# Relays: librdkafka (Debian librdkafka-dev) and libcurl (libcurl4-openssl-dev).
SHLIB_LINK += -lrdkafka -lcurl

EXTRA_CLEAN = $(DATA_built) tmp_check test/kafka/eb_kafka_mock

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(EXTENSION)--$(EXTVERSION).sql: $(SQL_PARTS)
	cat $^ > $@

$(OBJS): $(wildcard src/*.h) src/jsonschema/jsonschema_int.h

# The temporary instances get the locale of the cluster test/lib.sh starts:
# initdb takes it from the environment (pg_regress unsets LC_ALL).
installcheck: export LANG := C.UTF-8
installcheck: export LC_COLLATE := C.UTF-8
installcheck: export LC_CTYPE := C.UTF-8

.PHONY: test_outdir prove_installcheck
test_outdir:
	$(MKDIR_P) '$(TEST_OUTDIR)/regress' '$(TEST_OUTDIR)/isolation'

# make prove_installcheck [PROVE_TESTS=test/t/003_poll_wait.pl] [PROVE_FLAGS=-v]:
# the TAP tests, each starting the clusters it needs (PostgreSQL::Test::Cluster)
# from the installed binaries; their logs go to $(TEST_OUTDIR)/tap/tmp_check/log.
prove_installcheck:
	rm -rf '$(TEST_OUTDIR)/tap'
	$(MKDIR_P) '$(TEST_OUTDIR)/tap'
	TESTDIR='$(TEST_OUTDIR)/tap' PATH="$(bindir):$$PATH" \
		PG_REGRESS='$(top_builddir)/src/test/regress/pg_regress' \
		$(PROVE) -I '$(top_builddir)/src/test/perl' $(PROVE_FLAGS) \
		$(if $(PROVE_TESTS),$(PROVE_TESTS),test/t/*.pl)

# make fuzz [FUZZ_SECONDS=N]: build the libFuzzer targets (test/fuzz) and run each N seconds
FUZZ_SECONDS ?= 60
.PHONY: test demo demo-stop fuzz bench chaos
fuzz:
	bash test/fuzz/run.sh $(FUZZ_SECONDS)

test:
	bash test/run-tests.sh

demo:
	bash test/demo.sh start

demo-stop:
	bash test/demo.sh stop

bench:
	bash test/bench/run.sh

chaos:
	bash test/chaos.sh

# make kafka-mock: the mock Kafka cluster (librdkafka) that the Kafka relay
# tests drive (test/perl/EventbusKafka.pm, docs/testing.md).
KAFKA_MOCK = test/kafka/eb_kafka_mock
.PHONY: kafka-mock
kafka-mock: $(KAFKA_MOCK)
$(KAFKA_MOCK): test/kafka/mock_cluster.c
	gcc -O2 -g -Wall -Wextra -Werror -o $@ $< $$(pkg-config --cflags --libs rdkafka)
