#!/usr/bin/env bash
# Schema-check overhead at publish (issue: validation of a ~1 KB payload
# against a ~20-keyword schema adds at most 20% to publish's cost).
#
# On a throwaway cluster of its own, pgbench publishes the same ~1 KB
# payload, one event per transaction, on a topic with a registered schema
# (S) and on a topic without one (N), alternating N S N S ..., and prints
# the tps of each run and the ratio S / N. Two passes: synchronous_commit
# off (where CPU cost shows; this is the figure the target is about) and on
# (durable commits).
#
# Not part of the test suite. Run as root or as a user that can run initdb:
#   test/bench/schema.sh
#   EB_BENCH_PORT    port of the throwaway cluster (54465)
#   EB_BENCH_TIME    seconds per pgbench run (10)
#   EB_BENCH_ROUNDS  rounds (3)
#   EB_BENCH_CLIENTS pgbench clients (2)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/../lib.sh"

PORT=${EB_BENCH_PORT:-54465}
T=${EB_BENCH_TIME:-10}
ROUNDS=${EB_BENCH_ROUNDS:-3}
CLIENTS=${EB_BENCH_CLIENTS:-2}
DB=eventbus_schema
DIR=$(mktemp -d /tmp/eventbus-schema.XXXXXX)
WORK=$(mktemp -d /tmp/eventbus-schema-work.XXXXXX)
cleanup() { eb_stop_cluster "$DIR"; rm -rf "$DIR" "$WORK"; }
trap cleanup EXIT

eb_log "starting a throwaway cluster in $DIR (port $PORT)"
eb_start_cluster "$DIR" "$PORT" "shared_buffers = 256MB" || exit 1
export PGHOST=$DIR PGPORT=$PORT PGUSER=postgres
P=(psql -X -q -v ON_ERROR_STOP=1)
"${P[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
"${P[@]}" -d $DB >/dev/null <<'SQL'
CREATE EXTENSION eventbus;
-- About 20 keywords, the shape of a typical order event.
SELECT eventbus.register_schema('orders.*.created', '{
  "type": "object",
  "required": ["order_id", "customer", "items", "total", "currency", "created_at"],
  "additionalProperties": false,
  "properties": {
    "order_id":   {"type": "integer", "minimum": 1},
    "customer":   {"type": "object", "required": ["id", "email"],
                   "properties": {"id": {"type": "string", "pattern": "^c-[0-9]+$"},
                                  "email": {"type": "string", "maxLength": 254},
                                  "name": {"type": "string", "minLength": 1}}},
    "items":      {"type": "array", "minItems": 1, "maxItems": 100,
                   "items": {"type": "object", "required": ["sku", "qty", "price"],
                             "properties": {"sku": {"type": "string", "pattern": "^SKU-[0-9]{5}$"},
                                            "qty": {"type": "integer", "minimum": 1},
                                            "price": {"type": "number", "exclusiveMinimum": 0, "multipleOf": 0.01}}}},
    "total":      {"type": "number", "minimum": 0},
    "currency":   {"enum": ["EUR", "USD", "GBP"]},
    "created_at": {"type": "string", "format": "date-time"},
    "notes":      {"type": "string", "maxLength": 2000}
  }}');
SQL

# The same ~1 KB payload for both topics.
PAYLOAD=$(/usr/bin/python3 - <<'PY'
import json
items = [{"sku": "SKU-%05d" % (10000 + i), "qty": 1 + i % 3, "price": round(9.99 + i, 2)} for i in range(8)]
doc = {"order_id": 42, "customer": {"id": "c-000042", "email": "jane@example.com", "name": "Jane Doe"},
       "items": items, "total": round(sum(i["qty"] * i["price"] for i in items), 2), "currency": "EUR",
       "created_at": "2026-11-25T10:00:00Z", "notes": "Leave at the door, please. " * 10}
print(json.dumps(doc))
PY
)
BYTES=$(printf '%s' "$PAYLOAD" | wc -c)
for v in S N; do
	topic=$([ $v = S ] && echo orders.eu.created || echo plain.eu.created)
	printf "SELECT eventbus.publish('%s', '%s');\n" "$topic" "$PAYLOAD" >"$WORK/$v.sql"
done
"${P[@]}" -d $DB -c "SELECT eventbus.publish('orders.eu.created', '$PAYLOAD')" >/dev/null  # valid

run() {	# run VARIANT SYNC -> tps
	"${P[@]}" -d $DB -c "TRUNCATE eventbus.event_log_0, eventbus.event_log_1, eventbus.event_log_2" -c CHECKPOINT
	PGOPTIONS="-c synchronous_commit=$2" pgbench -n -c "$CLIENTS" -j "$CLIENTS" -T "$T" -f "$WORK/$1.sql" $DB 2>/dev/null |
		awk '/^tps/ {print $3; exit}'
}

echo
echo "payload $BYTES bytes; schema of ~20 keywords on orders.*.created; pgbench -c $CLIENTS -T $T; $(nproc) cores"
for sync in off on; do
	n_all=(); s_all=()
	for r in $(seq "$ROUNDS"); do
		n_all+=("$(run N $sync)")
		s_all+=("$(run S $sync)")
	done
	/usr/bin/python3 - "$sync" "${n_all[*]}" "${s_all[*]}" <<'PY'
import sys
sync, n, s = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
mn, ms = sum(n) / len(n), sum(s) / len(s)
print(f"synchronous_commit={sync:3}  no schema (N): {' '.join('%.0f' % x for x in n)}  mean {mn:.0f} tps")
print(f"synchronous_commit={sync:3}  schema    (S): {' '.join('%.0f' % x for x in s)}  mean {ms:.0f} tps")
print(f"synchronous_commit={sync:3}  S / N = {ms / mn:.2f}: the check adds {100 * (mn / ms - 1):.0f}% to publish's cost (target <= 20%)")
PY
done
