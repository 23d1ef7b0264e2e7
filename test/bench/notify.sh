#!/usr/bin/env bash
# Targets P5 and P6 (docs/performance.md), on a throwaway cluster of its own
# (durable: fsync on, synchronous_commit on; eventbus and pg_cron preloaded).
#
# P5: 8 pgbench clients publish one event per transaction, alone (A) and
#     while 10 connections LISTEN on the channels of 10 subscriptions but
#     never poll (N, the notifications alone): N >= 0.95 A; and while each
#     of them polls and acks on every notification (B): B >= 0.80 A.
#     Reference: a plain INSERT of the same row + pg_notify('ref', '') in one
#     transaction, alone (C) and with 10 listeners on channel ref reading the
#     new rows by id on each notification (D).
#     PgQ beside it: 8 clients pgq.insert_event of the same topic and payload
#     (queue p5q), with a ticker (pgq.ticker every EB_BENCH_PGQ_TICK s, 1 as
#     pgqd does by default, and ticker_max_lag as long: a tick per call while
#     events come) and nothing else (Q), and with 10 consumers registered on
#     the queue, each looping next_batch / get_batch_events / finish_batch
#     (R; test/bench/consumers.py pgq): R / Q is PgQ's cost of consuming.
#     Variants run round-robin (A B N C D Q R, A B N C D Q R, ...), each
#     after an emptied log (and a new queue) and a CHECKPOINT.
# P6: commit -> LISTEN wake-up -> poll returned, p50/p99, at 1000 events/s
#     (test/listen_latency.py, 4 publishing connections sharing the rate: one
#     connection with durable commits does about 1000 commits/s on a small
#     machine); the same for the plain INSERT + pg_notify reference, whose
#     listener is woken by the publishing commit itself.
#
# Not part of the test suite. Run as root or as a user that can run initdb:
#   test/bench/notify.sh
#   EB_BENCH_PORT   port of the throwaway cluster (54460)
#   EB_BENCH_TIME   seconds per pgbench run (10)
#   EB_BENCH_ROUNDS rounds of the P5 variants (2)
#   EB_BENCH_VARIANTS subset of "A B N C D Q R" (all; Q and R only where PgQ is installed)
#   EB_BENCH_PGQ_TICK seconds between pgq.ticker calls in Q and R (1, pgqd's ticker_period)
#   EB_BENCH_REF_ROUNDS rounds in which the reference variants C and D run (all)
#   EB_BENCH_KEEP   1: keep the cluster's directory (server.log) afterwards
#   EB_BENCH_P6_SECONDS seconds of each P6 latency run (5)
#   EB_BENCH_CATCHUP seconds the listeners get to catch up after a P5 run (2)
# Used by test/bench/run.sh (make bench), which runs it on its own cluster:
#   EB_BENCH_CLUSTER  socket directory of a running cluster (on EB_BENCH_PORT)
#                     to use instead of starting one; it is left running
#   EB_BENCH_RESULTS  file to which the raw figures are appended, one per line:
#                     "P5 VARIANT tps published consumed", "P6 LABEL rate p50 p90 p99 max"
#   EB_BENCH_SETUP_ONLY 1: only create the database (if missing), then exit
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/../lib.sh"

PORT=${EB_BENCH_PORT:-54460}
T=${EB_BENCH_TIME:-10}
ROUNDS=${EB_BENCH_ROUNDS:-2}
VARIANTS=${EB_BENCH_VARIANTS-"A B N C D Q R"}
PGQ_TICK=${EB_BENCH_PGQ_TICK:-1}
REF_ROUNDS=${EB_BENCH_REF_ROUNDS:-$ROUNDS}
PY=/usr/bin/python3
LATENCY=$EB_ROOT/test/listen_latency.py
CONSUMERS=$HERE/consumers.py
DB=eventbus_notify

$PY -c 'import psycopg2' 2>/dev/null || { eb_log "$PY cannot import psycopg2 (apt-get install python3-psycopg2)"; exit 1; }
P6_SECONDS=${EB_BENCH_P6_SECONDS:-5}
CATCHUP=${EB_BENCH_CATCHUP:-2}
OWN_CLUSTER=1
if [ -n "${EB_BENCH_CLUSTER:-}" ]; then
	OWN_CLUSTER=0
	DIR=$EB_BENCH_CLUSTER
else
	DIR=$(mktemp -d /tmp/eventbus-notify.XXXXXX)
