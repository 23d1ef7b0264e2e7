#!/usr/bin/env bash
# The test command (make test): installs what it needs (as root), builds with
# -Werror and assertions, installs, and runs every suite: pg_regress and
# isolation (make installcheck, temporary instances), TAP (make
# prove_installcheck, with the mock Kafka cluster of make kafka-mock), and
# pgTAP, examples (the kafka-consumer one on the mock) and conformance on a throwaway
# cluster, fuzz and the benchmark smoke run. Every server runs as a non-root
# user. Ends with "N passed, N failed" and exits non-zero on any failure.
#
#   EB_TEST_PORT   port of the throwaway cluster (54329)
#   EB_SUITES      subset of: structure webhook regress isolation pgtap tap examples conformance fuzz bench (all)
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT=${EB_TEST_PORT:-54329}
SUITES=${EB_SUITES:-"structure webhook regress isolation pgtap tap examples conformance fuzz bench"}
START=$(date +%s)

eb_install_packages || exit 1
eb_build_install || { eb_log "build failed"; exit 1; }
# The mock Kafka cluster of the Kafka rig (TAP 022, the kafka-consumer
# example): built here, so that a missing one fails rather than skips.
eb_log "building the mock Kafka cluster (make kafka-mock)"
make -s -C "$EB_ROOT" kafka-mock >/dev/null || { eb_log "make kafka-mock failed"; exit 1; }

CLUSTER=$(mktemp -d /tmp/eventbus-test.XXXXXX)
OUTDIR=$EB_ROOT/test/results
rm -rf "$OUTDIR"; mkdir -p "$OUTDIR"
# The make test targets write here, as the cluster user (the checkout may be
# root's); what is worth keeping is copied to test/results.
CHECKOUT=$(mktemp -d /tmp/eventbus-check.XXXXXX)
[ "$(id -u)" = 0 ] && chown postgres: "$CHECKOUT"
cleanup() {
	eb_stop_cluster "$CLUSTER"
	[ -f "$CLUSTER/server.log" ] && cp "$CLUSTER/server.log" "$OUTDIR/server.log"
	rm -rf "$CLUSTER" "$CHECKOUT"
}
trap cleanup EXIT

eb_log "starting a throwaway cluster in $CLUSTER (port $PORT)"
eb_start_cluster "$CLUSTER" "$PORT" || exit 1
export PGHOST=$CLUSTER PGPORT=$PORT PGUSER=postgres

PASSED=0
FAILED=0
SUMMARY=()

# count SUITE OUTPUTFILE OKREGEX FAILREGEX: adds a suite's counts to the totals.
count() {
	local suite=$1 file=$2 ok fail
	ok=$(grep -cE "$3" "$file")
	fail=$(grep -cE "$4" "$file")
	PASSED=$((PASSED + ok)); FAILED=$((FAILED + fail))
	SUMMARY+=("$(printf '%-10s %4d passed, %d failed' "$suite" "$ok" "$fail")")
}

# Marks a suite that could not run at all as one failure.
broken() {
	FAILED=$((FAILED + 1))
	SUMMARY+=("$(printf '%-10s did not run: %s' "$1" "$2")")
}

# make_check TARGET [VAR=VALUE...]: runs a test target of the Makefile as the
# cluster user (initdb refuses root), away from the throwaway cluster.
make_check() {
	eb_as_pg env -u PGHOST -u PGPORT -u PGUSER \
		make -s PG_CONFIG="$EB_PG_CONFIG" TEST_OUTDIR="$CHECKOUT" "$@"
}

# keep_regress SUITE: copies what pg_regress left for SUITE (diffs, results,
# the temporary instance's log) to test/results.
keep_regress() {
	local dir=$CHECKOUT/$1
	[ -f "$dir/regression.diffs" ] && cp "$dir/regression.diffs" "$OUTDIR/$1.diffs"
	[ -d "$dir/results" ] && cp -r "$dir/results" "$OUTDIR/$1-results"
	[ -f "$dir/log/postmaster.log" ] && cp "$dir/log/postmaster.log" "$OUTDIR/$1-server.log"
}

cd "$EB_ROOT"
REGRESS_OK='^(test| ) +[^ ]+ +\.\.\. ok'
REGRESS_FAIL='^(test| ) +[^ ]+ +\.\.\. FAILED'

