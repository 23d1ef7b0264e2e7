#!/usr/bin/python3
"""Latency of eventbus notifications: commit -> LISTEN wake-up -> poll returns.

    listen_latency.py [--dsn DSN] [--rate 1000] [--seconds 5] [--listeners 1]
                      [--publishers 1] [--silent SUB ...] [--timeout 10]
                      [--reference TABLE] [--listen-only [--no-poll]]

One process, one thread per connection. Each listener LISTENs on the channel
of its own subscription (eventbus_<name>), and on each notification polls
(poll(sub, 1000), again while it returns 1000) and acks in one transaction.
The publisher publishes one event per autocommit transaction, paced at
--rate (--publishers N: N connections share the rate; one connection with
durable commits may not reach 1000 events/s on a small machine). The
payload carries the run id and a sequence number; the publisher records,
per sequence number, the time just after the commit returned (a payload
cannot hold a time taken after its own commit). Latency = the time
the listener's poll returned the event - that commit time, on one
monotonic clock (time.perf_counter_ns) since one process does both.

Prints events published and received, latency p50/p90/p99/max in ms, the
publish rate achieved, and the "wake" latency: commit -> the notification
arrived (for the events committed before the notification that made the
listener poll them). Exits 1 unless every listener received every event
within --timeout seconds after the last publish (the liveness assertion),
or if a --silent subscription was notified during the run.

Listeners only poll when notified: there is no fallback poll, so a missing
notification shows up as a missing event (and, at the end, as events that
were still pollable).

Options for benchmarks (test/bench/notify.sh):
  --listen-only   no publisher: listeners poll+ack on notification until
                  --seconds have passed or SIGTERM/SIGINT; prints "ready"
                  once all of them LISTEN, and totals at the end.
  --no-poll       listeners only count notifications (with --listen-only).
  --reference T   instead of eventbus: a plain table T (id bigserial, topic,
                  payload jsonb); the publisher runs INSERT + pg_notify('T')
                  in one transaction, listeners LISTEN on T and read new
                  rows by id (keyset) on each notification.

Needs psycopg2 (Debian: python3-psycopg2, for /usr/bin/python3).
"""
import argparse
import select
import signal
import sys
import threading
import time
import uuid

import psycopg2
from psycopg2 import sql
from psycopg2.extras import Json

BATCH = 1000  # poll(sub, BATCH); poll again while it returns BATCH events


def now_ns():
    return time.perf_counter_ns()


