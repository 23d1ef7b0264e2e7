#!/usr/bin/env node
// Reads the CloudEvents that the eventbus Kafka relay produces, in binary
// content mode (the attributes in ce_* headers, the data as the message
// value), and drops the duplicates that at-least-once delivery brings.
//
//     KAFKA_BROKERS=host:port,... KAFKA_TOPIC=orders [EXPECT=N] [TIMEOUT=30] \
//       [KAFKA_GROUP=name] [SESSION_TIMEOUT=ms] node consumer.js
//
// KAFKA_GROUP defaults to a new group per run. SESSION_TIMEOUT is kafkajs's
// sessionTimeout (30000): a run that joins a group whose previous member
// left waits about that long for its JoinGroup on the librdkafka mock
// cluster (docs/testing.md, the Kafka rig).
//
// Prints one JSON line per unique event:
//     {"id":..,"type":..,"source":..,"time":..,"specversion":..,
//      "datacontenttype":..,"extensions":{..},"key":..,"partition":..,
//      "offset":..,"data":..}
// and, at the end, one summary line:
//     {"summary":{"messages":..,"unique":..,"duplicates":..,"invalid":..,"timed_out":..}}
// It stops once it has EXPECT unique events and has read each partition
// assigned to it to the end that partition had when the EXPECT-th came (so
// that the duplicates already there are counted) (exit 0), or after TIMEOUT
// seconds without them (exit 1; with no EXPECT, a timeout is the normal end,
// exit 0). A group that already committed offsets (KAFKA_GROUP of an
// earlier run) starts from them, not from the beginning.
//
// Duplicates: the relay produces at least once (a retried batch after a
// crash is produced again), so the same event may come twice. CloudEvents
// says events with the same source and id are the same event: this keeps
// the (source, id) pairs it has seen in a Set. A real consumer keeps them
// where its effects are (a unique key in its database), not in memory.
// Needs the "kafkajs" package (npm ci). kafkajs decodes uncompressed and
// gzip batches only: for a relay producing with lz4, snappy or zstd,
// register a codec (kafkajs CompressionCodecs) first. See
// ../../testing.md#the-kafka-rig.
'use strict';
const { Kafka, logLevel } = require('kafkajs');

// Returns a header value as a string (kafkajs gives Buffers, or arrays of
// them for a repeated header: the last one wins).
function headerString(value) {
  if (Array.isArray(value)) value = value[value.length - 1];
  return value === undefined || value === null ? null : value.toString('utf8');
}

// Decodes one Kafka message in CloudEvents binary mode; returns the event,
// or null when it has no ce_id/ce_source/ce_type (not a CloudEvent).
function decodeCloudEvent({ topic, partition, message }) {
  const attrs = {};
  const extensions = {};
  let contentType = null;
  for (const [name, value] of Object.entries(message.headers || {})) {
    const lower = name.toLowerCase();
    if (lower === 'content-type') contentType = headerString(value);
    else if (lower.startsWith('ce_')) attrs[lower.slice(3)] = headerString(value);
    else extensions[name] = headerString(value); // e.g. traceparent
  }
  if (!attrs.id || !attrs.source || !attrs.type) return null;
  const { id, source, type, time = null, specversion = null, ...rest } = attrs;
  Object.assign(extensions, rest); // ce_subject, ce_dataschema, extension attributes
  let data = null;
  if (message.value !== null) {
    const text = message.value.toString('utf8');
    if (contentType === null || /^application\/(.+\+)?json\b/.test(contentType)) {
      try { data = JSON.parse(text); } catch (e) { data = text; }
    } else if (/^text\//.test(contentType)) {
      data = text;
    } else {
      data = { base64: message.value.toString('base64') };
    }
  }
  return {
    id, type, source, time, specversion,
    datacontenttype: contentType,
    extensions,
    key: message.key === null ? null : message.key.toString('utf8'),
    topic,
    partition,
    offset: message.offset,
    data,
  };
}

