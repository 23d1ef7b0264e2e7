#!/usr/bin/env bash
# Cost of the statistics counters at publish (src/stats.c: counts kept per
# transaction, added to a shared-memory hash table at commit): they should
# add nothing measurable to eventbus.publish.
#
# On a throwaway cluster of its own, pgbench publishes a small payload, one
# event per transaction, on topic bench.x, which three subscriptions match
# ('bench.#', 'bench.*', 'bench.x'; nobody polls, so their consumption state
# exists but stays idle), with eventbus.track_stats on (A, the default) and
# off (B, PGOPTIONS='-c eventbus.track_stats=off'), alternating A B A B ...,
# each run after an emptied log and a CHECKPOINT. It prints the tps of each
# run, the mean per variant and the ratio A / B. Two passes: synchronous_commit
# off (where CPU cost shows) and on (durable commits).
#
# On a small (2-core, virtual) machine, tps of the same variant drifts by
# 10-20% over seconds, far more than counting could cost. Hence many short
# runs rather than few long ones, and the ratio of each round's A and B (run
# back to back) with a 95% interval: the width of that interval is what this
# run can resolve; a cost is shown only if the interval excludes 1.
#
# Sanity check: around every run it reads eventbus.topic_stats.published for
# bench.x; the A runs must have counted exactly the transactions pgbench
# committed, the B runs nothing.
#
# Not part of the test suite. Run as root or as a user that can run initdb:
#   test/bench/stats.sh
#   EB_BENCH_PORT    port of the throwaway cluster (54467)
#   EB_BENCH_TIME    seconds per pgbench run (5)
#   EB_BENCH_ROUNDS  rounds (9; about 3.5 minutes in all)
#   EB_BENCH_CLIENTS pgbench clients (4)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/../lib.sh"

PORT=${EB_BENCH_PORT:-54467}
T=${EB_BENCH_TIME:-5}
ROUNDS=${EB_BENCH_ROUNDS:-9}
CLIENTS=${EB_BENCH_CLIENTS:-4}
DB=eventbus_stats
TOPIC=bench.x
DIR=$(mktemp -d /tmp/eventbus-stats.XXXXXX)
WORK=$(mktemp -d /tmp/eventbus-stats-work.XXXXXX)
cleanup() { eb_stop_cluster "$DIR"; rm -rf "$DIR" "$WORK"; }
trap cleanup EXIT

eb_log "starting a throwaway cluster in $DIR (port $PORT)"
eb_start_cluster "$DIR" "$PORT" "shared_buffers = 256MB" || exit 1
export PGHOST=$DIR PGPORT=$PORT PGUSER=postgres
P=(psql -X -q -v ON_ERROR_STOP=1)
"${P[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
"${P[@]}" -d $DB >/dev/null <<SQL
CREATE EXTENSION eventbus;
SELECT eventbus.subscribe('s_all', array['bench.#']);
SELECT eventbus.subscribe('s_one', array['bench.*']);
SELECT eventbus.subscribe('s_x', array['bench.x']);
SELECT eventbus.publish('$TOPIC', '{"n": 0}');  -- the topic exists, with a stats entry
SQL
# The counters must be there (shared memory: eventbus is preloaded).
[ "$("${P[@]}" -At -d $DB -c "SELECT published FROM eventbus.topic_stats WHERE topic = '$TOPIC'")" = 1 ] ||
	{ eb_log "eventbus.topic_stats does not count: is eventbus in shared_preload_libraries?"; exit 1; }

# A small payload; the same script for both variants (only PGOPTIONS differs).
cat >"$WORK/publish.sql" <<SQL
\\set id random(1, 1000000000)
SELECT eventbus.publish('$TOPIC', ('{"order_id": ' || :id || ', "total": 45.47, "currency": "EUR"}')::jsonb);
SQL

published() {	# published -> eventbus.topic_stats.published of $TOPIC
	"${P[@]}" -At -d $DB -c "SELECT published FROM eventbus.topic_stats WHERE topic = '$TOPIC'"
}

run() {	# run VARIANT SYNC -> "tps transactions counted"
	local opts="-c synchronous_commit=$2" before after
	[ "$1" = B ] && opts="$opts -c eventbus.track_stats=off"
	"${P[@]}" -d $DB -c "TRUNCATE eventbus.event_log_0, eventbus.event_log_1, eventbus.event_log_2" -c CHECKPOINT
	before=$(published)
	PGOPTIONS="$opts" pgbench -n -c "$CLIENTS" -j "$CLIENTS" -T "$T" -f "$WORK/publish.sql" $DB \
		>"$WORK/pgbench.out" 2>"$WORK/pgbench.err" ||
		{ cat "$WORK/pgbench.err" >&2; return 1; }
	after=$(published)
	awk -v counted=$((after - before)) '
		/^number of transactions actually processed:/ {split($6, a, "/"); n = a[1]}
		/^tps/ {tps = $3}
		END {print tps, n, counted}' "$WORK/pgbench.out"
}

