#!/usr/bin/env bash
# Drain N events with poll(B) + ack, beside a plain keyset SELECT of the
# same rows in pages of B, on an existing cluster (PGHOST/PGPORT/PGUSER).
# Prints events/s of both and their ratio. Usage: drain.sh [N] [B]
set -euo pipefail
N=${1:-200000}
B=${2:-500}
DB=eventbus_drain
P=(psql -X -q -v ON_ERROR_STOP=1)
"${P[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB"
"${P[@]}" -d postgres -c "CREATE DATABASE $DB"
"${P[@]}" -d $DB -c "CREATE EXTENSION eventbus"
"${P[@]}" -d $DB -c "SELECT eventbus.subscribe('drain', array['orders.#'], start_at => 'earliest')"
"${P[@]}" -d $DB -c "SELECT count(*) FROM eventbus.publish_batch(array['orders.eu.created'],
  (SELECT array_agg(jsonb_build_object('order_id', g, 'customer_id', 'c-000042', 'total', 45.47))
     FROM generate_series(1, $N) g))" >/dev/null
"${P[@]}" -d $DB -c "CREATE TABLE plain AS SELECT id, payload FROM eventbus.event_log"
"${P[@]}" -d $DB -c "ALTER TABLE plain ADD PRIMARY KEY (id)"
"${P[@]}" -d $DB -c "VACUUM ANALYZE plain"
"${P[@]}" -d $DB -c "VACUUM ANALYZE eventbus.event_log_0"
pages=$(( (N + B - 1) / B + 1 ))
tmp=$(mktemp -d)
for _ in $(seq $pages); do
	echo "SELECT eventbus.ack('drain', array(SELECT event_id FROM eventbus.poll('drain', $B)));"
done >"$tmp/drain.sql"
{
	echo "SELECT 0 AS last \\gset"
	for _ in $(seq $pages); do
		echo "SELECT coalesce(max(id), :last) AS last FROM (SELECT id, payload FROM plain WHERE id > :last ORDER BY id LIMIT $B) s \\gset"
	done
} >"$tmp/plain.sql"
t0=$(date +%s.%N); "${P[@]}" -d $DB -f "$tmp/drain.sql" >/dev/null; t1=$(date +%s.%N)
"${P[@]}" -d $DB -f "$tmp/plain.sql" >/dev/null; t2=$(date +%s.%N)
left=$("${P[@]}" -At -d $DB -c "SELECT count(*) FROM eventbus.delivery")
rm -rf "$tmp"
python3 - "$N" "$t0" "$t1" "$t2" "$left" <<'PY'
import sys
n, t0, t1, t2, left = int(sys.argv[1]), *map(float, sys.argv[2:5]), sys.argv[5]
a, b = t1 - t0, t2 - t1
print(f"poll+ack drain: {a:.2f} s, {n / a:,.0f} events/s (deliveries left: {left})")
print(f"plain SELECT:   {b:.2f} s, {n / b:,.0f} events/s")
print(f"ratio drain / plain SELECT: {b / a:.2f}")
PY
