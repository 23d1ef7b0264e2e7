#!/usr/bin/env bash
# Targets P5 and P6 (docs/performance.md), on a throwaway cluster of its own
# (durable: fsync on, synchronous_commit on; eventbus and pg_cron preloaded).
#
# P5: 8 pgbench clients publish one event per transaction, alone (A) and
#     while 10 subscriptions each have a LISTENing connection that polls and
#     acks on every notification (B): B >= 0.95 A. Also N: 10 connections
#     that LISTEN on those channels but never poll (the notifications alone).
#     Reference: a plain INSERT of the same row + pg_notify('ref', '') in one
#     transaction, alone (C) and with 10 listeners on channel ref reading the
#     new rows by id on each notification (D).
#     Variants run round-robin (A B N C D, A B N C D, ...), each after an
#     emptied log and a CHECKPOINT.
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
#   EB_BENCH_VARIANTS subset of "A B N C D" (all)
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
VARIANTS=${EB_BENCH_VARIANTS-"A B N C D"}
PY=/usr/bin/python3
LATENCY=$EB_ROOT/test/listen_latency.py
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

# The reference: the same row shape as publish1.sql, and a NOTIFY, in one
# statement (one transaction, one round trip, as publish1.sql).
cat >"$WORK/ref.sql" <<'SQL'
\set id random(1, 1000000000)
\set t random(1, 20)
WITH i AS (INSERT INTO ref (topic, payload) VALUES ('orders.r' || :t || '.created', ('{"order_id": ' || :id || ', "customer_id": "c-000042", "region": "eu", "items": [{"sku": "SKU-10001", "qty": 2, "price": 19.99}, {"sku": "SKU-20002", "qty": 1, "price": 5.49}], "total": 45.47, "currency": "EUR"}')::jsonb) RETURNING id) SELECT pg_notify('ref', '') FROM i;
SQL

reset() {
	"${P[@]}" -d $DB -c "TRUNCATE eventbus.event_log_0, eventbus.event_log_1, eventbus.event_log_2,
		eventbus.delivery, ref" -c "VACUUM" -c "CHECKPOINT"
}

# start_listeners ARGS...: listen_latency.py --listen-only in the background;
# returns once its 10 connections LISTEN.
start_listeners() {
	$PY "$LATENCY" --dsn "$DSN" --listen-only --seconds 3600 --listeners 10 "$@" >"$WORK/listeners.out" 2>&1 &
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
	esac
	reset
	[ ${#listeners[@]} -gt 0 ] && start_listeners "${listeners[@]}"
	tps=$("$EB_PGBIN/pgbench" -n -c 8 -j 2 -T "$T" -f "$script" $DB 2>&1 |
		sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p')
	[ -n "$tps" ] || { eb_log "pgbench failed for $v"; return 1; }
	if [ "$v" = C ] || [ "$v" = D ]; then
		published=$("${P[@]}" -At -d $DB -c "SELECT count(*) FROM ref")
	else
		published=$("${P[@]}" -At -d $DB -c "SELECT count(*) FROM eventbus.event_log")
	fi
	if [ ${#listeners[@]} -gt 0 ]; then
		stop_listeners
		consumed=$CONSUMED
		[ "$v" = N ] && consumed=-  # they only counted notifications
	fi
	eb_log "$v: $tps tps, $published published, consumed by the listeners: $consumed"
	echo "$v $tps $published $consumed" >>"$WORK/results"
}

: >"$WORK/results"
for r in $(seq "$ROUNDS"); do
	for v in $VARIANTS; do
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
}
runs = {}
for line in open(results):
    v, tps, published, consumed = line.split()
    runs.setdefault(v, []).append((float(tps), int(published), consumed))
mean = {v: sum(r[0] for r in rs) / len(rs) for v, rs in runs.items()}
print(f"\nP5: pgbench -c 8 -j 2 -T {seconds}, one event per transaction, durable commits, {cores} cores")
print(f"{'variant':<34} {'tps per run':<24} {'mean':>8} {'/ A':>6} {'consumed':>9}")
for v in "ABNCD":
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
if "A" in mean and "B" in mean:
    r = mean["B"] / mean["A"]
    print(f"P5 ratio B / A = {r:.2f} (target >= 0.95: {'met' if r >= 0.95 else 'not met'})")
if "A" in mean and "N" in mean:
    print(f"   ratio N / A = {mean['N'] / mean['A']:.2f} (LISTEN without polling)")
if "C" in mean and "D" in mean:
    print(f"   reference D / C = {mean['D'] / mean['C']:.2f}, C / A = {mean['C'] / mean['A']:.2f}" if "A" in mean
          else f"   reference D / C = {mean['D'] / mean['C']:.2f}")
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
