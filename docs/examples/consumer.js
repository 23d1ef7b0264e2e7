#!/usr/bin/env node
// An eventbus consumer with exactly-once effects inside the database.
//
//     node consumer.js SUBSCRIPTION [--max-events N] [--idle-timeout SECONDS]
//     node consumer.js --self-test
//
// Connects with the libpq environment variables (PGHOST, PGPORT, PGUSER,
// PGDATABASE, PGPASSWORD). Each batch is one transaction: handle every event
// leased last time (here: insert it into example_orders), then one call,
// poll(ack_lease => token), acks them and leases the next batch; commit. The
// effects and the ack commit together: exactly once. Needs the "pg"
// package (npm install). See README.md.
'use strict';
const { randomBytes } = require('node:crypto');
const { setTimeout: sleep } = require('node:timers/promises');
const { parseArgs } = require('node:util');
const { Client } = require('pg');

const WAIT = '2s'; // poll blocks up to this long, and wakes up when events commit

// The application's work for one event, in the consumer's transaction.
async function handle(client, event) {
  await client.query('insert into example_orders (event_id, payload) values ($1, $2)',
    [event.event_id, JSON.stringify(event.payload)]);
  if (event.payload.fail && event.attempt === 1) { // for the self-test
    throw new Error(`order ${event.payload.n} failed on purpose`);
  }
}

// Handles events until maxEvents are done or none came for idleTimeout
// seconds (0: no limit). Returns { handled, failed } (failed attempts).
async function consume(client, subscription, { maxEvents = 0, idleTimeout = 0 } = {}) {
  let handled = 0;
  let failed = 0;
  let lastEvent = Date.now();
  await client.query('create table if not exists example_orders (event_id bigint primary key, payload jsonb)');
  let events = [];
  let token = null;
  for (;;) {
    // One transaction per batch, one round trip for ack and poll: handle the
    // events leased last time, then poll(ack_lease => their token) acks them
    // and leases the next ones; COMMIT. The effects and the ack commit
    // together. Should it roll back, the events are still leased to this
    // consumer: handle them again.
    let done = 0;
    let fails = 0;
    let limit = 0;
    let next = [];
    await client.query('begin');
    try {
      for (const event of events) {
        await client.query('savepoint event'); // a failing event undoes only its own work
        try {
          await handle(client, event);
          await client.query('release savepoint event');
          done++;
        } catch (err) {
          await client.query('rollback to savepoint event');
          await client.query('select eventbus.nack($1, $2, $3, lease_token => $4)',
            [subscription, event.event_id, err.message, token]);
          fails++;
        }
      }
      // At most maxEvents in all: the last round only acks.
      limit = maxEvents ? Math.min(100, maxEvents - handled - done) : 100;
      if (limit > 0) {
        // Wait for new events only when there was nothing to do.
        ({ rows: next } = await client.query(
          'select * from eventbus.poll($1, $2, wait => $3, ack_lease => $4)',
          [subscription, limit, events.length ? '0' : WAIT, token]));
      } else {
        await client.query('select eventbus.ack($1, null, $2)', [subscription, token]);
      }
      await client.query('commit');
    } catch (err) {
      await client.query('rollback');
      continue; // the same events again, still leased to us
    }
    handled += done;
    failed += fails;
    if (limit <= 0) break;
    events = next;
    token = events.length ? events[0].lease_token : null;
    if (events.length) {
      lastEvent = Date.now();
    } else if (idleTimeout && Date.now() - lastEvent >= idleTimeout * 1000) {
      break;
    }
  }
  return { handled, failed };
}

const BATCHES = [1, 9, 40, 50, 1, 99]; // the self-test's publishing transactions: 200 events

