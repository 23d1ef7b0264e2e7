#!/usr/bin/env bash
# make bench: the performance targets of docs/performance.md, each pair
# measured side by side in one run on a throwaway cluster, alternating
# A B A B, then a table of ratios with the raw figures.
#
#   P1   publish, 1 event/tx, 4 clients      vs plain INSERT of the same row (PK)
#   P1 acl the same publish as a role with 20 topic ACL patterns (grant_publish) vs the INSERT
#   P1b  publish, 1 event/tx, 4 clients      vs PgQ pgq.insert_event
#   P2   publish_batch, 100 events/tx        vs INSERT ... SELECT of 100 rows
#   P3   drain N events: poll(500) + ack     vs PgQ next_batch/get_batch_events/finish_batch
#        (and "P3 fresh": the same in a fresh database right after the fill, no VACUUM/ANALYZE)
#   P4   publish with 100 wildcard subs      vs publish with 1 subscription
#   P5   8 publishers, 10 listeners polling  vs 8 publishers alone (test/bench/notify.sh);
#        beside it PgQ: 8 publishers with 10 consumers vs alone (test/bench/consumers.py pgq)
#   P6   commit -> LISTEN -> poll, 1000 ev/s (test/bench/notify.sh, test/listen_latency.py)
#   P7   storage after N events published and acked vs after the first 10k
#   P8   4 consumers of one subscription, each BEGIN; poll(100); 10 ms; ack; COMMIT
#        (p8_consume.sql)                    vs 1 such consumer: events/s
#   P11  end to end at 10,000 events/s: publish_batch of 10 per tx at 1,000 tx/s from 4
#        clients (pgbench -R), 3 subscriptions each with a LISTEN consumer polling and
#        acking: publish -> event in the consumer's hands, p50/p99 (test/bench/consumers.py
#        latency); the same with 1 subscription beside it
#   P9   relay throughput: 4 durable publishers (publish1.sql) with a relay of their topics
#        to a mock Kafka cluster (the relay's defaults) vs the same publishers without it;
#        the relay's rate and its backlog sampled every second (bounded or growing)
#   P10  commit -> message in Kafka through a relay at 1,000 and 5,000 events/s (p11_publish.sql
#        at -R rate/10, test/bench/relay_latency.py following the topic with kcat): p50/p95/p99
#   P12  HTTP relay (test/bench/relay_http.py, a receiver in that process, signed requests):
#        events/s with 1 and 8 requests in flight, and commit -> request received at
#        1,000 events/s: p50/p95/p99
#
# P9 and P10 need the mock Kafka cluster (EB_KAFKA_MOCK, else test/kafka/eb_kafka_mock,
# built with make kafka-mock when missing) and kcat; without them they are skipped.
#
# The cluster is durable (fsync on, synchronous_commit on); P1, P1b, P2 and
# P4 run a second pass with synchronous_commit=off (PGOPTIONS), where CPU
# cost shows. Every pgbench run starts after an emptied log/table and a
# CHECKPOINT. See docs/performance.md.
#
# It benchmarks the eventbus that is installed (pg_config --pkglibdir); if
# none is, it builds and installs this tree first. As root it installs the
# Debian packages it needs (PostgreSQL 15, pg_cron, PgQ, psycopg2).
#
#   make bench                      # or: bash test/bench/run.sh
#   EB_BENCH_SMOKE=1 make bench     # everything tiny, about a minute
#
#   EB_BENCH_TIME      seconds per pgbench run (10; smoke 1)
#   EB_BENCH_ROUNDS    rounds of every comparison (3; smoke 1)
#   EB_BENCH_ONLY      subset of "P1 P1b P2 P3 P4 P5 P6 P7 P8 P11" (all); P5 and P6 run together
#   EB_BENCH_SYNC_OFF  0: skip the synchronous_commit=off pass (1)
#   EB_BENCH_PORT      port of the throwaway cluster (54470)
#   EB_BENCH_CLIENTS   pgbench clients for P1, P1b, P2, P4 (4)
#   EB_BENCH_DRAIN_N   events per P3 drain (200000; smoke 5000)
#   EB_BENCH_P7_N      events published and acked in P7 (1000000; smoke 30000)
#   EB_BENCH_P7_FIRST  the "first" figure of P7 (10000; smoke 3000)
#   EB_BENCH_P7_CHUNK  eventbus.chunk_size during P7 (16MB; smoke 1MB)
#   EB_BENCH_P7_RATE   P7 publishing rate, events/s, 0 = as fast as it goes (20000; smoke 0)
#   EB_BENCH_P7_AUTOVACUUM  autovacuum during P7 (off: storage must stay bounded without VACUUM)
#   EB_BENCH_P6_SECONDS seconds of each P6 latency run (10; smoke 1)
#   EB_BENCH_PGQ_TICK  seconds between pgq.ticker calls in PgQ's P5 runs (1, as pgqd)
#   EB_BENCH_REF_ROUNDS rounds of P5's INSERT + pg_notify reference (1)
#   EB_BENCH_P8_N      events in P8's backlog, filled before every run (400000; smoke 40000)
#   EB_BENCH_P8_TIME   seconds per P8 pgbench run (EB_BENCH_TIME)
#   EB_BENCH_P11_SECONDS seconds of each P11 run (10; smoke 1)
#   EB_BENCH_P11_RATE  P11 publishing transactions/s, 10 events each (1000)
#   EB_BENCH_P9_TIME   seconds of each P9 pgbench run (6 x EB_BENCH_TIME: 60; smoke 3)
#   EB_BENCH_P9_ROUNDS rounds of P9 (2; smoke 1): with the relay then without, then without then with, ...
#   EB_BENCH_KAFKA_PROPS more options of the Kafka server, librdkafka properties (none: its
#                      defaults), e.g. "\"linger.ms\" '0'"
#   EB_BENCH_P10_SECONDS seconds of each P10 run (20; smoke 3)
#   EB_BENCH_P10_RATES events/s of the P10 runs ("1000 5000")
#   EB_KAFKA_MOCK      the mock Kafka cluster binary (test/kafka/eb_kafka_mock)
#   EB_BENCH_INSTALL   1: build and install this tree first; 0: never (default: only if missing)
#   EB_BENCH_OUT       where the table goes (test/bench/results): latest.md (smoke.md
#                      in smoke mode), the raw figures (.tsv, .meta; test/bench/report.py
#                      makes the table again from them) and the output (.log)
#   EB_BENCH_KEEP      1: keep the cluster's directory afterwards
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/../lib.sh"