fi
WORK=$(mktemp -d /tmp/eventbus-notify-work.XXXXXX)
LISTENER_PID=
cleanup() {
	[ -n "$LISTENER_PID" ] && kill "$LISTENER_PID" 2>/dev/null || true
	[ $OWN_CLUSTER = 1 ] && eb_stop_cluster "$DIR"
	if [ "${EB_BENCH_KEEP:-0}" = 1 ]; then
		eb_log "kept $DIR (server.log) and $WORK (listener output)"
	else
		[ $OWN_CLUSTER = 1 ] && rm -rf "$DIR"
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

if [ $OWN_CLUSTER = 1 ]; then
	eb_log "starting a throwaway cluster in $DIR (port $PORT)"
	eb_start_cluster "$DIR" "$PORT" "synchronous_commit = on
max_connections = 100
shared_buffers = 256MB" || exit 1
fi

export PGHOST=$DIR PGPORT=$PORT PGUSER=postgres
DSN="host=$DIR port=$PORT user=postgres dbname=$DB"
P=(psql -X -q -v ON_ERROR_STOP=1)
# The database is created once (a cluster of our own has none; on run.sh's
# cluster it was made at the start, with the extension installed then).
[ "$("${P[@]}" -At -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = '$DB'")" = 1 ] ||
	"${P[@]}" -d postgres -c "CREATE DATABASE $DB"
"${P[@]}" -d $DB -f "$HERE/setup.sql"
# PgQ, for variants Q and R, where it is installed.
"${P[@]}" -d $DB -c "DO \$\$ BEGIN IF EXISTS (SELECT FROM pg_available_extensions WHERE name = 'pgq')
	THEN CREATE EXTENSION IF NOT EXISTS pgq; END IF; END \$\$"
"${P[@]}" -d $DB >/dev/null <<'SQL'
CREATE TABLE IF NOT EXISTS ref (id bigserial PRIMARY KEY, topic text, payload jsonb);
SELECT eventbus.subscribe('l_' || i, array['orders.#']) FROM generate_series(1, 10) i
 WHERE NOT EXISTS (SELECT FROM eventbus.subscriptions WHERE name = 'l_' || i);
SQL
# Wait for the database's worker (started when CREATE EXTENSION commits).
for _ in $(seq 100); do
	[ "$("${P[@]}" -At -d $DB -c "SELECT count(*) FROM pg_stat_activity
		WHERE backend_type = 'eventbus worker' AND datname = '$DB'")" = 1 ] && break
	sleep 0.1
done
[ "${EB_BENCH_SETUP_ONLY:-0}" = 1 ] && exit 0
HAVE_PGQ=$("${P[@]}" -At -d $DB -c "SELECT count(*) FROM pg_extension WHERE extname = 'pgq'")
if [ "$HAVE_PGQ" != 1 ]; then
	case " $VARIANTS " in *" Q "* | *" R "*) eb_log "PgQ is not installed: no variants Q and R" ;; esac
	VARIANTS=$(echo " $VARIANTS " | sed 's/ [QR]\b//g')
fi

# The reference: the same row shape as publish1.sql, and a NOTIFY, in one
# statement (one transaction, one round trip, as publish1.sql).
cat >"$WORK/ref.sql" <<'SQL'
\set id random(1, 1000000000)
\set t random(1, 20)
WITH i AS (INSERT INTO ref (topic, payload) VALUES ('orders.r' || :t || '.created', ('{"order_id": ' || :id || ', "customer_id": "c-000042", "region": "eu", "items": [{"sku": "SKU-10001", "qty": 2, "price": 19.99}, {"sku": "SKU-20002", "qty": 1, "price": 5.49}], "total": 45.47, "currency": "EUR"}')::jsonb) RETURNING id) SELECT pg_notify('ref', '') FROM i;
SQL
# PgQ's publisher: the same topic and payload as publish1.sql (ev_data is text).
cat >"$WORK/pgq.sql" <<'SQL'
\set id random(1, 1000000000)
\set t random(1, 20)
SELECT pgq.insert_event('p5q', 'orders.r' || :t || '.created', '{"order_id": ' || :id || ', "customer_id": "c-000042", "region": "eu", "items": [{"sku": "SKU-10001", "qty": 2, "price": 19.99}, {"sku": "SKU-20002", "qty": 1, "price": 5.49}], "total": 45.47, "currency": "EUR"}');
SQL

reset() {
	local pgq=()
	# A new queue p5q with 10 consumers registered (they consume in R only).
	[ "$HAVE_PGQ" = 1 ] && pgq=(-c "SELECT pgq.drop_queue('p5q', true) FROM pgq.queue WHERE queue_name = 'p5q'"
		-c "SELECT pgq.create_queue('p5q')"
		-c "SELECT pgq.set_queue_config('p5q', 'ticker_max_lag', '$PGQ_TICK seconds')"
		-c "SELECT pgq.register_consumer('p5q', 'c' || i) FROM generate_series(1, 10) i")
	"${P[@]}" -d $DB -c "TRUNCATE eventbus.event_log_0, eventbus.event_log_1, eventbus.event_log_2,
		eventbus.delivery, eventbus.batch, ref" "${pgq[@]}" -c "VACUUM" -c "CHECKPOINT" >/dev/null
}