// Consumes until `expect` unique events or `timeout` seconds; prints the
// events and the summary; returns the summary.
async function consume({ brokers, topic, expect, timeout, groupId, sessionTimeout }) {
  const kafka = new Kafka({
    clientId: 'eventbus-kafka-example',
    brokers,
    logLevel: logLevel.WARN,
    retry: { retries: 8 },
  });
  // maxWaitTimeInMs: fetches return within half a second when there is
  // nothing, so that the consumer stops soon after its last event.
  const consumer = kafka.consumer({ groupId, sessionTimeout, maxWaitTimeInMs: 500 });
  const seen = new Set();
  const summary = { messages: 0, unique: 0, duplicates: 0, invalid: 0, timed_out: false };
  let finish;
  const finished = new Promise((resolve) => { finish = resolve; });
  const timer = setTimeout(() => { summary.timed_out = true; finish(); }, timeout * 1000);
  const admin = kafka.admin();
  const next = new Map(); // partition -> next offset to read
  let assigned = []; // this member's partitions of the topic
  let ends = null; // partition -> end offset, once EXPECT events are in
  // True when every assigned partition has been read to the end noted in
  // `ends`.
  const drained = () => assigned.every((p) => next.get(p) >= ends.get(p));
  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    assigned = payload.memberAssignment[topic] || [];
  });

  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async (payload) => {
        summary.messages++;
        next.set(payload.partition, BigInt(payload.message.offset) + 1n);
        try {
          await handleMessage(payload);
        } finally {
          if (ends !== null && drained()) finish();
        }
      },
    });
    await finished;
  } finally {
    clearTimeout(timer);
    await consumer.disconnect();
    await admin.disconnect();
  }
  console.log(JSON.stringify({ summary }));
  return summary;

  // Decodes, dedupes and prints one message; notes the partitions' ends
  // when the EXPECT-th unique event comes.
  async function handleMessage(payload) {
    const event = decodeCloudEvent(payload);
    if (event === null) {
      summary.invalid++;
      console.error(`not a CloudEvent (no ce_id, ce_source or ce_type): ${payload.topic}/${payload.partition}@${payload.message.offset}`);
      return;
    }
    const identity = JSON.stringify([event.source, event.id]);
    if (seen.has(identity)) {
      summary.duplicates++;
      return;
    }
    seen.add(identity);
    summary.unique++;
    console.log(JSON.stringify(event));
    if (expect > 0 && summary.unique >= expect && ends === null) {
      // The ends to read to; where a partition not read yet in this run
      // starts: the group's committed offset, else the beginning.
      await admin.connect();
      const offsets = await admin.fetchTopicOffsets(topic);
      const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
      ends = new Map(offsets.map((o) => [o.partition, BigInt(o.high)]));
      for (const o of offsets) {
        const c = committed.partitions.find((x) => x.partition === o.partition);
        const start = c && BigInt(c.offset) >= 0n ? BigInt(c.offset) : BigInt(o.low);
        if (!next.has(o.partition)) next.set(o.partition, start);
      }
    }
  }
}

// Reads the settings from the environment and runs the consumer.
async function main() {
  const env = process.env;
  if (!env.KAFKA_BROKERS || !env.KAFKA_TOPIC) {
    console.error('usage: KAFKA_BROKERS=host:port,... KAFKA_TOPIC=topic [EXPECT=N] [TIMEOUT=30] [KAFKA_GROUP=name] [SESSION_TIMEOUT=ms] node consumer.js');
    process.exit(2);
  }
  const summary = await consume({
    brokers: env.KAFKA_BROKERS.split(','),
    topic: env.KAFKA_TOPIC,
    expect: Number(env.EXPECT || 0),
    timeout: Number(env.TIMEOUT || 30),
    groupId: env.KAFKA_GROUP || `eventbus-example-${process.pid}-${Date.now()}`,
    sessionTimeout: Number(env.SESSION_TIMEOUT || 30000),
  });
  process.exit(summary.timed_out && Number(env.EXPECT || 0) > 0 ? 1 : 0);
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}

module.exports = { decodeCloudEvent, consume };
