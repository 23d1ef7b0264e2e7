#!/usr/bin/env bash
# Runs the libFuzzer targets, each for SECONDS (default 10), building them
# first (build.sh). Prints one line per target, "ok - <target> ..." or
# "not ok - <target> ...", and exits non-zero if any target found a crash
# (or could not run).
#
#   test/fuzz/run.sh [SECONDS] [topic|validator]...
#   test/fuzz/run.sh repro topic|validator FILE...   run inputs once (a crash)
#
# topic       test/fuzz/build/topic_fuzz, a standalone binary (ASan, UBSan)
# validator   test/fuzz/build/validator_fuzz.so inside a single-user backend
#             ("postgres --single") on a scratch data directory,
#             test/fuzz/build/pgdata (made here with initdb, as the
#             "postgres" user when run as root)
#
# Corpora: the seeds in test/fuzz/corpus/<target>/ are read only; what
# libFuzzer finds goes to test/fuzz/build/corpus/<target>/ and is reused by
# the next run. The validator is also seeded from the JSON Schema Test Suite
# when it is there ($EB_JSONSCHEMA_SUITE, else test/jsonschema/suite).
# Crashes land in test/fuzz/build/crashes/<target>-crash-<sha1> (also
# timeout-, oom-, slow-unit-); the log of the last run of each target is
# test/fuzz/build/<target>.log. See test/fuzz/README.md.
#
#   EB_FUZZ_ARGS   extra libFuzzer flags for every target (e.g. "-seed=1")
#   PG_CONFIG      pg_config of the server (default: PostgreSQL 15's)
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=$HERE/build
REPRO=
if [ "${1:-}" = repro ]; then
	REPRO=${2:?usage: run.sh repro topic|validator FILE...}
	shift 2
	SECS=0
	FILES=()
	for f in "$@"; do FILES+=("$(cd "$(dirname "$f")" && pwd)/$(basename "$f")"); done
	[ ${#FILES[@]} -gt 0 ] || { echo "usage: run.sh repro topic|validator FILE..." >&2; exit 2; }
else
	SECS=${1:-10}
	shift || true
	TARGETS=${*:-topic validator}
fi
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
[ -x "$PG_CONFIG" ] || PG_CONFIG=pg_config
SUITE=${EB_JSONSCHEMA_SUITE:-$HERE/../jsonschema/suite}
[ -d "$SUITE" ] || SUITE=/work/shared/jsonschema-suite
EXTRA=(${EB_FUZZ_ARGS:-})

case $SECS in
'' | *[!0-9]*) echo "usage: run.sh [SECONDS] [topic|validator]..." >&2; exit 2 ;;
esac
# libFuzzer reads -max_total_time=0 as "no limit".
if [ -z "$REPRO" ] && [ "$SECS" -lt 1 ]; then
	echo "run.sh: SECONDS must be at least 1" >&2
	exit 2
fi

# The cluster user: initdb and postgres refuse to run as root.
as_pg() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
pg_owned_dir() {
	mkdir -p "$@"
	[ "$(id -u)" = 0 ] && chown postgres: "$@"
	return 0
}

FAILED=0
REMOTES=
report() {		# report ok|fail TARGET TEXT
	if [ "$1" = ok ]; then
		echo "ok - $2 $3"
	else
		echo "not ok - $2 $3"
		FAILED=$((FAILED + 1))
	fi
}

# Did libFuzzer finish cleanly? (exit status, "Done" line, no report)
clean_run() {	# clean_run RC LOG
	[ "$1" -eq 0 ] && grep -q '^Done [0-9]* runs' "$2" &&
		! grep -qE 'ERROR: libFuzzer|ERROR: AddressSanitizer|runtime error:|invariant violated|==[0-9]+== ?ERROR' "$2"
}

# Says what went wrong: the report from the log, and the artifact.
show_failure() {	# show_failure LOG
	echo "---- $1: the report"
	grep -m 8 -E 'ERROR: libFuzzer|ERROR: AddressSanitizer|ERROR: UndefinedBehaviorSanitizer|runtime error:|invariant violated|SUMMARY:' "$1"
	echo "---- $1 (last 40 lines)"
	tail -n 40 "$1"
	grep -h 'Test unit written to' "$1" | sed 's/^.*Test unit written to /artifact: /'
	echo "----"
}

# Runs libFuzzer inside a single-user backend: single_user LOG ARG...
single_user() {
	local log=$1 arr="" a bindir sql
	shift
	bindir=$("$PG_CONFIG" --bindir)
	for a in "$@"; do
		arr+="${arr:+,}'${a//\'/\'\'}'"
	done
	sql="CREATE OR REPLACE FUNCTION eb_fuzz_validator(text[]) RETURNS integer AS '$BUILD/validator_fuzz.so' LANGUAGE C STRICT
SELECT eb_fuzz_validator(ARRAY[$arr])"
	echo "$sql" | as_pg env EB_FUZZ_REMOTES="$REMOTES" "$bindir/postgres" --single \
		-D "$BUILD/pgdata" -c max_stack_depth=2MB -c log_min_messages=fatal postgres >"$log" 2>&1
}

run_topic() {
	local log=$BUILD/topic.log rc runs
	if ! "$HERE/build.sh" topic >"$BUILD/build-topic.log" 2>&1; then
		cat "$BUILD/build-topic.log"
		report fail topic_fuzz "(build failed)"
		return
	fi
	mkdir -p "$BUILD/corpus/topic" "$BUILD/crashes"
	"$BUILD/topic_fuzz" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
		-dict="$HERE/topic.dict" -artifact_prefix="$BUILD/crashes/topic-" \
		-print_final_stats=1 "${EXTRA[@]}" \
		"$BUILD/corpus/topic" "$HERE/corpus/topic" >"$log" 2>&1
	rc=$?
	runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
	if clean_run "$rc" "$log"; then
		report ok topic_fuzz "($runs runs in ${SECS} s, corpus $(ls "$BUILD/corpus/topic" | wc -l) files)"
	else
		show_failure "$log"
		report fail topic_fuzz "(exit $rc: see $log and $BUILD/crashes/)"
	fi
}

run_validator() {
	local log=$BUILD/validator.log rc runs bindir seeds=()
	if ! "$HERE/build.sh" validator >"$BUILD/build-validator.log" 2>&1; then
		cat "$BUILD/build-validator.log"
		report fail validator_fuzz "(build failed)"
		return
	fi
	bindir=$("$PG_CONFIG" --bindir)
	if [ ! -f "$BUILD/pgdata/PG_VERSION" ]; then
		rm -rf "$BUILD/pgdata"
		pg_owned_dir "$BUILD/pgdata"
		if ! as_pg "$bindir/initdb" -D "$BUILD/pgdata" -U postgres --auth=trust -E UTF8 \
			--locale=C.UTF-8 >"$BUILD/initdb.log" 2>&1; then
			cat "$BUILD/initdb.log"
			report fail validator_fuzz "(initdb of $BUILD/pgdata failed)"
			return
		fi
	fi
	pg_owned_dir "$BUILD/corpus/validator" "$BUILD/crashes"
	[ "$(id -u)" = 0 ] && chmod 1777 "$BUILD/crashes"
	if [ -f "$SUITE/draft2020-12.jsonl" ]; then
		if [ ! -f "$BUILD/remotes.json" ] || [ ! -d "$BUILD/corpus/validator-suite" ]; then
			/usr/bin/python3 "$HERE/suite_corpus.py" "$SUITE" "$BUILD/corpus/validator-suite" \
				"$BUILD/remotes.json" >/dev/null || echo "run.sh: could not seed from the suite in $SUITE" >&2
		fi
		[ -f "$BUILD/remotes.json" ] && REMOTES=$BUILD/remotes.json
		[ -d "$BUILD/corpus/validator-suite" ] && seeds+=("$BUILD/corpus/validator-suite")
	fi

	single_user "$log" -max_total_time="$SECS" -timeout=20 -rss_limit_mb=2048 -max_len=16384 \
		-dict="$HERE/validator.dict" -artifact_prefix="$BUILD/crashes/validator-" \
		-print_final_stats=1 "${EXTRA[@]}" \
		"$BUILD/corpus/validator" "$HERE/corpus/validator" "${seeds[@]}"
	rc=$?
	runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
	if clean_run "$rc" "$log"; then
		report ok validator_fuzz "($runs runs in ${SECS} s, corpus $(ls "$BUILD/corpus/validator" | wc -l) files)"
	else
		show_failure "$log"
		report fail validator_fuzz "(exit $rc: see $log and $BUILD/crashes/)"
	fi
}

mkdir -p "$BUILD"
if [ -n "$REPRO" ]; then
	case $REPRO in
	topic)
		[ -x "$BUILD/topic_fuzz" ] || "$HERE/build.sh" topic || exit 1
		"$BUILD/topic_fuzz" -timeout=10 -rss_limit_mb=2048 "${EXTRA[@]}" "${FILES[@]}"
		exit
		;;
	validator)
		[ -f "$BUILD/validator_fuzz.so" ] || "$HERE/build.sh" validator || exit 1
		[ -f "$BUILD/pgdata/PG_VERSION" ] || { echo "run.sh: no $BUILD/pgdata: run \"run.sh 1 validator\" once" >&2; exit 1; }
		[ -f "$BUILD/remotes.json" ] && REMOTES=$BUILD/remotes.json
		single_user "$BUILD/repro.log" -timeout=20 -rss_limit_mb=2048 "${EXTRA[@]}" "${FILES[@]}"
		rc=$?
		cat "$BUILD/repro.log"
		for f in "${FILES[@]}"; do
			echo "-- $f as SQL (psql, database with eventbus):"
			/usr/bin/python3 - "$f" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
parts = data.split(b"\0")
q = lambda b: "'" + b.decode("utf-8", "replace").replace("'", "''") + "'"
if len(parts) > 1:
    print("SELECT eventbus.validate(%s, %s);" % (q(parts[0]), q(parts[1])))
    print("SELECT * FROM eventbus.validation_errors(%s, %s);" % (q(parts[0]), q(parts[1])))
else:
    print("SELECT eventbus.validate(%s, 'null');  -- and the fixed documents of validator_fuzz.c" % q(parts[0]))
PY
		done
		exit $rc
		;;
	*) echo "run.sh: unknown target $REPRO (topic, validator)" >&2; exit 2 ;;
	esac
fi
for target in $TARGETS; do
	case $target in
	topic) run_topic ;;
	validator) run_validator ;;
	*) report fail "$target" "(unknown target: topic, validator)" ;;
	esac
done
[ "$FAILED" -eq 0 ]