# start_listeners ARGS...: listen_latency.py --listen-only in the background
# (pgq ARGS...: consumers.py pgq); returns once its connections are up.
start_listeners() {
	if [ "$1" = pgq ]; then
		$PY "$CONSUMERS" "$@" --dsn "$DSN" --queue p5q --tick "$PGQ_TICK" --seconds 3600 >"$WORK/listeners.out" 2>&1 &
	else
		$PY "$LATENCY" --dsn "$DSN" --listen-only --seconds 3600 --listeners 10 "$@" >"$WORK/listeners.out" 2>&1 &
	fi
	LISTENER_PID=$!
	for _ in $(seq 300); do
		grep -q '^ready' "$WORK/listeners.out" && return 0
		kill -0 "$LISTENER_PID" 2>/dev/null || break
		sleep 0.1
	done
	cat "$WORK/listeners.out" >&2
	return 1
}

# stop_listeners: lets them catch up for $CATCHUP s (2), stops them (SIGTERM), sets
# CONSUMED to the events they received in all.
stop_listeners() {
	sleep "$CATCHUP"
	kill -TERM "$LISTENER_PID"
	wait "$LISTENER_PID" || { cat "$WORK/listeners.out" >&2; LISTENER_PID=; return 1; }
	LISTENER_PID=
	CONSUMED=$(awk '/^listener /{ for (i = 1; i <= NF; i++) if ($i ~ /^events/) n += $(i - 1) } END { print n + 0 }' \
		"$WORK/listeners.out")
}

