#!/usr/bin/env bash
# The self-test of consumer.js (the examples suite of make test runs it):
# starts the mock Kafka cluster (test/kafka/eb_kafka_mock, make kafka-mock),
# produces with kcat 6 CloudEvents in binary mode over 3 partitions, one of
# them twice (the duplicate a retried relay batch makes) and one message
# that is not a CloudEvent, runs consumer.js with EXPECT=6 and checks what
# it printed: the 6 events once each, intact, and the summary counts. Then
# one more event, and a second run in the same consumer group resumes from
# the offsets the first committed: it reads that event alone.
# Exits 0 when every check passed; prints "check: ..." lines.
#
#   EB_KAFKA_MOCK  the mock binary (default: test/kafka/eb_kafka_mock of this checkout)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MOCK=${EB_KAFKA_MOCK:-$HERE/../../../test/kafka/eb_kafka_mock}
[ -x "$MOCK" ] || { echo "no mock cluster at $MOCK (make kafka-mock)"; exit 1; }
command -v kcat >/dev/null || { echo "kcat is not installed"; exit 1; }
[ -d "$HERE/node_modules/kafkajs" ] || { echo "kafkajs is not installed (npm ci in $HERE)"; exit 1; }

TMP=$(mktemp -d /tmp/eb-kafka-example.XXXXXX)
coproc MOCKP { exec "$MOCK" --brokers 3; }
MOCK_PID=$MOCKP_PID
trap 'kill "$MOCK_PID" 2>/dev/null; wait "$MOCK_PID" 2>/dev/null; rm -rf "$TMP"' EXIT

# cmd LINE: sends a command to the mock; fails unless it answers ok.
cmd() {
	local answer
	echo "$1" >&"${MOCKP[1]}"
	read -r -t 10 answer <&"${MOCKP[0]}"
	[ "$answer" = ok ] || { echo "mock: $1: $answer"; exit 1; }
}
read -r -t 10 BOOTSTRAP <&"${MOCKP[0]}"
echo "mock cluster at $BOOTSTRAP"
cmd "create orders 3"

# produce ID KEY: one CloudEvent in binary mode, its data a JSON object, by
# an idempotent producer as the relay's is.
produce() {
	printf '{"n": %d, "note": "caf\xc3\xa9 \\"quoted\\" line\\nbreak"}' "$1" >"$TMP/payload"
	kcat -P -b "$BOOTSTRAP" -t orders -k "$2" \
		-H "ce_specversion=1.0" -H "ce_id=$1" -H "ce_source=/eventbus/shop" \
		-H "ce_type=shop.order.created" -H "ce_time=2026-12-03T10:00:0$1Z" \
		-H "ce_subject=orders.$1" -H "content-type=application/json" \
		-H "traceparent=00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333$1-01" \
		-X enable.idempotence=true "$TMP/payload"
}
for i in 1 2 3; do produce $i "customer-$((i % 3))"; done
produce 2 customer-2 # the duplicate: same source and id, same key
for i in 4 5 6; do produce $i "customer-$((i % 3))"; done
echo 'not a cloudevent' >"$TMP/plain"
kcat -P -b "$BOOTSTRAP" -t orders -k other "$TMP/plain"

cd "$HERE"
status=0
# A short session: the second run's JoinGroup waits for the first
# member's session to end.
export KAFKA_BROKERS=$BOOTSTRAP KAFKA_TOPIC=orders KAFKA_GROUP=self-test SESSION_TIMEOUT=6000
EXPECT=6 TIMEOUT=60 node consumer.js >"$TMP/out" 2>"$TMP/err" || status=$?
cat "$TMP/out"
sed 's/^/stderr: /' "$TMP/err"
[ $status = 0 ] || { echo "consumer.js exited $status"; exit 1; }

# The checks, on the JSON lines.
node - "$TMP/out" <<'EOF'
'use strict';
const fs = require('node:fs');
const lines = fs.readFileSync(process.argv[2], 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const events = lines.filter((l) => !l.summary);
const summary = lines.filter((l) => l.summary).map((l) => l.summary)[0];
let failed = 0;
const check = (ok, what) => {
  console.log(`check: ${ok ? 'ok' : 'FAILED'}: ${what}`);
  if (!ok) failed++;
};
check(summary !== undefined, 'a summary line');
check(summary && summary.unique === 6, 'summary: 6 unique events');
check(summary && summary.duplicates === 1, 'summary: 1 duplicate');
check(summary && summary.invalid === 1, 'summary: 1 message that is not a CloudEvent');
check(summary && summary.messages === 8, 'summary: 8 messages read');
check(summary && summary.timed_out === false, 'summary: not timed out');
check(events.length === 6, 'one line per unique event');
check(JSON.stringify(events.map((e) => e.id).sort()) === '["1","2","3","4","5","6"]', 'ids 1 to 6, once each');
const intact = events.every((e) => e.type === 'shop.order.created'
  && e.source === '/eventbus/shop' && e.specversion === '1.0'
  && e.time === `2026-12-03T10:00:0${e.id}Z`
  && e.datacontenttype === 'application/json'
  && e.key === `customer-${e.id % 3}`
  && e.extensions.subject === `orders.${e.id}`
  && e.extensions.traceparent === `00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333${e.id}-01`
  && e.data.n === Number(e.id)
  && e.data.note === 'caf\u00e9 "quoted" line\nbreak'
  && Number.isInteger(e.partition) && /^\d+$/.test(e.offset));
check(intact, 'attributes, key, extensions and data intact');
const partitions = new Set(events.map((e) => e.partition));
check(partitions.size > 1, `events on more than one partition (${[...partitions]})`);
process.exit(failed ? 1 : 0);
EOF

# The second run: the group's committed offsets, then event 7 only.
produce 7 customer-1
status=0
EXPECT=1 TIMEOUT=60 node consumer.js >"$TMP/out2" 2>"$TMP/err2" || status=$?
cat "$TMP/out2"
sed 's/^/stderr: /' "$TMP/err2"
[ $status = 0 ] || { echo "consumer.js (second run) exited $status"; exit 1; }
node - "$TMP/out2" <<'EOF'
'use strict';
const fs = require('node:fs');
const lines = fs.readFileSync(process.argv[2], 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const events = lines.filter((l) => !l.summary);
const summary = (lines.find((l) => l.summary) || {}).summary || {};
const ok = events.length === 1 && events[0].id === '7' && events[0].data.n === 7
  && summary.messages === 1 && summary.unique === 1 && summary.timed_out === false;
console.log(`check: ${ok ? 'ok' : 'FAILED'}: a second run in the group resumes at its committed offsets: event 7 alone`);
process.exit(ok ? 0 : 1);
EOF
