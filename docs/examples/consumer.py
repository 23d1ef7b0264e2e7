#!/usr/bin/env python3
"""An eventbus consumer with exactly-once effects inside the database.

    consumer.py SUBSCRIPTION [--max-events N] [--idle-timeout SECONDS]
    consumer.py --self-test

Connects with the libpq environment variables (PGHOST, PGPORT, PGUSER,
PGDATABASE, PGPASSWORD). Each batch is one transaction: handle every event
leased last time (here: insert it into example_orders), then one call,
poll(ack_lease => token), acks them and leases the next batch; commit. The
effects and the ack commit together: exactly once inside the database. Needs psycopg2
(Debian: python3-psycopg2). See README.md.
"""
import argparse
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from itertools import islice

import psycopg2
from psycopg2.extras import Json, NamedTupleCursor

WAIT = "2s"  # poll blocks up to this long, and wakes up when events commit


def handle(cur, event):
    """The application's work for one event, in the consumer's transaction."""
    cur.execute("insert into example_orders (event_id, payload) values (%s, %s)",
                (event.event_id, Json(event.payload)))
    if event.payload.get("fail") and event.attempt == 1:  # for the self-test
        raise RuntimeError(f"order {event.payload.get('n')} failed on purpose")


def consume(conn, subscription, max_events=0, idle_timeout=0.0):
    """Handles events until max_events are done or none came for idle_timeout
    seconds (0: no limit). Returns (handled, failed attempts)."""
    handled = failed = 0
    last_event = time.monotonic()
    with conn, conn.cursor() as cur:
        cur.execute("create table if not exists example_orders"
                    " (event_id bigint primary key, payload jsonb)")
    events, token = [], None
    while True:
        # One transaction per batch, one round trip for ack and poll: handle
        # the events leased last time, then poll(ack_lease => their token)
        # acks them and leases the next ones; COMMIT. The effects and the
        # ack commit together. Should it roll back, the events are still
        # leased to this consumer: handle them again.
        try:
            with conn, conn.cursor(cursor_factory=NamedTupleCursor) as cur:
                done = fails = 0
                for event in events:
                    cur.execute("savepoint event")  # a failing event undoes only its own work
                    try:
                        handle(cur, event)
                        cur.execute("release savepoint event")
                        done += 1
                    except Exception as e:
                        cur.execute("rollback to savepoint event")
                        cur.execute("select eventbus.nack(%s, %s, %s, lease_token => %s)",
                                    (subscription, event.event_id, str(e), token))
                        fails += 1
                # At most max_events in all: the last round only acks.
                limit = min(100, max_events - handled - done) if max_events else 100
                if limit > 0:
                    # Wait for new events only when there was nothing to do.
                    cur.execute("select * from eventbus.poll(%s, %s, wait => %s, ack_lease => %s)",
                                (subscription, limit, "0" if events else WAIT, token))
                    new = cur.fetchall()
                else:
                    cur.execute("select eventbus.ack(%s, null, %s)", (subscription, token))
                    new = []
        except psycopg2.Error:
            continue  # rolled back: the same events again, still leased to us
        handled += done
        failed += fails
        if limit <= 0:
            break
        events = new
        token = events[0].lease_token if events else None
        if events:
            last_event = time.monotonic()
        elif idle_timeout and time.monotonic() - last_event >= idle_timeout:
            break
    return handled, failed


BATCHES = [1, 9, 40, 50, 1, 99]  # the self-test's publishing transactions: 200 events


def self_test(fail_at=123):
    """Consumes the events a second connection publishes meanwhile and checks
    that each took effect exactly once. Returns 1 listing what failed, else 0."""
    count = sum(BATCHES)
    sub = "example_py_" + uuid.uuid4().hex[:12]
    topic = f"examples.{sub}.created"
    consumer, publisher = psycopg2.connect(""), psycopg2.connect("")
    consumer_pid = consumer.get_backend_pid()

    def one(sql, *params):  # one statement in a transaction of its own: its first row
        with publisher, publisher.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchone()

    def consumer_waits():  # until the consumer sleeps in poll's wait (5 s at most)
        for _ in range(500):
            if one("select wait_event_type = 'Extension' from pg_stat_activity where pid = %s",
                   consumer_pid)[0]:
                return
            time.sleep(0.01)

    one("select eventbus.subscribe(%s, array[%s], backoff_initial => '10 milliseconds')", sub, topic)
    errors, ids = [], []
    try:
        with ThreadPoolExecutor(1) as pool:
            result = pool.submit(consume, consumer, sub, count, 10)
            numbers = iter(range(1, count + 1))
            for i, size in enumerate(BATCHES):
                if i % 2 == 0:
                    consumer_waits()  # publish while it waits, or while it works
                payloads = [{"run": sub, "n": n, "fail": n == fail_at} for n in islice(numbers, size)]
                with publisher, publisher.cursor() as cur:  # one transaction
                    cur.execute("select eventbus.publish(%s, p) from jsonb_array_elements(%s) p",
                                (topic, Json(payloads)))
                    ids += [row[0] for row in cur]
            handled, failed = result.result()

        if handled != count:
            errors.append(f"the consumer handled {handled} events, expected {count}")
        if failed != 1:
            errors.append(f"{failed} failed attempts, expected 1")
        rows = one("select count(*) from example_orders where event_id = any(%s)", ids)[0]
        if rows != count:
            errors.append(f"example_orders holds {rows} of the {count} events")
        left = one("select leased, waiting, dead from eventbus.subscriptions where name = %s", sub)
        if left != (0, 0, 0):
            errors.append(f"deliveries left (leased, waiting, dead): {left}")
        more = one("select count(*) from eventbus.poll(%s)", sub)[0]
        if more:
            errors.append(f"poll hands out {more} more events")
    finally:
        one("select eventbus.unsubscribe(%s)", sub)
    for e in errors:
        print("self-test FAILED:", e)
    if not errors:
        print(f"self-test passed: {count} events in {len(BATCHES)} transactions, each handled"
              f" exactly once, 1 failure retried ({sub})")
    return 1 if errors else 0


def main():
    p = argparse.ArgumentParser(description="eventbus consumer example")
    p.add_argument("subscription", nargs="?")
    p.add_argument("--max-events", type=int, default=0, help="stop after N events (0: never)")
    p.add_argument("--idle-timeout", type=float, default=0,
                   help="stop after SECONDS without events (0: never)")
    p.add_argument("--self-test", action="store_true", help="run the self-test and exit")
    args = p.parse_args()
    if args.self_test:
        return self_test()
    if not args.subscription:
        p.error("a subscription is required")
    conn = psycopg2.connect("")  # PGHOST, PGPORT, PGUSER, PGDATABASE, ...
    handled, failed = consume(conn, args.subscription, args.max_events, args.idle_timeout)
    print(f"{args.subscription}: {handled} events handled, {failed} failed attempts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