# run VARIANT: one pgbench run; appends "VARIANT tps published consumed" to results.
run() {
	local v=$1 script listeners=() tps published consumed=-
	case $v in
	A) script=$HERE/publish1.sql ;;
	B) script=$HERE/publish1.sql; listeners=(--subscription l) ;;
	N) script=$HERE/publish1.sql; listeners=(--subscription l --no-poll) ;;
	C) script=$WORK/ref.sql ;;
	D) script=$WORK/ref.sql; listeners=(--reference ref) ;;
	Q) script=$WORK/pgq.sql; listeners=(pgq --consumers 0) ;;
	R) script=$WORK/pgq.sql; listeners=(pgq --consumers 10) ;;
	esac
	reset
	[ ${#listeners[@]} -gt 0 ] && start_listeners "${listeners[@]}"
	tps=$("$EB_PGBIN/pgbench" -n -c 8 -j 2 -T "$T" -f "$script" $DB 2>&1 |
		sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p')
	[ -n "$tps" ] || { eb_log "pgbench failed for $v"; return 1; }
	if [ "$v" = C ] || [ "$v" = D ]; then
		published=$("${P[@]}" -At -d $DB -c "SELECT count(*) FROM ref")
	elif [ "$v" = Q ] || [ "$v" = R ]; then
		published=$("${P[@]}" -At -d $DB -c "SELECT count(*) FROM $("${P[@]}" -At -d $DB -c "SELECT queue_data_pfx FROM pgq.queue WHERE queue_name = 'p5q'")")
	else
		published=$("${P[@]}" -At -d $DB -c "SELECT count(*) FROM eventbus.event_log")
	fi
	if [ ${#listeners[@]} -gt 0 ]; then
		stop_listeners
		consumed=$CONSUMED
		[ "$v" = N ] && consumed=-  # they only counted notifications
		[ "$v" = Q ] && consumed=-  # the ticker alone
	fi
	eb_log "$v: $tps tps, $published published, consumed by the listeners: $consumed"
	echo "$v $tps $published $consumed" >>"$WORK/results"
}

: >"$WORK/results"
for r in $(seq "$ROUNDS"); do
	for v in $VARIANTS; do
		case $v in C | D) [ "$r" -le "$REF_ROUNDS" ] || continue ;; esac
		eb_log "round $r, variant $v ($T s)"
		run "$v"
	done
done

# P6: latency at 1000 events/s, eventbus (worker tick -> NOTIFY) and the
# reference (NOTIFY by the publishing transaction).
reset
eb_log "P6: listen_latency.py --rate 1000 --seconds $P6_SECONDS --publishers 4"
$PY "$LATENCY" --dsn "$DSN" --rate 1000 --seconds "$P6_SECONDS" --publishers 4 --subscription p6 --topic latency.p6 >"$WORK/p6.out" 2>&1 ||
	{ cat "$WORK/p6.out" >&2; exit 1; }
$PY "$LATENCY" --dsn "$DSN" --rate 1000 --seconds "$P6_SECONDS" --publishers 4 --reference p6ref --topic latency.p6 >"$WORK/p6ref.out" 2>&1 ||
	{ cat "$WORK/p6ref.out" >&2; exit 1; }

$PY - "$WORK/results" "$WORK/p6.out" "$WORK/p6ref.out" "$T" "$(nproc)" "$P6_SECONDS" "$CATCHUP" "${EB_BENCH_RESULTS:-}" <<'PY'
import re, sys
results, p6, p6ref, seconds, cores, p6_seconds, catchup, raw = sys.argv[1:]
raw = open(raw, "a") if raw else None
if raw:
    for line in open(results):
        raw.write("P5 " + line)
names = {
    "A": "publish, no listeners",
    "B": "publish, 10 listeners poll+ack",
    "N": "publish, 10 LISTEN, no poll",
    "C": "INSERT+pg_notify, no listeners",
    "D": "INSERT+pg_notify, 10 listeners",
    "Q": "PgQ insert_event, ticker only",
    "R": "PgQ insert_event, 10 consumers",
}
runs = {}
for line in open(results):
    v, tps, published, consumed = line.split()
    runs.setdefault(v, []).append((float(tps), int(published), consumed))
mean = {v: sum(r[0] for r in rs) / len(rs) for v, rs in runs.items()}
print(f"\nP5: pgbench -c 8 -j 2 -T {seconds}, one event per transaction, durable commits, {cores} cores")
print(f"{'variant':<34} {'tps per run':<24} {'mean':>8} {'/ A':>6} {'consumed':>9}")
for v in "ABNCDQR":
    if v not in runs:
        continue
    rs = runs[v]
    per = " ".join(f"{r[0]:.0f}" for r in rs)
    ratio = f"{mean[v] / mean['A']:.2f}" if "A" in mean else "-"
    cons = [(int(r[2]), r[1]) for r in rs if r[2] != "-"]
    if cons:
        fan = 10  # every listener gets every event (its own subscription or the whole table)
        consumed = f"{100 * sum(c for c, _ in cons) / (fan * sum(p for _, p in cons)):.0f} %"
    else:
        consumed = "-"
    print(f"{v} {names[v]:<32} {per:<24} {mean[v]:>8.0f} {ratio:>6} {consumed:>9}")
if "A" in mean and "N" in mean:
    r = mean["N"] / mean["A"]
    print(f"P5 ratio N / A = {r:.2f} (LISTEN without polling; target >= 0.95: {'met' if r >= 0.95 else 'not met'})")
if "A" in mean and "B" in mean:
    r = mean["B"] / mean["A"]
    print(f"   ratio B / A = {r:.2f} (listeners poll and ack every event; target >= 0.80: {'met' if r >= 0.80 else 'not met'})")
if "C" in mean and "D" in mean:
    print(f"   reference D / C = {mean['D'] / mean['C']:.2f}, C / A = {mean['C'] / mean['A']:.2f}" if "A" in mean
          else f"   reference D / C = {mean['D'] / mean['C']:.2f}")
if "Q" in mean and "R" in mean:
    print(f"   PgQ R / Q = {mean['R'] / mean['Q']:.2f} (10 consumers next_batch/get_batch_events/finish_batch)")
print(f"consumed: events the listeners received, in % of 10 x the events published ({catchup} s to catch up)")

def lat(path):
    out = open(path).read()
    m = re.search(r"^latency ms: p50 (\S+) p90 (\S+) p99 (\S+) max (\S+)", out, re.M)
    w = re.search(r"^wake ms: p50 (\S+) p90 \S+ p99 (\S+)", out, re.M)
    rate = re.search(r"^published: (\d+) events in \S+ s: (\d+) events/s", out, re.M)
    return m.groups(), w.groups(), rate.group(2)
print(f"\nP6: commit -> notification -> poll returned, 1000 events/s (4 publishers) for {p6_seconds} s, 1 listener")
print(f"{'':<30} {'rate':>5} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7}   wake p50/p99 ms")
for label, path in (("eventbus (worker NOTIFY)", p6), ("INSERT+pg_notify (reference)", p6ref)):
    (p50, p90, p99, mx), (w50, w99), rate = lat(path)
    print(f"{label:<30} {rate:>5} {p50:>7} {p90:>7} {p99:>7} {mx:>7}   {w50} / {w99}")
    if raw:
        raw.write(f"P6 {'eventbus' if path == p6 else 'reference'} {rate} {p50} {p90} {p99} {mx}\n")
print("wake: commit -> notification arrived, for events whose notification found the listener idle")
PY