SMOKE=${EB_BENCH_SMOKE:-0}
if [ "$SMOKE" = 1 ]; then
	d_time=1 d_rounds=1 d_drain=5000 d_p7=30000 d_p7_first=3000 d_p7_chunk=1MB d_p7_rate=0 d_p6=1 d_catchup=0.5
	d_p8=40000 d_p11=1 d_p9=3 d_p9_rounds=1 d_p10=3 d_p12_events=1000 d_p12=2
else
	d_time=10 d_rounds=3 d_drain=200000 d_p7=1000000 d_p7_first=10000 d_p7_chunk=16MB d_p7_rate=20000 d_p6=10 d_catchup=2
	d_p8=400000 d_p11=10 d_p9= d_p9_rounds=2
	d_p10=20 d_p12_events=20000 d_p12=20
fi
T=${EB_BENCH_TIME:-$d_time}
ROUNDS=${EB_BENCH_ROUNDS:-$d_rounds}
ONLY=" ${EB_BENCH_ONLY:-P1 P1b P2 P3 P4 P5 P6 P7 P8 P11 P9 P10 P12} "
SYNC_OFF=${EB_BENCH_SYNC_OFF:-1}
PORT=${EB_BENCH_PORT:-54470}
CLIENTS=${EB_BENCH_CLIENTS:-4}
DRAIN_N=${EB_BENCH_DRAIN_N:-$d_drain}
DRAIN_B=500
P7_N=${EB_BENCH_P7_N:-$d_p7}
P7_FIRST=${EB_BENCH_P7_FIRST:-$d_p7_first}
P7_CHUNK=${EB_BENCH_P7_CHUNK:-$d_p7_chunk}
P7_RATE=${EB_BENCH_P7_RATE:-$d_p7_rate}
P7_AUTOVACUUM=${EB_BENCH_P7_AUTOVACUUM:-off}
P6_SECONDS=${EB_BENCH_P6_SECONDS:-$d_p6}
CATCHUP=${EB_BENCH_CATCHUP:-$d_catchup}
PGQ_TICK=${EB_BENCH_PGQ_TICK:-1}
REF_ROUNDS=${EB_BENCH_REF_ROUNDS:-1}
P8_N=${EB_BENCH_P8_N:-$d_p8}
P8_T=${EB_BENCH_P8_TIME:-$T}
P11_SECONDS=${EB_BENCH_P11_SECONDS:-$d_p11}
P11_RATE=${EB_BENCH_P11_RATE:-1000}
P9_T=${EB_BENCH_P9_TIME:-${d_p9:-$((6 * T))}}
P9_ROUNDS=${EB_BENCH_P9_ROUNDS:-$d_p9_rounds}
KAFKA_PROPS=${EB_BENCH_KAFKA_PROPS:-}
P10_SECONDS=${EB_BENCH_P10_SECONDS:-$d_p10}
P10_RATES=${EB_BENCH_P10_RATES:-1000 5000}
MOCK=${EB_KAFKA_MOCK:-$EB_ROOT/test/kafka/eb_kafka_mock}
OUT=${EB_BENCH_OUT:-$HERE/results}
NAME=$([ "$SMOKE" = 1 ] && echo smoke || echo latest)
# Debian packages the benchmark needs (installed as root when missing).
EB_BENCH_PACKAGES="postgresql-15 postgresql-15-cron postgresql-15-pgq3 python3-psycopg2"