def percentile(sorted_values, p):
    """Nearest-rank percentile of a sorted list (p in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * p // 100))  # ceil
    return sorted_values[int(rank) - 1]


class Run:
    """What the threads share (each key of commit_ns is written by one
    publisher thread; the rest by the main thread)."""

    def __init__(self, args):
        self.args = args
        self.run_id = uuid.uuid4().hex[:12]
        self.commit_ns = {}  # seq -> time the publish's commit returned
        self.published = 0
        self.publishing_done = threading.Event()
        self.stop = threading.Event()  # SIGTERM/SIGINT, or the end of a listen-only run
        self.deadline_ns = None  # set when publishing is done
        self.start_ns = None  # just before the first publish
        self.end_ns = None
        self.errors = []


class Listener(threading.Thread):
    """One connection: LISTEN, then on each notification poll (+ ack) until
    fewer than BATCH events come back."""

    def __init__(self, run, name, channel):
        super().__init__(daemon=True)
        self.ctx, self.sub, self.channel = run, name, channel
        self.ref = run.args.reference
        self.received = {}  # seq -> time the poll returned it (this run's events)
        self.woken = {}  # seq -> time the notification that led to the poll arrived
        self.notified_ns = None  # that time, for the polls of one wake-up (None: unknown)
        self.duplicates = 0
        self.other = 0  # events of other runs (acked and ignored)
        self.notifications = 0
        self.polls = 0
        self.empty_polls = 0
        self.ready = threading.Event()
        self.error = None
        # Reference mode: every id up to last_id is read; ids above it that
        # were read already (concurrent publishers commit out of id order);
        # since when the lowest id above last_id is missing.
        self.last_id = 0
        self.read_above = set()
        self.gap_since = None

    def connect(self):
        conn = psycopg2.connect(self.ctx.args.dsn)
        conn.autocommit = True  # transactions are explicit: BEGIN ... COMMIT
        return conn

    def read_ref(self, cur):
        """Reference mode: the rows above last_id not read yet. An id missing
        below one that is there belongs to a transaction still open (or
        rolled back): it is waited for 1 s, then skipped."""
        cur.execute(sql.SQL("SELECT id, payload->>'run', (payload->>'seq')::bigint FROM {}"
                            " WHERE id > %s ORDER BY id LIMIT %s").format(sql.Identifier(self.ref)),
                    (self.last_id, BATCH))
        rows = [r for r in cur.fetchall() if r[0] not in self.read_above]
        self.read_above.update(r[0] for r in rows)
        while self.read_above:
            if self.last_id + 1 in self.read_above:
                self.read_above.remove(self.last_id + 1)
                self.last_id += 1
                self.gap_since = None
            elif self.gap_since is None:
                self.gap_since = now_ns()
                break
            elif now_ns() - self.gap_since > 1e9:
                self.last_id = min(self.read_above) - 1
                self.gap_since = None
            else:
                break
        return rows

    def poll_once(self, cur):
        """One transaction: poll, then ack what came (reference mode: read
        the new rows). Returns how many events came."""
        if self.ref:
            rows = self.read_ref(cur)
            t = now_ns()
        else:
            cur.execute("BEGIN")
            cur.execute("SELECT event_id, payload->>'run', (payload->>'seq')::bigint"
                        " FROM eventbus.poll(%s, %s)", (self.sub, BATCH))
            rows = cur.fetchall()
            t = now_ns()
            if rows:
                cur.execute("SELECT eventbus.ack(%s, %s::bigint[])", (self.sub, [r[0] for r in rows]))
            cur.execute("COMMIT")
        self.polls += 1
        if not rows:
            self.empty_polls += 1
        for _, run_id, seq in rows:
            if run_id != self.ctx.run_id or seq is None:
                self.other += 1
            elif seq in self.received:
                self.duplicates += 1
            else:
                self.received[seq] = t
                if self.notified_ns is not None:
                    self.woken[seq] = self.notified_ns
        return len(rows)

    def drain(self, cur):
        while self.poll_once(cur) == BATCH:
            pass

    def finished(self):
        run = self.ctx
        if run.stop.is_set():
            return True
        if run.args.listen_only or not run.publishing_done.is_set():
            return False
        return len(self.received) >= run.published or now_ns() >= run.deadline_ns

    def body(self):
        conn = self.connect()
        cur = conn.cursor()
        cur.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        # After (re)connecting: LISTEN first, then poll until empty, then wait.
        if self.ref:
            cur.execute(sql.SQL("SELECT coalesce(max(id), 0) FROM {}").format(sql.Identifier(self.ref)))
            self.last_id = cur.fetchone()[0]
        elif not self.ctx.args.no_poll:
            self.drain(cur)
        self.polls = self.empty_polls = self.other = 0
        del conn.notifies[:]
        self.ready.set()
        while not self.finished():
            # The arrival time is known only for notifications read here,
            # not for those that came in during the previous polls.
            self.notified_ns = None
            if not conn.notifies:
                if select.select([conn], [], [], 0.2) == ([], [], []):
                    continue
                conn.poll()
                self.notified_ns = now_ns()
            if not conn.notifies:
                continue
            self.notifications += len(conn.notifies)
            del conn.notifies[:]
            if not self.ctx.args.no_poll:
                self.drain(cur)
        conn.close()

    def run(self):
        try:
            self.body()
        except Exception as e:  # reported by the main thread
            self.error = f"listener {self.sub}: {e}".strip()
            self.ready.set()


class Watcher(threading.Thread):
    """LISTENs on the channels of subscriptions that must not be notified;
    records when each notification came."""

    def __init__(self, run, names):
        super().__init__(daemon=True)
        self.ctx, self.names = run, names
        self.seen = []  # (channel, time)
        self.ready = threading.Event()
        self.done = threading.Event()
        self.error = None

    def run(self):
        try:
            conn = psycopg2.connect(self.ctx.args.dsn)
            conn.autocommit = True
            cur = conn.cursor()
            for n in self.names:
                cur.execute(sql.SQL("LISTEN {}").format(sql.Identifier("eventbus_" + n)))
            self.ready.set()
            while not self.done.is_set():
                if select.select([conn], [], [], 0.1) != ([], [], []):
                    conn.poll()
                    t = now_ns()
                    self.seen += [(n.channel, t) for n in conn.notifies]
                    del conn.notifies[:]
            conn.close()
        except Exception as e:
            self.error = f"watcher: {e}".strip()
            self.ready.set()


def setup(args, names):
    """Creates what is missing: the subscriptions, or the reference table."""
    conn = psycopg2.connect(args.dsn)
    conn.autocommit = True
    cur = conn.cursor()
    if args.reference:
        cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, topic text, payload jsonb)")
                    .format(sql.Identifier(args.reference)))
    else:
        for name in names:
            cur.execute("SELECT paused FROM eventbus.subscriptions WHERE name = %s", (name,))
            row = cur.fetchone()
            if row is None:
                cur.execute("SELECT eventbus.subscribe(%s, %s)", (name, [args.pattern or args.topic]))
            elif row[0]:
                print(f"warning: subscription {name} is paused: it will not be notified", file=sys.stderr)
    conn.close()


def publish(run):
    """Publishes at the given rate, one event per autocommit transaction, from
    --publishers connections (each takes every Nth sequence number). Returns
    the time it took in ns."""
    args = run.args
    count = int(args.rate * args.seconds)
    interval = 1e9 / args.rate
    if args.reference:
        stmt = sql.SQL("WITH i AS (INSERT INTO {} (topic, payload) VALUES (%s, %s) RETURNING id)"
                       " SELECT pg_notify(%s, '') FROM i").format(sql.Identifier(args.reference))
    else:
        stmt = "SELECT eventbus.publish(%s, %s)"
    conns = []
    for _ in range(args.publishers):
        conn = psycopg2.connect(args.dsn)
        conn.autocommit = True
        conns.append(conn)

    def publisher(first, conn):
        cur = conn.cursor()
        try:
            for seq in range(first, count, args.publishers):
                if run.stop.is_set():
                    break
                wait = start + seq * interval - now_ns()
                if wait > 0:
                    time.sleep(wait / 1e9)
                payload = Json({"run": run.run_id, "seq": seq})
                cur.execute(stmt, (args.topic, payload, args.reference) if args.reference else (args.topic, payload))
                run.commit_ns[seq] = now_ns()
        except Exception as e:
            run.errors.append(f"publisher {first + 1}: {e}".strip())

    threads = [threading.Thread(target=publisher, args=(i, c), daemon=True) for i, c in enumerate(conns)]
    run.start_ns = start = now_ns()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    end = now_ns()
    for conn in conns:
        conn.close()
    run.published = len(run.commit_ns)
    run.deadline_ns = end + int(args.timeout * 1e9)
    run.publishing_done.set()
    return end - start


def left_behind(args, listener):
    """Events of this run still pollable at the end: they were committed but
    their listener never polled them (no notification came). Acks them."""
    if args.reference:
        return 0
    conn = psycopg2.connect(args.dsn)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SELECT event_id, payload->>'run' FROM eventbus.poll(%s, 10000)", (listener.sub,))
    rows = cur.fetchall()
    if rows:
        cur.execute("SELECT eventbus.ack(%s, %s::bigint[])", (listener.sub, [r[0] for r in rows]))
    conn.close()
    return sum(1 for _, r in rows if r == listener.ctx.run_id)


def main():
    p = argparse.ArgumentParser(description="eventbus LISTEN latency: commit -> notification -> poll")
    p.add_argument("--dsn", default="", help="libpq connection string (default: PG* environment)")
    p.add_argument("--rate", type=float, default=1000, help="events per second (default 1000)")
    p.add_argument("--seconds", type=float, default=5, help="how long to publish (default 5)")
    p.add_argument("--publishers", type=int, default=1,
                   help="publishing connections, sharing --rate (default 1)")
    p.add_argument("--listeners", type=int, default=1,
                   help="subscriptions, each with a LISTENing connection (default 1)")
    p.add_argument("--subscription", default="latency",
                   help="subscription name; with several listeners NAME_1 ... NAME_N (default latency)")
    p.add_argument("--topic", default="latency.test", help="topic to publish on (default latency.test)")
    p.add_argument("--pattern", help="pattern of subscriptions created here (default: the topic)")
    p.add_argument("--timeout", type=float, default=10,
                   help="seconds after the last publish for every event to arrive (default 10)")
    p.add_argument("--silent", action="append", default=[], metavar="SUB",
                   help="a subscription that must not be notified during the run (repeatable)")
    p.add_argument("--listen-only", action="store_true", help="no publisher (benchmark load)")
    p.add_argument("--no-poll", action="store_true", help="listeners only count notifications")
    p.add_argument("--reference", metavar="TABLE", help="plain INSERT + pg_notify instead of eventbus")
    args = p.parse_args()
    if args.rate <= 0 or args.seconds <= 0 or args.listeners < 1 or args.publishers < 1:
        p.error("--rate, --seconds, --publishers and --listeners must be positive")
    if args.no_poll and not args.listen_only:
        p.error("--no-poll needs --listen-only (latency needs polls)")

    run = Run(args)
    signal.signal(signal.SIGTERM, lambda *_: run.stop.set())
    signal.signal(signal.SIGINT, lambda *_: run.stop.set())
    if args.reference:
        names = [args.reference] * args.listeners
        channels = names
    else:
        names = ([args.subscription] if args.listeners == 1 else
                 [f"{args.subscription}_{i}" for i in range(1, args.listeners + 1)])
        channels = ["eventbus_" + n for n in names]
    setup(args, set(names))

    watcher = Watcher(run, args.silent) if args.silent else None
    if watcher:
        watcher.start()
        watcher.ready.wait()
    listeners = [Listener(run, n, c) for n, c in zip(names, channels)]
    for listener in listeners:
        listener.start()
    for listener in listeners:
        listener.ready.wait()
    errors = [x.error for x in listeners + [watcher] if x and x.error]
    if errors:
        run.stop.set()
        for e in errors:
            print("FAILED:", e)
        return 1
    print(f"ready: {len(listeners)} listeners on {', '.join(sorted(set(channels)))}", flush=True)

    if args.listen_only:
        run.stop.wait(args.seconds)
        run.stop.set()
        for listener in listeners:
            listener.join(5)
        for listener in listeners:
            print(f"listener {listener.sub}: {listener.notifications} notifications, {listener.polls} polls "
                  f"({listener.empty_polls} empty), {listener.other + len(listener.received)} events")
        errors = [x.error for x in listeners if x.error]
        for e in errors:
            print("FAILED:", e)
        return 1 if errors else 0

    elapsed = publish(run)
    for listener in listeners:
        listener.join(args.timeout + 30)
    run.end_ns = now_ns()
    if watcher:
        watcher.done.set()
        watcher.join(5)

    n, failures = run.published, list(run.errors)
    latencies = sorted((t - run.commit_ns[seq]) / 1e6
                       for listener in listeners for seq, t in listener.received.items() if seq in run.commit_ns)
    received = sum(len(listener.received) for listener in listeners)
    # Commit -> notification arrived, for events committed before the
    # notification that led to their poll (others came along with a poll).
    wakes = sorted((w - run.commit_ns[seq]) / 1e6 for listener in listeners
                   for seq, w in listener.woken.items()
                   if seq in run.commit_ns and run.commit_ns[seq] <= w)
    print(f"published: {n} events in {elapsed / 1e9:.2f} s: {n / (elapsed / 1e9):.0f} events/s "
          f"(target {args.rate:g}/s, publishers: {args.publishers})")
    print(f"received: {received} of {n * len(listeners)} ({len(listeners)} listeners)")
    print("latency ms: " + " ".join(f"{k} {v:.2f}" for k, v in
                                    (("p50", percentile(latencies, 50)), ("p90", percentile(latencies, 90)),
                                     ("p99", percentile(latencies, 99)),
                                     ("max", latencies[-1] if latencies else float("nan")))))
    print("wake ms: " + " ".join(f"{k} {percentile(wakes, q):.2f}" for k, q in (("p50", 50), ("p90", 90), ("p99", 99)))
          + f" (commit -> notification arrived, {len(wakes)} events)")
    for listener in listeners:
        line = (f"listener {listener.sub}: {len(listener.received)} events, {listener.notifications} "
                f"notifications, {listener.polls} polls ({listener.empty_polls} empty)")
        if listener.duplicates or listener.other:
            line += f", {listener.duplicates} duplicates, {listener.other} of other runs"
        print(line)
        if listener.error:
            failures.append(listener.error)
        elif len(listener.received) < n:
            left = left_behind(args, listener)
            failures.append(f"{listener.sub} received {len(listener.received)} of {n} events within "
                            f"{args.timeout:g} s after the last publish; {left} were still pollable "
                            "(committed, but no notification made the listener poll them)")
    if watcher:
        if watcher.error:
            failures.append(watcher.error)
        for name in args.silent:
            channel = "eventbus_" + name
            during = sum(1 for c, t in watcher.seen if c == channel and t >= run.start_ns)
            before = sum(1 for c, t in watcher.seen if c == channel and t < run.start_ns)
            print(f"silent {name}: {during} notifications during the run ({before} before it)")
            if during:
                failures.append(f"{name} was notified {during} times during the run")
    for f in failures:
        print("FAILED:", f)
    print("result:", "FAILED" if failures else "ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