echo
echo "eventbus.publish, 1 event/transaction, small payload, topic $TOPIC matched by 3 idle subscriptions"
echo "A: eventbus.track_stats = on (default); B: PGOPTIONS='-c eventbus.track_stats=off'"
echo "pgbench -c $CLIENTS -j $CLIENTS -T $T, $ROUNDS rounds A B per pass; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
"${P[@]}" -At -d $DB -F ' = ' -c "SELECT 'server', split_part(version(), ' ', 2)" \
	-c "SELECT name, current_setting(name) FROM pg_settings
	     WHERE name IN ('shared_buffers', 'fsync', 'wal_level', 'max_wal_size', 'checkpoint_timeout',
	                    'wal_buffers', 'max_connections', 'eventbus.track_stats', 'eventbus.stats_max')
	     ORDER BY name" | sed 's/^/  /'
echo
a_n=0; a_counted=0; b_n=0; b_counted=0
for sync in off on; do
	a_all=(); b_all=()
	for r in $(seq "$ROUNDS"); do
		out=$(run A $sync); read -r tps n counted <<<"$out"
		a_all+=("$tps"); a_n=$((a_n + n)); a_counted=$((a_counted + counted))
		out=$(run B $sync); read -r tps n counted <<<"$out"
		b_all+=("$tps"); b_n=$((b_n + n)); b_counted=$((b_counted + counted))
	done
	/usr/bin/python3 - "$sync" "${a_all[*]}" "${b_all[*]}" <<'PY'
import math, sys
sync, a, b = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
ma, mb = sum(a) / len(a), sum(b) / len(b)
spread = lambda xs, m: 100 * (max(xs) - min(xs)) / m
pre = f"synchronous_commit={sync:3}"
print(f"{pre}  stats on  (A): {' '.join('%.0f' % x for x in a)}  mean {ma:.0f} tps (runs spread {spread(a, ma):.0f}%)")
print(f"{pre}  stats off (B): {' '.join('%.0f' % x for x in b)}  mean {mb:.0f} tps (runs spread {spread(b, mb):.0f}%)")
print(f"{pre}  A / B = {ma / mb:.3f}: counting adds {100 * (mb / ma - 1):+.1f}% to publish's cost")
# Each round's A and B ran back to back: their ratios, and a 95% interval
# for the ratio (t on the log ratios), show what this machine can resolve.
r = [x / y for x, y in zip(a, b)]
if len(r) > 1:
    t975 = [12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23, 2.20, 2.18, 2.16, 2.14, 2.13]
    lr = [math.log(x) for x in r]
    m = sum(lr) / len(lr)
    sd = math.sqrt(sum((x - m) ** 2 for x in lr) / (len(lr) - 1))
    h = (t975[len(r) - 2] if len(r) - 2 < len(t975) else 2.0) * sd / math.sqrt(len(r))
    print(f"{pre}  A / B per round: {' '.join('%.3f' % x for x in r)}; "
          f"geometric mean {math.exp(m):.3f}, 95% interval {math.exp(m - h):.3f} .. {math.exp(m + h):.3f}")
PY
done

echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
ok=1
echo "sanity (eventbus.topic_stats.published of $TOPIC, read before and after each run):"
echo "  A runs: $a_n transactions committed, published counted +$a_counted"
echo "  B runs: $b_n transactions committed, published counted +$b_counted"
if [ "$a_n" -gt 0 ] && [ "$a_counted" = "$a_n" ] && [ "$b_n" -gt 0 ] && [ "$b_counted" = 0 ]; then
	echo "  ok: A counted every publish, B none"
else
	echo "  FAILED: expected A to count exactly its transactions and B nothing"
	ok=0
fi
[ $ok = 1 ] || exit 1

# Instructions, which do not drift: with valgrind installed, a single-user
# backend runs 1,000 and 3,000 one-event transactions under callgrind with
# track_stats on and off; the slope is the instruction count per transaction.
if command -v valgrind >/dev/null; then
	eb_stop_cluster "$DIR"
	echo
	echo "instructions per publishing transaction (callgrind, single-user backend, synchronous_commit off):"
	for mode in on off; do
		for n in 1000 3000; do
			{
				echo "SET synchronous_commit = off;"
				echo "SET eventbus.track_stats = $mode;"
				for i in $(seq "$n"); do echo "SELECT eventbus.publish('$TOPIC', '{\"n\": $i}');"; done
			} >"$WORK/cg.sql"
			chmod 644 "$WORK/cg.sql"; chmod 777 "$WORK"	# the server's user writes there
			eb_as_pg sh -c "cd /tmp && valgrind --tool=callgrind --callgrind-out-file=$WORK/cg.$mode.$n \
				$EB_PGBIN/postgres --single -D $DIR/data -c shared_preload_libraries=eventbus $DB \
				<$WORK/cg.sql >/dev/null 2>&1"
		done
		lo=$(awk '/^summary:/ {print $2}' "$WORK/cg.$mode.1000")
		hi=$(awk '/^summary:/ {print $2}' "$WORK/cg.$mode.3000")
		eval "ins_$mode=$(( (hi - lo) / 2000 ))"
	done
	echo "  stats on: $ins_on, stats off: $ins_off; counting adds $(( ins_on - ins_off )) instructions" \
		"($(python3 -c "print(f'{100 * ($ins_on / $ins_off - 1):.1f}')")%)"
fi