want() { case "$ONLY" in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
exec > >(tee "$OUT/$NAME.log") 2>&1
START=$(date +%s)

# ---------------------------------------------------------------- set-up
EB_PACKAGES=$EB_BENCH_PACKAGES eb_install_packages || exit 1
/usr/bin/python3 -c 'import psycopg2' 2>/dev/null || { eb_log "/usr/bin/python3 cannot import psycopg2"; exit 1; }
SHAREDIR=$("$EB_PG_CONFIG" --sharedir)
PKGLIBDIR=$("$EB_PG_CONFIG" --pkglibdir)
installed() { [ -f "$SHAREDIR/extension/eventbus.control" ] && [ -f "$PKGLIBDIR/eventbus.so" ]; }
if [ "${EB_BENCH_INSTALL:-}" = 1 ] || { [ "${EB_BENCH_INSTALL:-}" != 0 ] && ! installed; }; then
	EB_PACKAGES="postgresql-server-dev-15 make gcc" eb_install_packages || exit 1
	eb_log "building and installing eventbus (no assertions)"
	make -s -C "$EB_ROOT" PG_CONFIG="$EB_PG_CONFIG" >/dev/null
	if [ "$(id -u)" = 0 ]; then make -s -C "$EB_ROOT" PG_CONFIG="$EB_PG_CONFIG" install >/dev/null
	else sudo make -s -C "$EB_ROOT" PG_CONFIG="$EB_PG_CONFIG" install >/dev/null; fi
fi
installed || { eb_log "eventbus is not installed in $PKGLIBDIR"; exit 1; }

DIR=$(mktemp -d /tmp/eventbus-bench.XXXXXX)
WORK=$(mktemp -d /tmp/eventbus-bench-work.XXXXXX)
chmod 755 "$WORK"
RAW=$WORK/raw.tsv
META=$WORK/meta.txt
: >"$RAW"
: >"$META"
BGPIDS=()
cleanup() {
	local p
	for p in "${BGPIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	exec 7>&- 2>/dev/null || true
	eb_stop_cluster "$DIR"
	if [ "${EB_BENCH_KEEP:-0}" = 1 ]; then
		eb_log "kept $DIR (server.log) and $WORK"
	else
		rm -rf "$DIR" "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

eb_log "starting a throwaway cluster in $DIR (port $PORT)"
eb_start_cluster "$DIR" "$PORT" "synchronous_commit = on
full_page_writes = on
shared_buffers = 1GB
max_connections = 100
max_wal_size = 4GB
checkpoint_timeout = 15min
log_min_messages = warning
# one eventbus worker per database: up to about 15 databases here
max_worker_processes = 32" || exit 1
export PGHOST=$DIR PGPORT=$PORT PGUSER=postgres
unset PGDATABASE PGOPTIONS
P=(psql -X -q -v ON_ERROR_STOP=1)
PGBENCH=("$EB_PGBIN/pgbench" -n -M prepared)

# Every database is made now, so that CREATE EXTENSION runs once, against
# the extension installed at the start (it may be reinstalled meanwhile).
DBS=()
mkdb() {	# mkdb NAME: an empty database
	"${P[@]}" -d postgres -c "CREATE DATABASE $1"
	DBS+=("$1")
}
eb_log "creating the databases"
if want P1 || want P1b || want P2; then
	mkdb eb_bench
	"${P[@]}" -d eb_bench -f "$HERE/p_schema.sql" >/dev/null
fi
if want P4; then
	mkdb eb_p4_100
	"${P[@]}" -d eb_p4_100 -v SUBS=100 -f "$HERE/p4_setup.sql" >/dev/null
	mkdb eb_p4_1
	"${P[@]}" -d eb_p4_1 -v SUBS=1 -f "$HERE/p4_setup.sql" >/dev/null
fi
if want P3; then
	mkdb eb_drain
	"${P[@]}" -d eb_drain -c "CREATE EXTENSION eventbus" -c "CREATE EXTENSION pgq" >/dev/null
	# P3 fresh: a database per round and system, used once, dropped after.
	for r in $(seq "$ROUNDS"); do
		mkdb eb_p3f_eventbus_$r
		"${P[@]}" -d eb_p3f_eventbus_$r -c "CREATE EXTENSION eventbus" >/dev/null
		"${P[@]}" -d postgres -c "CREATE DATABASE eb_p3f_pgq_$r"	# no worker: not in DBS
		"${P[@]}" -d eb_p3f_pgq_$r -c "CREATE EXTENSION pgq" >/dev/null
	done
fi
if want P5 || want P6; then
	EB_BENCH_CLUSTER=$DIR EB_BENCH_PORT=$PORT EB_BENCH_SETUP_ONLY=1 bash "$HERE/notify.sh"
	DBS+=(eventbus_notify)
fi
if want P7; then
	mkdb eb_p7
	"${P[@]}" -d eb_p7 -c "CREATE EXTENSION eventbus" >/dev/null
fi
if want P8; then
	mkdb eb_p8
	"${P[@]}" -d eb_p8 -c "CREATE EXTENSION eventbus" >/dev/null
fi
if want P11; then
	mkdb eb_p11
	"${P[@]}" -d eb_p11 -c "CREATE EXTENSION eventbus" >/dev/null
fi
# P9, P10: a mock Kafka cluster (3 brokers, topics of 4 partitions made on
# first use) whose stdin stays open on a fifo (EOF ends it), and a server
# and user mapping of eventbus_kafka with librdkafka's defaults.
kafka_rig() {	# starts the mock cluster; sets BOOTSTRAP; fails (with a message) when it cannot
	if [ ! -x "$MOCK" ] && [ -z "${EB_KAFKA_MOCK:-}" ]; then
		make -s -C "$EB_ROOT" kafka-mock >/dev/null 2>&1 || true
	fi
	[ -x "$MOCK" ] || { eb_log "P9/P10 skipped: no mock Kafka cluster at $MOCK (make kafka-mock, or EB_KAFKA_MOCK)"; return 1; }
	command -v kcat >/dev/null || { eb_log "P9/P10 skipped: kcat is not installed"; return 1; }
	mkfifo "$WORK/mock.in"
	"$MOCK" --brokers 3 --partitions 4 <"$WORK/mock.in" >"$WORK/mock.out" 2>"$WORK/mock.err" &
	BGPIDS+=($!)
	exec 7>"$WORK/mock.in"
	BOOTSTRAP=
	for _ in $(seq 100); do
		BOOTSTRAP=$(head -n 1 "$WORK/mock.out")
		[ -n "$BOOTSTRAP" ] && break
		sleep 0.1
	done
	[ -n "$BOOTSTRAP" ] || { eb_log "P9/P10 skipped: the mock cluster printed no bootstrap servers: $(cat "$WORK/mock.err")"; return 1; }
	eb_log "mock Kafka cluster: $BOOTSTRAP"
}
if want P9 || want P10; then
	if kafka_rig; then
		mkdb eb_relay
		"${P[@]}" -d eb_relay -c "CREATE EXTENSION eventbus" \
			-c "CREATE SERVER kafka FOREIGN DATA WRAPPER eventbus_kafka OPTIONS (\"bootstrap.servers\" '$BOOTSTRAP'${KAFKA_PROPS:+, $KAFKA_PROPS})" \
			-c "CREATE USER MAPPING FOR CURRENT_USER SERVER kafka" >/dev/null
	else
		ONLY=${ONLY// P9 / }
		ONLY=${ONLY// P10 / }
	fi
fi
# Wait for the databases' workers (started when CREATE EXTENSION commits).
for _ in $(seq 100); do
	[ "$("${P[@]}" -At -d postgres -c "SELECT count(*) FROM pg_stat_activity
		WHERE backend_type = 'eventbus worker'")" -ge ${#DBS[@]} ] && break
	sleep 0.1
done

# ---------------------------------------------------------------- machine facts
busy() {	# processes using 10% of a core or more, over half a second
	top -b -n 2 -d 0.5 -w 256 2>/dev/null | awk '/^top -/ {n++} n == 2 && $1 ~ /^[0-9]+$/ && $9 + 0 >= 10 {
		s = s (s == "" ? "" : ", ") $12 " " $9 "%" } END {print "other processes busy: " (s == "" ? "none" : s)}'
}
fact() { printf '%s: %s\n' "$1" "$2" | tee -a "$META"; }
facts() {
	local so=$PKGLIBDIR/eventbus.so db=${DBS[0]:-postgres}
	echo
	fact date "$(date -u +%FT%TZ)"
	fact machine "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')), $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) memory, kernel $(uname -r)"
	fact disk "$(df -T "$DIR" | awk 'NR==2 {print $2 " on " $1}'); $(lsblk -dno NAME,ROTA,SIZE 2>/dev/null | awk '{printf "%s%s (rota %s, %s)", (NR > 1 ? ", " : ""), $1, $2, $3}')"
	fact "load average at start" "$(cut -d' ' -f1-3 /proc/loadavg); $(busy)"
	fact postgres "$("${P[@]}" -At -d postgres -c 'SELECT version()')"
	fact settings "$("${P[@]}" -At -d postgres -c "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name) FROM pg_settings
		WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'shared_buffers', 'wal_level', 'max_wal_size',
		               'checkpoint_timeout', 'max_connections', 'autovacuum', 'wal_buffers', 'max_worker_processes')")"
	fact "eventbus settings" "$("${P[@]}" -At -d "$db" -c "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name) FROM pg_settings
		WHERE name IN ('eventbus.tick_interval', 'eventbus.tick_min_interval', 'eventbus.maintenance_interval',
		               'eventbus.chunk_size', 'eventbus.chunk_interval', 'eventbus.track_stats')")"
	fact eventbus "$("${P[@]}" -At -d "$db" -c "SELECT coalesce((SELECT extversion FROM pg_extension WHERE extname = 'eventbus'), '?')") installed $(date -r "$so" '+%F %T'), md5 $(md5sum <"$so" | cut -c1-12), $(cmp -s "$so" "$EB_ROOT/eventbus.so" && echo 'same as ./eventbus.so' || echo 'differs from ./eventbus.so (or not built here)'), $(nm -D "$so" 2>/dev/null | grep -q ExceptionalCondition && echo 'built WITH assertions' || echo 'built without assertions')"
	if want P1b || want P3; then
		fact pgq "$("${P[@]}" -At -d "$(want P1b && echo eb_bench || echo eb_drain)" -c 'SELECT pgq.version()')"
	fi
	if want P9 || want P10; then
		fact kafka "mock cluster $MOCK (3 brokers, 4 partitions per topic), kcat $(kcat -V 2>&1 | sed -n 's/^Version \([^ ]*\) .*librdkafka \([^ ]*\).*/\1, librdkafka \2/p'); server options ${KAFKA_PROPS:-none but bootstrap.servers}; P9: $P9_T s x $P9_ROUNDS round(s); P10: $P10_SECONDS s at ${P10_RATES// //} events/s"
	fi
	fact pgbench "-n -M prepared -T $T, -c $CLIENTS -j $((CLIENTS < 2 ? CLIENTS : 2)) (P5: notify.sh, -c 8 -j 2; P8: -c 4 / -c 1, -T $P8_T; P11: -c 4 -j 2 -R $P11_RATE -T $P11_SECONDS); $ROUNDS rounds$([ "$SMOKE" = 1 ] && echo '; SMOKE RUN: the figures mean nothing')"
	echo
}
facts
# Every 5 s, the processes other than this benchmark's that use half a
# core or more (a noisy neighbour explains a spread; other PostgreSQL
# clusters' processes are named postgres too, and not told apart).
( while :; do
	top -b -n 2 -d 0.5 -w 256 2>/dev/null | awk '/^top -/ {n++; s = ""} n == 2 && $1 ~ /^[0-9]+$/ && $9 + 0 >= 50 &&
		$12 !~ /^(postgres|pgbench|psql|python3|top)$/ {s = s " " $12} END {print "sample" s}'
	sleep 4.5
done ) >"$WORK/neighbours" 2>/dev/null &
BGPIDS+=($!)
neighbours=$!

# ---------------------------------------------------------------- helpers
record() {	# record KEY PASS ROUND VARIANT VALUE [EXTRA]
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "${6:-}" >>"$RAW"
}

reset_db() {	# reset_db DB: empty what the runs write, then CHECKPOINT
	if [ "$1" = eb_bench ]; then
		"${P[@]}" -d "$1" -f "$HERE/p_reset.sql" >/dev/null
	else
		"${P[@]}" -d "$1" -f "$HERE/reset.sql" -c "TRUNCATE eventbus.delivery" >/dev/null
	fi
	"${P[@]}" -d "$1" -c CHECKPOINT
}

# pgb DB SCRIPT SYNC LOG [USER]: one pgbench run of $T s (as USER if given); prints its tps (NA on failure)
pgb() {
	local db=$1 script=$2 sync=$3 log=$WORK/$4.log user=${5:-} tps
	PGOPTIONS="-c synchronous_commit=$sync" "${PGBENCH[@]}" ${user:+-U "$user"} -c "$CLIENTS" -j $((CLIENTS < 2 ? CLIENTS : 2)) \
		-T "$T" -f "$script" "$db" >"$log" 2>&1 || { eb_log "pgbench failed ($log):"; tail -n 5 "$log" >&2; }
	tps=$(awk '/^tps = / {print $3; exit}' "$log")
	echo "${tps:-NA}"
}

# pairs KEY SYNC ENTRY...: ROUNDS rounds of the entries "variant:db:script[:user]",
# in order (A B A B ...), each after reset_db; records the tps.
pairs() {
	local key=$1 sync=$2 r e v db script user tps
	shift 2
	for r in $(seq "$ROUNDS"); do
		for e in "$@"; do
			IFS=: read -r v db script user <<<"$e"
			reset_db "$db"
			tps=$(pgb "$db" "$HERE/$script" "$sync" "$key-$sync-$v-$r" "$user")
			eb_log "$key synchronous_commit=$sync round $r/$ROUNDS $v: $tps tps"
			record "$key" "$sync" "$r" "$v" "$tps"
		done
	done
}

# ---------------------------------------------------------------- P1, P1b, P2, P4
passes=on
[ "$SYNC_OFF" = 1 ] && passes="on off"
for sync in $passes; do
	entries=()
	{ want P1 || want P1b; } && entries+=(publish:eb_bench:publish1.sql)
	want P1 && entries+=(insert:eb_bench:p1_insert.sql)
	# P1 acl: publish as a role that topic ACLs restrict (20 patterns, p_schema.sql)
	want P1 && entries+=(publish_acl:eb_bench:publish1.sql:eb_bench_acl)
	want P1b && entries+=(pgq:eb_bench:p1_pgq.sql)
	[ ${#entries[@]} -gt 0 ] && pairs P1 "$sync" "${entries[@]}"
	want P2 && pairs P2 "$sync" batch:eb_bench:p2_batch.sql insert:eb_bench:p2_insert.sql
	want P4 && pairs P4 "$sync" subs100:eb_p4_100:publish1.sql subs1:eb_p4_1:publish1.sql
done
# The pgbench databases stay idle from here on; their workers still tick.

# ---------------------------------------------------------------- P3
drain_line() {	# drain_line LOG -> "n secs ev_per_s"
	grep -o 'ANCHOR_DRAIN.*' "$1" | tail -n 1 |
		sed -n 's/.*n=\([0-9]*\) batches=[0-9]* secs=\([0-9.]*\) ev_per_s=\([0-9.]*\).*/\1 \2 \3/p'
}
if want P3; then
	for r in $(seq "$ROUNDS"); do
		for sys in eventbus pgq; do
			log=$WORK/P3-$sys-$r.log
			t0=$(date +%s.%N)
			"${P[@]}" -d eb_drain -v S=drain -v N="$DRAIN_N" -v B="$DRAIN_B" -v VACUUM=on -f "$HERE/p3_fill_$sys.sql" >"$log" 2>&1 ||
				{ eb_log "P3 fill failed:"; tail -n 5 "$log" >&2; }
			t1=$(date +%s.%N)
			"${P[@]}" -d eb_drain -c CHECKPOINT
			if [ $sys = eventbus ]; then
				"${P[@]}" -d eb_drain -v S=drain -v N="$DRAIN_N" -v B="$DRAIN_B" -v IDLE=5 \
					-f "$HERE/p3_drain_eventbus.sql" >>"$log" 2>&1 || { eb_log "P3 drain failed:"; tail -n 5 "$log" >&2; }
			else
				"${P[@]}" -d eb_drain -f "$HERE/p3_drain_pgq.sql" >>"$log" 2>&1 ||
					{ eb_log "P3 drain failed:"; tail -n 5 "$log" >&2; }
			fi
			read -r n secs eps <<<"$(drain_line "$log")" || true
			fill=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')
			eb_log "P3 round $r/$ROUNDS $sys: ${n:-?} events drained in ${secs:-?} s, ${eps:-NA} events/s (fill ${fill} s)"
			record P3 on "$r" "$sys" "${eps:-NA}" "n=${n:-0} secs=${secs:-NA} fill=$fill"
			n= secs= eps=
		done
	done
	# P3 fresh: the same fill in a database of its own that has never been
	# filled, VACUUMed or ANALYZEd, and the drain right after the fill's
	# last commit (no CHECKPOINT between them: one before the fill).
	for r in $(seq "$ROUNDS"); do
		for sys in eventbus pgq; do
			db=eb_p3f_${sys}_$r
			log=$WORK/P3fresh-$sys-$r.log
			"${P[@]}" -d postgres -c CHECKPOINT
			t0=$(date +%s.%N)
			"${P[@]}" -d "$db" -v S=drain -v N="$DRAIN_N" -v B="$DRAIN_B" -v VACUUM=off -f "$HERE/p3_fill_$sys.sql" >"$log" 2>&1 ||
				{ eb_log "P3 fresh fill failed:"; tail -n 5 "$log" >&2; }
			t1=$(date +%s.%N)
			if [ $sys = eventbus ]; then
				"${P[@]}" -d "$db" -v S=drain -v N="$DRAIN_N" -v B="$DRAIN_B" -v IDLE=5 \
					-f "$HERE/p3_drain_eventbus.sql" >>"$log" 2>&1 || { eb_log "P3 fresh drain failed:"; tail -n 5 "$log" >&2; }
			else
				"${P[@]}" -d "$db" -f "$HERE/p3_drain_pgq.sql" >>"$log" 2>&1 ||
					{ eb_log "P3 fresh drain failed:"; tail -n 5 "$log" >&2; }
			fi
			read -r n secs eps <<<"$(drain_line "$log")" || true
			fill=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')
			eb_log "P3 fresh round $r/$ROUNDS $sys: ${n:-?} events drained in ${secs:-?} s, ${eps:-NA} events/s (fill ${fill} s)"
			record P3fresh on "$r" "$sys" "${eps:-NA}" "n=${n:-0} secs=${secs:-NA} fill=$fill"
			n= secs= eps=
			"${P[@]}" -d postgres -c "DROP DATABASE $db" || eb_log "could not drop $db"
		done
	done
fi

# ---------------------------------------------------------------- P5, P6
if want P5 || want P6; then
	variants="A B N C D Q R"
	want P5 || variants=
	eb_log "P5/P6: test/bench/notify.sh on this cluster"
	EB_BENCH_CLUSTER=$DIR EB_BENCH_PORT=$PORT EB_BENCH_TIME=$T EB_BENCH_ROUNDS=$ROUNDS \
		EB_BENCH_VARIANTS=$variants EB_BENCH_RESULTS=$WORK/notify.raw EB_BENCH_P6_SECONDS=$P6_SECONDS \
		EB_BENCH_CATCHUP=$CATCHUP EB_BENCH_PGQ_TICK=$PGQ_TICK \
		EB_BENCH_REF_ROUNDS=$REF_ROUNDS bash "$HERE/notify.sh" || eb_log "notify.sh failed"
	# "P5 VARIANT tps published consumed" / "P6 LABEL rate p50 p90 p99 max"
	if [ -f "$WORK/notify.raw" ]; then
		awk -v OFS='\t' '$1 == "P5" {n[$2]++; print "P5", "on", n[$2], $2, $3, "published=" $4 " consumed=" $5}
			$1 == "P6" {print "P6", "on", 1, $2, $5, "rate=" $3 " p50=" $4 " p90=" $5 " p99=" $6 " max=" $7}' \
			"$WORK/notify.raw" >>"$RAW"
	fi
fi

# ---------------------------------------------------------------- P8
# p8_sum SQL -> one number from eb_p8
p8_sum() { "${P[@]}" -At -d eb_p8 -c "$1"; }
P8_LEFT="SELECT coalesce(sum(cardinality(b.ids) - b.ndone), 0) FROM eventbus.batch b
	JOIN eventbus.subscription s ON s.id = b.sub_id WHERE s.name = 'p8'"
if want P8; then
	for r in $(seq "$ROUNDS"); do
		for c in 4 1; do
			log=$WORK/P8-c$c-$r.log
			# The backlog: P8_N events, 500 per transaction, VACUUM ANALYZE;
			# then one poll (rolled back) makes the subscription active and
			# the worker cuts it all into batches of 100 before the run.
			"${P[@]}" -d eb_p8 -v S=p8 -v N="$P8_N" -v B=500 -v VACUUM=on -f "$HERE/p3_fill_eventbus.sql" >"$log" 2>&1 ||
				{ eb_log "P8 fill failed:"; tail -n 5 "$log" >&2; }
			t0=$(date +%s.%N)
			"${P[@]}" -d eb_p8 -c "BEGIN" -c "SELECT count(*) FROM eventbus.poll('p8', 100)" -c "ROLLBACK" >>"$log" 2>&1
			for _ in $(seq 1200); do
				[ "$(p8_sum "$P8_LEFT")" -ge "$P8_N" ] && break
				sleep 0.1
			done
			t1=$(date +%s.%N)
			cut=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')
			"${P[@]}" -d eb_p8 -c CHECKPOINT
			acked0=$(p8_sum "SELECT acked FROM eventbus.subscription_stats WHERE subscription = 'p8'")
			"${PGBENCH[@]}" -c "$c" -j $((c < 2 ? c : 2)) -T "$P8_T" -f "$HERE/p8_consume.sql" eb_p8 >>"$log" 2>&1 ||
				{ eb_log "P8 pgbench failed ($log):"; tail -n 5 "$log" >&2; }
			acked1=$(p8_sum "SELECT acked FROM eventbus.subscription_stats WHERE subscription = 'p8'")
			left=$(p8_sum "$P8_LEFT")
			read -r tx tps <<<"$(awk '/^number of transactions actually processed:/ {split($6, a, "/"); n = a[1]}
				/^tps = / {t = $3} END {print n + 0, (t == "" ? "NA" : t)}' "$log")"
			acked=$((acked1 - acked0))
			eps=$(awk -v t="$tps" -v a="$acked" -v n="$tx" 'BEGIN {if (t == "NA" || n == 0) print "NA"; else printf "%.0f", t * a / n}')
			eb_log "P8 round $r/$ROUNDS $c consumer(s): $eps events/s ($tps tx/s, $acked acked in $tx transactions, $left left; cut in $cut s)"
			record P8 on "$r" "c$c" "$eps" "tps=$tps tx=$tx acked=$acked left=$left cut=$cut"
		done
	done
fi

# ---------------------------------------------------------------- P11
if want P11; then
	for k in 3 1; do
		log=$WORK/P11-subs$k.log
		"${P[@]}" -d eb_p11 -c "SELECT eventbus.unsubscribe(name) FROM eventbus.subscriptions" \
			-c "TRUNCATE eventbus.event_log_0, eventbus.event_log_1, eventbus.event_log_2, eventbus.delivery, eventbus.batch" \
			-c CHECKPOINT >/dev/null
		eb_log "P11: $k subscription(s), publish_batch of 10 at $P11_RATE tx/s from 4 clients for $P11_SECONDS s"
		/usr/bin/python3 "$HERE/consumers.py" latency --dsn "dbname=eb_p11" --subs "$k" --prefix p11 --timeout 10 -- \
			"$EB_PGBIN/pgbench" -n -M prepared -c 4 -j 2 -R "$P11_RATE" -T "$P11_SECONDS" -f "$HERE/p11_publish.sql" eb_p11 \
			>"$log" 2>&1 || { eb_log "P11 failed ($log):"; grep -E '^(FAILED|Traceback)' "$log" >&2 || tail -n 5 "$log" >&2; }
		sed 's/^/    /' "$log" >&2
		read -r p50 p90 p99 mx <<<"$(sed -n 's/^latency ms: p50 \(\S*\) p90 \(\S*\) p99 \(\S*\) max \(\S*\).*/\1 \2 \3 \4/p' "$log")" || true
		read -r pub rate <<<"$(sed -n 's/^published: \([0-9]*\) events in \S* s: \([0-9]*\) events\/s.*/\1 \2/p' "$log")" || true
		recv=$(sed -n 's/^received: \([0-9]*\) of.*/\1/p' "$log")
		poll99=$(sed -n 's/^poll ms: p50 \S* p99 \(\S*\).*/\1/p' "$log")
		start99=$(sed -n 's/^start ms: p50 \S* p99 \(\S*\).*/\1/p' "$log")
		lag=$(sed -n 's/^ *rate limit schedule lag: avg \([0-9.]*\).*max \([0-9.]*\).*/\1\/\2/p' "$log")
		publat=$(sed -n 's/^ *latency average = \([0-9.]*\) ms.*/\1/p' "$log")
		record P11 on 1 "subs$k" "${p99:-NA}" "p50=${p50:-NA} p90=${p90:-NA} p99=${p99:-NA} max=${mx:-NA} rate=${rate:-NA} published=${pub:-0} received=${recv:-0} expected=$(( ${pub:-0} * k )) poll_p99=${poll99:-NA} start_p99=${start99:-NA} pgbench_latency_avg=${publat:-NA} schedule_lag_avg/max=${lag:-NA}"
		p50= p90= p99= mx= pub= rate=
	done
fi

# ---------------------------------------------------------------- P9, P10
# rsql SQL: one value from eb_relay
rsql() { "${P[@]}" -At -d eb_relay -c "$1"; }
relay_up() {	# relay_up NAME PATTERN TOPIC: create the relay, wait until its process runs
	rsql "SELECT eventbus.create_relay('$1', array['$2'], server => 'kafka', topic => '$3')" >/dev/null ||
		{ eb_log "could not create relay $1"; return 0; }
	for _ in $(seq 300); do
		[ "$(rsql "SELECT state FROM eventbus.relays WHERE name = '$1'")" = running ] && return 0
		sleep 0.1
	done
	eb_log "relay $1 is not running: $(rsql "SELECT state || ' ' || coalesce(last_error, '') FROM eventbus.relays WHERE name = '$1'")"
}
relay_down() {	# relay_down NAME: drop the relay, empty the log, CHECKPOINT
	rsql "SELECT eventbus.drop_relay('$1')" >/dev/null || eb_log "could not drop relay $1"
	reset_db eb_relay
}
P9_SAMPLE="SELECT extract(epoch FROM clock_timestamp()), backlog, coalesce(acked, -1),
	coalesce(extract(epoch FROM oldest_pending_age), 0), coalesce((SELECT produced FROM eventbus.relays WHERE name = 'bench_relay'), 0)
	FROM eventbus.subscription_stats WHERE subscription = 'bench_relay'"
if want P9; then
	batch=$(rsql "SHOW eventbus.relay_batch")
	for r in $(seq "$P9_ROUNDS"); do
		for v in $( [ $((r % 2)) = 1 ] && echo "relay norelay" || echo "norelay relay"); do
		if [ $v = relay ]; then
			# A: the publishers with the relay (orders.# to Kafka topics of the
			# same names), its backlog sampled every second during the run and
			# until it is 0 again (at most max(60, P9_T) s after the run).
			reset_db eb_relay
			relay_up bench_relay 'orders.#' '{topic}'
			# One connection samples (a new one each second would cost a
			# backend's start-up each time): psql reads the query every
			# second from a fifo; the writer's end ends it.
			samples=$WORK/P9-samples-$r
			rm -f "$WORK/P9.fifo"
			mkfifo "$WORK/P9.fifo"
			"${P[@]}" -At -F ' ' -d eb_relay <"$WORK/P9.fifo" >"$samples" 2>/dev/null &
			BGPIDS+=($!)
			sampling=$!
			( while :; do echo "$P9_SAMPLE;"; sleep 1; done ) >"$WORK/P9.fifo" &
			BGPIDS+=($!)
			sampler=$!
			sleep 1
			t0=$(date +%s.%N)
			tps=$(T=$P9_T pgb eb_relay "$HERE/publish1.sql" on "P9-relay-$r")
			t1=$(date +%s.%N)
			limit=$(( P9_T > 60 ? P9_T : 60 ))
			for _ in $(seq $((limit * 10))); do
				[ "$(rsql "SELECT backlog FROM eventbus.subscription_stats WHERE subscription = 'bench_relay'")" = 0 ] && break
				sleep 0.1
			done
			t2=$(date +%s.%N)
			sleep 1
			kill "$sampler" 2>/dev/null || true
			wait "$sampler" 2>/dev/null || true
			wait "$sampling" 2>/dev/null || true
			err=$(rsql "SELECT coalesce(last_error, '') FROM eventbus.relays WHERE name = 'bench_relay'")
			extra=$(awk -v t0="$t0" -v t1="$t1" -v t2="$t2" -v batch="$batch" '
				NF >= 5 {
					t = $1; b = $2; ack = ($3 >= 0) ? $3 : $5	# acked, or produced without track_stats
					if (t >= t0 && t <= t1) {
						n++; if (b > max) max = b; if ($4 > maxage) maxage = $4
						if (t < t0 + (t1 - t0) / 3 && b > first) first = b
						if (t >= t1 - (t1 - t0) / 3 && b > last) last = b
						if (a0 == "") { a0 = ack; ta0 = t }
						a1 = ack; ta1 = t; end = b; endage = $4
					}
					produced = $5
				}
				END {
					rate = (ta1 > ta0) ? (a1 - a0) / (ta1 - ta0) : 0
					bounded = (n >= 3 && last <= 2 * first + 2 * batch) ? "yes" : "no"
					printf "relay_eps=%.0f max_lag=%d end_lag=%d max_age_s=%.2f end_age_s=%.2f first_third_max=%d last_third_max=%d bounded=%s catchup_s=%.1f samples=%d relay_batch=%d produced=%s",
						rate, max, end, maxage, endage, first, last, bounded, t2 - t1, n, batch, produced
				}' "$samples")
			eb_log "P9 round $r/$P9_ROUNDS with the relay: $tps tps; $extra${err:+; relay error: $err}"
			record P9 on "$r" relay "$tps" "$extra"
			relay_down bench_relay
		else
			# B: the same publishers without a relay (no subscription).
			tps=$(T=$P9_T pgb eb_relay "$HERE/publish1.sql" on "P9-norelay-$r")
			eb_log "P9 round $r/$P9_ROUNDS without a relay: $tps tps"
			record P9 on "$r" norelay "$tps"
			reset_db eb_relay
		fi
		done
	done
fi
if want P10; then
	for rate in $P10_RATES; do
		topic=eb_p10_$rate
		# The topic exists before the consumer follows it from its end.
		echo warm | kcat -P -q -b "$BOOTSTRAP" -t "$topic" 2>>"$WORK/P10-kcat.err" || true
		relay_up "bench_p10_$rate" 'orders.#' "$topic"
		log=$WORK/P10-$rate.log
		tx=$(( (rate + 9) / 10 ))
		eb_log "P10: $rate events/s (publish_batch of 10 at $tx tx/s from 4 clients) for $P10_SECONDS s through a relay"
		/usr/bin/python3 "$HERE/relay_latency.py" --bootstrap "$BOOTSTRAP" --topic "$topic" --warmup 1 --timeout 15 -- \
			"$EB_PGBIN/pgbench" -n -M prepared -c 4 -j 2 -R "$tx" -T "$P10_SECONDS" -f "$HERE/p11_publish.sql" eb_relay \
			>"$log" 2>&1 || { eb_log "P10 failed ($log):"; grep -E '^(FAILED|Traceback)' "$log" >&2 || tail -n 5 "$log" >&2; }
		sed 's/^/    /' "$log" >&2
		read -r p50 p95 p99 mx <<<"$(sed -n 's/^latency ms: p50 \(\S*\) p95 \(\S*\) p99 \(\S*\) max \(\S*\).*/\1 \2 \3 \4/p' "$log")" || true
		read -r pub eps <<<"$(sed -n 's/^published: \([0-9]*\) events in \S* s: \([0-9]*\) events\/s.*/\1 \2/p' "$log")" || true
		recv=$(sed -n 's/^received: \([0-9]*\) of.*/\1/p' "$log")
		lag=$(sed -n 's/^ *rate limit schedule lag: avg \([0-9.]*\).*max \([0-9.]*\).*/\1\/\2/p' "$log")
		prod=$(sed -n 's/^produce ms: p50 \(\S*\) p95 \(\S*\) p99 \(\S*\).*/\1\/\2\/\3/p' "$log")
		fetch=$(sed -n 's/^fetch ms: p50 \(\S*\) p95 \(\S*\) p99 \(\S*\).*/\1\/\2\/\3/p' "$log")
		record P10 on 1 "r$rate" "${p95:-NA}" "p50=${p50:-NA} p95=${p95:-NA} p99=${p99:-NA} max=${mx:-NA} rate=${eps:-NA} published=${pub:-0} received=${recv:-0} to_produce_p50/95/99=${prod:-NA} produce_to_consumer_p50/95/99=${fetch:-NA} schedule_lag_avg/max=${lag:-NA}"
		p50= p95= p99= mx= pub= eps=
		relay_down "bench_p10_$rate"
	done
fi

# ---------------------------------------------------------------- P12
if want P12; then
	mkdb eb_http >/dev/null
	"${P[@]}" -d eb_http -c "CREATE EXTENSION eventbus" >/dev/null
	log=$WORK/P12.log
	eb_log "P12: HTTP relay: ${EB_BENCH_P12_EVENTS:-$d_p12_events} events at 1 and 8 in flight, then 1,000 events/s for ${EB_BENCH_P12_SECONDS:-$d_p12} s"
	/usr/bin/python3 "$HERE/relay_http.py" --host "$PGHOST" --port "$PORT" --user postgres --dbname eb_http \
		--events "${EB_BENCH_P12_EVENTS:-$d_p12_events}" --rate 1000 --seconds "${EB_BENCH_P12_SECONDS:-$d_p12}" \
		>"$log" 2>&1 || { eb_log "P12 failed ($log):"; tail -n 5 "$log" >&2; }
	sed 's/^/    /' "$log" >&2
	val() { sed -n "s/^$1 \(.*\)/\1/p" "$log"; }
	record P12 on 1 c1 "$(val http_throughput_c1)"
	record P12 on 1 c8 "$(val http_throughput_c8)"
	record P12 on 1 latency "$(val http_latency_p95_ms)" "p50=$(val http_latency_p50_ms) p95=$(val http_latency_p95_ms) p99=$(val http_latency_p99_ms) rate=$(val http_latency_rate) missing=$(val http_latency_missing)"
fi

# ---------------------------------------------------------------- P7
sizes() {	# sizes -> "log delivery other total current_chunk" (bytes) of eb_p7
	"${P[@]}" -At -F ' ' -d eb_p7 -f "$HERE/p7_sizes.sql"
}
if want P7; then
	eb_log "P7: eventbus.chunk_size = $P7_CHUNK, maintenance_interval = 1s, autovacuum $P7_AUTOVACUUM"
	"${P[@]}" -d postgres -c "ALTER SYSTEM SET eventbus.chunk_size = '$P7_CHUNK'" \
		-c "ALTER SYSTEM SET eventbus.maintenance_interval = '1s'" \
		-c "ALTER SYSTEM SET autovacuum = $P7_AUTOVACUUM" -c "SELECT pg_reload_conf()" >/dev/null
	sleep 1.5
	chunk_bytes=$("${P[@]}" -At -d eb_p7 -c "SELECT pg_size_bytes(current_setting('eventbus.chunk_size'))")
	"${P[@]}" -d eb_p7 -c "SELECT eventbus.subscribe('p7', array['orders.#'])" >/dev/null
	# The first P7_FIRST events, published and acked.
	first_tx=$(( (P7_FIRST + 99) / 100 ))
	"${PGBENCH[@]}" -c 1 -t "$first_tx" -f "$HERE/p2_batch.sql" eb_p7 >"$WORK/P7-first.log" 2>&1 ||
		{ eb_log "P7 publish failed:"; tail -n 5 "$WORK/P7-first.log" >&2; }
	"${P[@]}" -d eb_p7 -v S=p7 -v N=$((first_tx * 100)) -v B=500 -v IDLE=10 \
		-f "$HERE/p3_drain_eventbus.sql" >>"$WORK/P7-first.log" 2>&1
	read -r n _ _ <<<"$(drain_line "$WORK/P7-first.log")" || true
	acked=${n:-0}
	read -r lg dl ot tot cur <<<"$(sizes)"
	record P7 on 1 first "$tot" "events=$((first_tx * 100)) acked=$acked autovacuum=$P7_AUTOVACUUM log=$lg delivery=$dl other=$ot chunk=$cur chunk_size=$chunk_bytes"
	eb_log "P7: after the first $((first_tx * 100)) events: $tot bytes (log $lg, delivery $dl, other $ot)"
	# The rest: 2 publishers (publish_batch, 100 per tx, paced at P7_RATE
	# events/s unless 0) while one consumer drains with poll(500) + ack;
	# the sizes are sampled every 0.5 s.
	rest_tx=$(( (P7_N - first_tx * 100 + 199) / 200 ))   # per publisher
	rate=()
	[ "$P7_RATE" -gt 0 ] && rate=(-R $(( (P7_RATE + 99) / 100 )))
	( while :; do echo "$(date +%s.%N) $(sizes)"; sleep 0.5; done ) >"$WORK/P7-samples" 2>/dev/null &
	BGPIDS+=($!)
	sampler=$!
	t0=$(date +%s.%N)
	"${PGBENCH[@]}" -c 2 -j 2 -t "$rest_tx" "${rate[@]}" -f "$HERE/p2_batch.sql" eb_p7 >"$WORK/P7-publish.log" 2>&1 &
	BGPIDS+=($!)
	publisher=$!
	"${P[@]}" -d eb_p7 -v S=p7 -v N=$((rest_tx * 200)) -v B=500 -v IDLE=30 \
		-f "$HERE/p3_drain_eventbus.sql" >"$WORK/P7-drain.log" 2>&1 || { eb_log "P7 drain failed:"; tail -n 5 "$WORK/P7-drain.log" >&2; }
	wait "$publisher" || { eb_log "P7 publish failed:"; tail -n 5 "$WORK/P7-publish.log" >&2; }
	t1=$(date +%s.%N)
	read -r n secs eps <<<"$(drain_line "$WORK/P7-drain.log")" || true
	acked=$((acked + ${n:-0}))
	published=$("${P[@]}" -At -d eb_p7 -c "SELECT sum(published) FROM eventbus.topic_stats" 2>/dev/null || echo '?')
	read -r lg dl ot tot cur <<<"$(sizes)"
	dead=$("${P[@]}" -At -d eb_p7 -c "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'eventbus.delivery'::regclass")
	record P7 on 1 final "$tot" "events=$P7_N published=$published acked=$acked log=$lg delivery=$dl other=$ot chunk=$cur delivery_dead_tuples=$dead secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}') drain_eps=${eps:-NA}"
	eb_log "P7: after $acked events acked: $tot bytes (log $lg, delivery $dl, other $ot); published $published"
	sleep 3	# three rounds of maintenance
	read -r lg dl ot tot cur <<<"$(sizes)"
	record P7 on 1 settled "$tot" "log=$lg delivery=$dl other=$ot chunk=$cur"
	kill "$sampler" 2>/dev/null || true
	wait "$sampler" 2>/dev/null || true
	awk '$6 != "" { if ($5 > peak) peak = $5; if ($2 > peak_log) peak_log = $2; if ($3 > peak_delivery) peak_delivery = $3
			if (prev != "" && $6 != prev) rot++; prev = $6 }
		END { printf "peak=%d peak_log=%d peak_delivery=%d rotations=%d samples=%d\n", peak, peak_log, peak_delivery, rot, NR }' \
		"$WORK/P7-samples" |
		while read -r line; do record P7 on 1 samples 0 "$line"; eb_log "P7 samples: $line"; done
	"${P[@]}" -d postgres -c "ALTER SYSTEM RESET eventbus.chunk_size" -c "ALTER SYSTEM RESET eventbus.maintenance_interval" \
		-c "ALTER SYSTEM RESET autovacuum" -c "SELECT pg_reload_conf()" >/dev/null
fi

kill "$neighbours" 2>/dev/null || true
fact "other processes (not postgres) using half a core or more" "$(awk '{for (i = 2; i <= NF; i++) c[$i]++} END {
	for (p in c) s = s (s == "" ? "" : ", ") p " in " c[p]; print (s == "" ? "none" : s) " of " NR " samples taken every 5 s"}' "$WORK/neighbours")" >/dev/null
fact "load average at end" "$(cut -d' ' -f1-3 /proc/loadavg); $(busy)" >/dev/null
fact "duration" "$(( ($(date +%s) - START) / 60 )) min $(( ($(date +%s) - START) % 60 )) s" >/dev/null
cp "$RAW" "$OUT/$NAME.tsv"
cp "$META" "$OUT/$NAME.meta"

# ---------------------------------------------------------------- the table
/usr/bin/python3 "$HERE/report.py" "$RAW" "$META" "$OUT/$NAME.md" \
	"T=$T" "ROUNDS=$ROUNDS" "CLIENTS=$CLIENTS" "DRAIN_N=$DRAIN_N" "P7_N=$P7_N" "P7_FIRST=$P7_FIRST" \
	"P7_RATE=$P7_RATE" "P6_SECONDS=$P6_SECONDS" "SMOKE=$SMOKE" "PGQ_TICK=$PGQ_TICK"
eb_log "table written to $OUT/$NAME.md (raw figures: $NAME.tsv, output: $NAME.log)"