// Consumes the events a second connection publishes meanwhile and checks
// that each took effect exactly once. Returns 1 listing what failed, else 0.
async function selfTest(failAt = 123) {
  const count = BATCHES.reduce((a, b) => a + b);
  const sub = `example_js_${randomBytes(6).toString('hex')}`;
  const topic = `examples.${sub}.created`;
  const consumer = new Client();
  const publisher = new Client();
  await consumer.connect();
  await publisher.connect();
  const one = async (sql, params) => (await publisher.query(sql, params)).rows[0];

  const consumerWaits = async () => { // until the consumer sleeps in poll's wait (5 s at most)
    for (let i = 0; i < 500; i++) {
      const { waits } = await one(`select wait_event_type = 'Extension' as waits
                                     from pg_stat_activity where pid = $1`, [consumer.processID]);
      if (waits) return;
      await sleep(10);
    }
  };

  const publishAll = async () => { // one transaction per batch; returns the event ids
    const ids = [];
    const numbers = Array.from({ length: count }, (_, i) => i + 1);
    for (const [i, size] of BATCHES.entries()) {
      if (i % 2 === 0) await consumerWaits(); // publish while it waits, or while it works
      const payloads = numbers.splice(0, size).map((n) => ({ run: sub, n, fail: n === failAt }));
      const { rows } = await publisher.query(
        'select eventbus.publish($1, p) as id from jsonb_array_elements($2) p', [topic, JSON.stringify(payloads)]);
      ids.push(...rows.map((r) => r.id));
    }
    return ids;
  };

  await one(`select eventbus.subscribe($1, array[$2], backoff_initial => '10 milliseconds')`, [sub, topic]);
  const errors = [];
  try {
    const [{ handled, failed }, ids] = await Promise.all([
      consume(consumer, sub, { maxEvents: count, idleTimeout: 10 }), publishAll()]);

    if (handled !== count) errors.push(`the consumer handled ${handled} events, expected ${count}`);
    if (failed !== 1) errors.push(`${failed} failed attempts, expected 1`);
    const { rows } = await one('select count(*)::int as rows from example_orders where event_id = any($1)', [ids]);
    if (rows !== count) errors.push(`example_orders holds ${rows} of the ${count} events`);
    const left = await one(`select leased::int, waiting::int, dead::int
                              from eventbus.subscriptions where name = $1`, [sub]);
    if (!left || left.leased || left.waiting || left.dead) {
      errors.push(`deliveries left (leased, waiting, dead): ${JSON.stringify(left)}`);
    }
    const { more } = await one('select count(*)::int as more from eventbus.poll($1)', [sub]);
    if (more) errors.push(`poll hands out ${more} more events`);
  } finally {
    await one('select eventbus.unsubscribe($1)', [sub]);
    await Promise.all([consumer.end(), publisher.end()]);
  }
  for (const e of errors) console.log('self-test FAILED:', e);
  if (!errors.length) {
    console.log(`self-test passed: ${count} events in ${BATCHES.length} transactions, each handled` +
      ` exactly once, 1 failure retried (${sub})`);
  }
  return errors.length ? 1 : 0;
}

async function main() {
  const { values: opts, positionals: [subscription] } = parseArgs({
    allowPositionals: true,
    options: {
      'max-events': { type: 'string', default: '0' }, // stop after N events (0: never)
      'idle-timeout': { type: 'string', default: '0' }, // stop after SECONDS without events (0: never)
      'self-test': { type: 'boolean', default: false },
    },
  });
  if (opts['self-test']) return selfTest();
  if (!subscription) {
    console.error('usage: consumer.js SUBSCRIPTION [--max-events N] [--idle-timeout SECONDS] | --self-test');
    return 2;
  }
  const client = new Client(); // PGHOST, PGPORT, PGUSER, PGDATABASE, ...
  await client.connect();
  const { handled, failed } = await consume(client, subscription, {
    maxEvents: Number(opts['max-events']), idleTimeout: Number(opts['idle-timeout']),
  }).finally(() => client.end());
  console.log(`${subscription}: ${handled} events handled, ${failed} failed attempts`);
  return 0;
}

main().then((code) => { process.exitCode = code; }, (err) => { console.error(err); process.exit(1); });
