# eventbus: PGXS build, tests, demo.
#
#   make            build the extension
#   make install    install it into the PostgreSQL found by pg_config
#   make test       install packages (as root), build, install, run every suite
#                   on a throwaway cluster; ends with "N passed, N failed"
#   make demo       the same set-up, then a persistent local cluster with a demo
#   make demo-stop  stop and remove the demo cluster
#   make fuzz       build the libFuzzer targets (test/fuzz) and run each FUZZ_SECONDS (60)
#   make bench      the performance targets, side by side on a throwaway cluster (docs/performance.md)

EXTENSION  = eventbus
EXTVERSION = 0.1.0

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
	src/worker.o \
	src/handler.o \
	src/jsonschema.o \
	src/schemareg.o \
	src/stats.o \
	src/consume.o \
	src/metrics_http.o

# The install script is concatenated from sql/NN_*.sql, by concern.
SQL_PARTS  = $(sort $(wildcard sql/[0-9]*.sql))
DATA_built = $(EXTENSION)--$(EXTVERSION).sql
DATA       = $(wildcard sql/updates/$(EXTENSION)--*--*.sql)

REGRESS      = topics publish consume errors options workers schemas stats
REGRESS_OPTS = --inputdir=test/regress --outputdir=. --load-extension=$(EXTENSION)

ISOLATION      = $(basename $(notdir $(wildcard test/isolation/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test/isolation --outputdir=output_iso --load-extension=$(EXTENSION)

PG_CONFIG ?= pg_config
# Warnings as the style card asks; the test command adds -Werror and
# assertions through EB_CFLAGS.
EB_CFLAGS ?=
PG_CFLAGS += -Wall -Wextra -Wmissing-prototypes -Wno-unused-parameter \
	-Wno-sign-compare -Wno-missing-field-initializers $(EB_CFLAGS)

EXTRA_CLEAN = $(DATA_built) output_iso

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(EXTENSION)--$(EXTVERSION).sql: $(SQL_PARTS)
	cat $^ > $@

$(OBJS): src/eventbus.h src/jsonschema.h

# make fuzz [FUZZ_SECONDS=N]: build the libFuzzer targets (test/fuzz) and run each N seconds
FUZZ_SECONDS ?= 60
.PHONY: test demo demo-stop fuzz bench
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
