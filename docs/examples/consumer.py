#!/usr/bin/env python3
"""An eventbus consumer with exactly-once effects inside the database.

    consumer.py SUBSCRIPTION [--max-events N] [--idle-timeout SECONDS]
    consumer.py --self-test

Connects with the libpq environment variables (PGHOST, PGPORT, PGUSER,
PGDATABASE, PGPASSWORD). Each batch is one transaction: poll, handle every
event (here: insert it into example_orders), ack, commit. If it rolls back,
nothing happened and the events are handed out again. Needs psycopg2
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
    while not max_events or handled < max_events:
        limit = min(100, max_events - handled) if max_events else 100
        # One transaction: BEGIN; poll; handle; ack; COMMIT (rollback on an
        # exception). Once the background worker exists, a consumer may also
        # LISTEN on "eventbus_<subscription>"; until then poll's wait is the
        # wake-up.
        with conn, conn.cursor(cursor_factory=NamedTupleCursor) as cur:
            cur.execute("select * from eventbus.poll(%s, %s, wait => %s)",
                        (subscription, limit, WAIT))
            events = cur.fetchall()
            done = []
            for event in events:
                cur.execute("savepoint event")  # a failing event undoes only its own work
                try:
                    handle(cur, event)
                    cur.execute("release savepoint event")
                    done.append(event.event_id)
                except Exception as e:
                    cur.execute("rollback to savepoint event")
                    cur.execute("select eventbus.nack(%s, %s, %s)", (subscription, event.event_id, str(e)))
                    failed += 1
            cur.execute("select eventbus.ack(%s, %s::bigint[])", (subscription, done))
        handled += len(done)
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