for suite in $SUITES; do
	case $suite in
	regress | isolation)
		# make installcheck with the other suite's list emptied: a temporary
		# instance of its own (test/eventbus.conf).
		[ $suite = regress ] && only=ISOLATION= || only=REGRESS=
		eb_log "$suite (make installcheck $only)"
		make_check installcheck $only >"$OUTDIR/$suite.out" 2>&1
		status=$?
		cat "$OUTDIR/$suite.out"
		count $suite "$OUTDIR/$suite.out" "$REGRESS_OK" "$REGRESS_FAIL"
		[ $status = 0 ] || grep -qE "$REGRESS_FAIL" "$OUTDIR/$suite.out" ||
			broken $suite "make installcheck failed (see test/results/$suite.out)"
		keep_regress $suite
		;;
	pgtap)
		ls test/pgtap/*.sql >/dev/null 2>&1 || continue
		eb_log "pgTAP"
		psql -q -X -d postgres -c "DROP DATABASE IF EXISTS eventbus_tap" \
			-c "CREATE DATABASE eventbus_tap" >/dev/null &&
			psql -q -X -d eventbus_tap -c "CREATE EXTENSION pgtap" -c "CREATE EXTENSION eventbus" >/dev/null ||
			{ broken pgtap "could not create database eventbus_tap"; continue; }
		pg_prove --verbose -d eventbus_tap test/pgtap/*.sql >"$OUTDIR/pgtap.out" 2>&1
		cat "$OUTDIR/pgtap.out"
		count pgtap "$OUTDIR/pgtap.out" '^ *ok [0-9]+' '^ *not ok [0-9]+'
		grep -q '^Result: PASS' "$OUTDIR/pgtap.out" || grep -q '^ *not ok' "$OUTDIR/pgtap.out" ||
			broken pgtap "pg_prove did not pass (see test/results/pgtap.out)"
		;;
	tap)
		ls test/t/*.pl >/dev/null 2>&1 || continue
		eb_log "TAP (make prove_installcheck)"
		# TAP 023 reads the relay's messages with the kafkajs example consumer.
		(cd docs/examples/kafka-consumer && npm ci --no-audit --no-fund >/dev/null 2>&1) ||
			eb_log "npm ci in docs/examples/kafka-consumer failed: TAP 023 will fail"
		make_check prove_installcheck PROVE_FLAGS=-v >"$OUTDIR/tap.out" 2>&1
		cat "$OUTDIR/tap.out"
		count tap "$OUTDIR/tap.out" '^ *ok [0-9]+' '^ *not ok [0-9]+'
		grep -q '^Result: PASS' "$OUTDIR/tap.out" || grep -q '^ *not ok' "$OUTDIR/tap.out" ||
			broken tap "prove did not pass (see test/results/tap.out)"
		cp -r "$CHECKOUT"/tap/tmp_check/log "$OUTDIR/tap-logs" 2>/dev/null
		;;
	examples)
		eb_log "consumer examples (docs/examples)"
		psql -q -X -d postgres -c "DROP DATABASE IF EXISTS examples" \
			-c "CREATE DATABASE examples" >/dev/null &&
			psql -q -X -d examples -c "CREATE EXTENSION eventbus" >/dev/null ||
			{ broken examples "could not create database examples"; continue; }
		# As the calling user, who owns the checkout (node_modules is theirs).
		# Debian's psycopg2 is for /usr/bin/python3, whatever python3 is first
		# on the PATH.
		(
			cd docs/examples && npm ci --no-audit --no-fund || echo "npm ci failed"
			for example in "/usr/bin/python3 consumer.py" "node consumer.js"; do
				echo "--- $example --self-test"
				if PGDATABASE=examples timeout 120 $example --self-test; then
					echo "ok - $example"
				else
					echo "not ok - $example"
				fi
			done
			# The Kafka consumer (kafkajs) on the mock Kafka cluster.
			cd kafka-consumer && npm ci --no-audit --no-fund || echo "npm ci failed"
			echo "--- kafka-consumer/self-test.sh"
			if timeout 120 bash self-test.sh; then
				echo "ok - kafka-consumer/consumer.js"
			else
				echo "not ok - kafka-consumer/consumer.js"
			fi
		) >"$OUTDIR/examples.out" 2>&1
		cat "$OUTDIR/examples.out"
		count examples "$OUTDIR/examples.out" '^ok - ' '^not ok - '
		;;
	structure)
		# The shape of the code (docs/architecture.md): no call cycle between
		# the files (modules) of src/, no C file over 900 lines.
		eb_log "structure (test/tools/depgraph.py, file sizes)"
		{
			if python3 test/tools/depgraph.py src; then
				echo "ok - no call cycle between the modules of src/"
			else
				echo "not ok - a call cycle between modules of src/ (above)"
			fi
			big=$(find src -name '*.c' -exec wc -l {} + | awk '$2 != "total" && $1 > 900 {print $2 " (" $1 ")"}')
			if [ -z "$big" ]; then
				echo "ok - no C file over 900 lines"
			else
				echo "not ok - C files over 900 lines: $big"
			fi
		} >"$OUTDIR/structure.out" 2>&1
		cat "$OUTDIR/structure.out"
		count structure "$OUTDIR/structure.out" '^ok - ' '^not ok - '
		;;
	webhook)
		# The webhook test server of the HTTP relay tests (test/webhook):
		# its signature check against the Standard Webhooks test vector and
		# each fault mode, on 127.0.0.1; no PostgreSQL, about 2 s.
		eb_log "webhook test server (test/webhook/test_server.py)"
		python3 test/webhook/test_server.py -v >"$OUTDIR/webhook.out" 2>&1
		status=$?
		cat "$OUTDIR/webhook.out"
		count webhook "$OUTDIR/webhook.out" '\.\.\. ok$' '\.\.\. (FAIL|ERROR)$'
		[ $status = 0 ] || grep -qE '\.\.\. (FAIL|ERROR)$' "$OUTDIR/webhook.out" ||
			broken webhook "test_server.py failed (see test/results/webhook.out)"
		;;
	conformance)
		# The JSON Schema Test Suite (a copy in test/jsonschema/suite) through
		# eventbus.validate; fails below the figures of test/jsonschema/expected.txt.
		eb_log "JSON Schema conformance (test/jsonschema)"
		psql -q -X -d postgres -c "DROP DATABASE IF EXISTS conformance" \
			-c "CREATE DATABASE conformance" >/dev/null &&
			psql -q -X -d conformance -c "CREATE EXTENSION eventbus" >/dev/null ||
			{ broken conformance "could not create database conformance"; continue; }
		if /usr/bin/python3 test/jsonschema/conformance.py --dsn "dbname=conformance" \
			--suite-dir test/jsonschema/suite >"$OUTDIR/conformance.out" 2>&1; then
			echo "ok - conformance at or above test/jsonschema/expected.txt" >>"$OUTDIR/conformance.out"
		else
			echo "not ok - conformance below test/jsonschema/expected.txt (or the runner failed)" >>"$OUTDIR/conformance.out"
		fi
		cat "$OUTDIR/conformance.out"
		count conformance "$OUTDIR/conformance.out" '^ok - ' '^not ok - '
		;;
	fuzz)
		# libFuzzer targets (test/fuzz/README.md): topic parser and JSON Schema
		# validator, a few seconds each; long runs: test/fuzz/run.sh 3600.
		eb_log "fuzz (test/fuzz/run.sh ${EB_FUZZ_SECONDS:-8})"
		bash test/fuzz/run.sh "${EB_FUZZ_SECONDS:-8}" >"$OUTDIR/fuzz.out" 2>&1
		cat "$OUTDIR/fuzz.out"
		count fuzz "$OUTDIR/fuzz.out" '^ok - ' '^not ok - '
		grep -qE '^(not )?ok - ' "$OUTDIR/fuzz.out" || broken fuzz "run.sh ran no target (see test/results/fuzz.out)"
		[ -d test/fuzz/build/crashes ] && cp -r test/fuzz/build/crashes "$OUTDIR/fuzz-crashes"
		;;
	bench)
		# The benchmark (make bench) in smoke mode, on a cluster of its own:
		# every target with tiny runs, so that it keeps working. Its figures
		# mean nothing and nothing is timed against a target here.
		eb_log "benchmark smoke run (EB_BENCH_SMOKE=1 test/bench/run.sh)"
		benchout=$(mktemp -d /tmp/eventbus-bench-smoke.XXXXXX)
		if EB_BENCH_SMOKE=1 EB_BENCH_PORT=$((PORT + 7)) EB_BENCH_OUT="$benchout" EB_BENCH_INSTALL=0 \
			bash test/bench/run.sh >"$OUTDIR/bench.out" 2>&1; then
			# P9 and P10 need the mock Kafka cluster (make kafka-mock) and kcat.
			rows=(P1 P1b P2 P3 'P3 fresh' P4 P5 'P5 (B)' 'P5 (PgQ)' P6 P7 P8 P11 P12 P9 'P9 relay' P10)
			if grep -q 'P9/P10 skipped' "$OUTDIR/bench.out"; then
				echo "ok - bench smoke: P9, P10 # SKIP $(sed -n 's/.*P9\/P10 skipped: //p' "$OUTDIR/bench.out" | head -n 1)" >>"$OUTDIR/bench.out"
				rows=("${rows[@]:0:14}")
			fi
			for p in "${rows[@]}"; do
				if grep -q "^| $p durable |" "$benchout/smoke.md"; then
					echo "ok - bench smoke: $p measured"
				else
					echo "not ok - bench smoke: no $p row in the table"
				fi
			done >>"$OUTDIR/bench.out"
		else
			echo "not ok - bench smoke run failed (see test/results/bench.out)" >>"$OUTDIR/bench.out"
		fi
		rm -rf "$benchout"
		grep -E '^(not )?ok - ' "$OUTDIR/bench.out"
		count bench "$OUTDIR/bench.out" '^ok - ' '^not ok - '
		;;
	*)
		broken "$suite" "unknown suite"
		;;
	esac
done

echo
echo "eventbus test summary ($(($(date +%s) - START)) s; outputs in test/results/)"
for line in "${SUMMARY[@]}"; do echo "  $line"; done
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ] && [ "$PASSED" -gt 0 ]
