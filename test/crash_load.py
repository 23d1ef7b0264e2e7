#!/usr/bin/python3
"""Load, ledgers and verdict of the crash-cycle test (test/t/017_crash_cycles.pl).

    crash_load.py run   --dsn DSN --dir DIR [--publishers 4] [--rate 1000] [--seed N]
    crash_load.py check --dsn DSN --dir DIR [--cycles FILE] [--report FILE]

run: one process, one thread per connection, that goes on across crashes
(each thread reconnects every 100 ms while the server is down) until
SIGTERM. SIGUSR1 stops the publishers after their current transaction
(the consumers go on: the test drains), and prints "publishers stopped".

- Publishers (--publishers), each at up to --rate events/s (so that the
  consumers keep up and chunks can rotate): each publishes events whose payload carries a
  key "P.S" (publisher, sequence number; never reused), on topics
  chaos.<mode>, in transactions of one of four kinds, drawn at random:
    single     one publish;
    batch      one publish_batch of 10-100 events;
    savepoint  publish A; SAVEPOINT; publish B; ROLLBACK TO SAVEPOINT;
               publish C; SAVEPOINT; publish D; RELEASE: A, C, D commit,
               B never does;
    rollback   one to three publishes, then ROLLBACK on purpose.
  A transaction meant to commit also inserts (publisher, first, last) into
  chaos_txn: that row exists if and only if it committed, which settles
  the transactions whose COMMIT got no answer (the crash came first).
  Ledger pub-P.txt, one line each, written (and flushed) as it happens:
    B first last mode [never...]   before the first statement
    T first                        all statements done, COMMIT sent next
    C first                        COMMIT returned
    R first                        ROLLBACK returned (the rollback kind)
    E time sqlstate message        an error (connection lost or other)
- Consumer "polled": poll(wait => 1 s), then ack(ids, lease_token), each
  in its own autocommit transaction. After a lost connection it first
  acks again what it polled and could not ack (same lease_token).
- Consumer "listened": LISTEN eventbus_listened; when notified (or after
  1 s) it polls with poll(..., ack_lease => previous token) until a poll
  returns nothing: each poll acks the previous one. After a lost
  connection it does not ack again: that lease runs out and its events
  come back (duplicates that must follow an ack that never returned).
  Ledgers cons-NAME.txt:
    D time token lease_until id:key:attempt ...   a poll returned events
    A time token count n [reack]                 an ack returned (count
                    of the n events it finished; -1 for an ack_lease)
    E time sqlstate message
  (times are time.time(); lease_until is the server's epoch, same clock.)
- The handler subscription "handled" needs no client: its handler inserts
  each event into chaos_handled in the transaction that acks it.

check: reads the ledgers and the database (after the drain) and prints
"figure NAME VALUE" lines, the lost / phantom / unexplained duplicate
events (first ones), and the summary; --report writes it as Markdown.
Committed: the transaction's chaos_txn row exists (COMMIT returned, or
in doubt and committed), less what a savepoint rolled back. Lost: a
committed event that a subscription never delivered, or a COMMIT that
returned without its row. Phantom: a delivered event that did not
commit. Stuck: delivery rows, backlog or leases a subscription still
has. A duplicate (a key delivered again to a subscription) is explained
when it is the same event (same id) at a higher attempt and the earlier
delivery's ack never returned, or returned after that lease's end, or
finished fewer events than the lease held; any other is unexplained, and
so is every second row of a key in chaos_handled (the handler's writes
commit with its ack).

Needs psycopg2 (Debian: python3-psycopg2, for /usr/bin/python3).
"""
import argparse
import bisect
import collections
import os
import random
import select
import signal
import statistics
import sys
import threading
import time

import psycopg2
from psycopg2.extras import Json

SUBS = ("polled", "listened", "handled")
BATCH = 100  # max_events of the consumers' polls
# SQLSTATE classes of a lost connection or a server going down / starting.
CONNECTION_CLASSES = ("08", "57")


class Ledger:
    """An append-only ledger file, each line flushed as it is written."""

    def __init__(self, path):
        self.f = open(path, "a", buffering=1)
        self.lock = threading.Lock()

    def write(self, *fields):
        with self.lock:
            self.f.write(" ".join(str(x) for x in fields) + "\n")


def error_fields(e):
    """sqlstate (or '-' for a lost connection) and a one-line message."""
    code = getattr(e, "pgcode", None) or "-"
    msg = " ".join(str(e).split())[:200] or type(e).__name__
    return code, msg


class Worker(threading.Thread):
    """A thread with a connection that it makes again after each failure."""

    def __init__(self, args, name, stop):
        super().__init__(daemon=True, name=name)
        self.args, self.stop = args, stop
        self.ledger = Ledger(os.path.join(args.dir, name + ".txt"))
        self.conn = None

    def connect(self):
        while not self.stop.is_set():
            try:
                conn = psycopg2.connect(self.args.dsn, connect_timeout=5,
                                        application_name="chaos " + self.name)
                conn.autocommit = True
                return conn
            except psycopg2.Error:
                time.sleep(0.1)
        return None

    def run(self):
        while not self.stop.is_set():
            self.conn = self.connect()
            if self.conn is None:
                break
            try:
                self.body(self.conn.cursor())
            except psycopg2.Error as e:
                self.ledger.write("E", "%.6f" % time.time(), *error_fields(e))
                time.sleep(0.1)
            finally:
                try:
                    self.conn.close()
                except psycopg2.Error:
                    pass


class Publisher(Worker):
    """Publishes transactions of the four kinds until stopped."""

    def __init__(self, args, n, stop):
        super().__init__(args, "pub-%d" % n, stop)
        self.n = n
        self.seq = 0
        self.rng = random.Random(args.seed * 1000 + n)
        self.due = None  # pacing: when the next transaction may start

    def pace(self, count):
        """Sleeps so as to publish at most --rate events/s (a crash does
        not make up for lost time: no burst after a restart)."""
        now = time.monotonic()
        if self.due is None or self.due < now - 1:
            self.due = now
        self.due += count / self.args.rate
        if self.due > now:
            time.sleep(self.due - now)

    def payload(self, s):
        return Json({"k": "%d.%d" % (self.n, s), "p": self.n, "s": s})

    def publish(self, cur, mode, s):
        cur.execute("SELECT eventbus.publish(%s, %s)", ("chaos." + mode, self.payload(s)))

    def body(self, cur):
        while not self.stop.is_set():
            mode = self.rng.choices(("single", "batch", "savepoint", "rollback"), (40, 25, 20, 15))[0]
            first = self.seq + 1
            count = {"single": 1, "batch": self.rng.randint(10, 100), "savepoint": 4,
                     "rollback": self.rng.randint(1, 3)}[mode]
            last = first + count - 1
            # Keys are never reused, whatever becomes of this transaction.
            self.seq = last
            self.pace(count)
            never = [first + 1] if mode == "savepoint" else []
            self.ledger.write("B", first, last, mode, *never)
            cur.execute("BEGIN")
            if mode == "single":
                self.publish(cur, mode, first)
            elif mode == "batch":
                cur.execute("SELECT count(*) FROM eventbus.publish_batch(array['chaos.batch'], %s::jsonb[])",
                            ([self.payload(s) for s in range(first, last + 1)],))
            elif mode == "savepoint":
                self.publish(cur, mode, first)
                cur.execute("SAVEPOINT a")
                self.publish(cur, mode, first + 1)
                cur.execute("ROLLBACK TO SAVEPOINT a")
                self.publish(cur, mode, first + 2)
                cur.execute("SAVEPOINT b")
                self.publish(cur, mode, first + 3)
                cur.execute("RELEASE SAVEPOINT b")
            else:
                for s in range(first, last + 1):
                    self.publish(cur, mode, s)
                cur.execute("ROLLBACK")
                self.ledger.write("R", first)
                continue
            cur.execute("INSERT INTO chaos_txn (pub, first, last, mode) VALUES (%s, %s, %s, %s)",
                        (self.n, first, last, mode))
            self.ledger.write("T", first)
            cur.execute("COMMIT")
            self.ledger.write("C", first)


def delivery_line(rows):
    """The D line's fields for the rows of one poll (one lease)."""
    token, lease_until = rows[0][3], rows[0][4]
    return (token, "%.6f" % lease_until, *("%d:%s:%d" % (r[0], r[1], r[2]) for r in rows))


POLL_COLUMNS = ("event_id, payload->>'k', attempt, lease_token, "
                "extract(epoch FROM lease_until)::float8")


class PollConsumer(Worker):
    """poll with wait, then ack by lease token; acks again after a lost connection."""

    def __init__(self, args, stop):
        super().__init__(args, "cons-polled", stop)
        self.pending = None  # (token, ids) polled and not acked yet

    def ack(self, cur, token, ids, *tag):
        cur.execute("SELECT eventbus.ack('polled', %s::bigint[], %s)", (ids, token))
        count = cur.fetchone()[0]
        self.ledger.write("A", "%.6f" % time.time(), token, count, len(ids), *tag)
        self.pending = None

    def body(self, cur):
        if self.pending:
            self.ack(cur, *self.pending, "reack")
        while not self.stop.is_set():
            cur.execute("SELECT " + POLL_COLUMNS + " FROM eventbus.poll('polled', %s, wait => '1s')", (BATCH,))
            rows = cur.fetchall()
            if not rows:
                continue
            self.ledger.write("D", "%.6f" % time.time(), *delivery_line(rows))
            self.pending = (rows[0][3], [r[0] for r in rows])
            self.ack(cur, *self.pending)


class ListenConsumer(Worker):
    """LISTEN; on a notification (or every second) poll with ack_lease until empty."""

    def __init__(self, args, stop):
        super().__init__(args, "cons-listened", stop)

    def body(self, cur):
        cur.execute("LISTEN eventbus_listened")
        prev = None  # a lease handled and not acked yet: the next poll acks it
        while not self.stop.is_set():
            while True:
                cur.execute("SELECT " + POLL_COLUMNS + " FROM eventbus.poll('listened', %s, ack_lease => %s)",
                            (BATCH, prev))
                rows = cur.fetchall()
                t = time.time()
                if prev is not None:
                    self.ledger.write("A", "%.6f" % t, prev, -1, -1)
                prev = None
                if not rows:
                    break
                self.ledger.write("D", "%.6f" % t, *delivery_line(rows))
                prev = rows[0][3]
            if not self.conn.notifies:
                if select.select([self.conn], [], [], 1.0) != ([], [], []):
                    self.conn.poll()
            del self.conn.notifies[:]


def run(args):
    """Runs publishers and consumers until SIGTERM."""
    stop_pub, stop_all = threading.Event(), threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: stop_pub.set())
    signal.signal(signal.SIGTERM, lambda *_: stop_all.set())
    os.makedirs(args.dir, exist_ok=True)
    pubs = [Publisher(args, n, stop_pub) for n in range(1, args.publishers + 1)]
    cons = [PollConsumer(args, stop_all), ListenConsumer(args, stop_all)]
    for t in pubs + cons:
        t.start()
    print("running: %d publishers, consumers polled and listened" % len(pubs), flush=True)
    announced = False
    parent = os.getppid()
    while not stop_all.wait(0.1):
        if os.getppid() != parent:  # the test is gone: do not load a server forever
            print("parent exited", flush=True)
            stop_all.set()
            break
        if stop_pub.is_set() and not announced and not any(t.is_alive() for t in pubs):
            print("publishers stopped", flush=True)
            announced = True
    stop_pub.set()
    for t in pubs + cons:
        t.join(30)
    alive = [t.name for t in pubs + cons if t.is_alive()]
    print("stopped" + (" (still running: %s)" % ", ".join(alive) if alive else ""), flush=True)
    return 0


# ---------------------------------------------------------------- check


class Lease:
    """One poll's lease as a consumer saw it, and the acks that returned for it."""
    __slots__ = ("token", "lease_until", "n", "acks")

    def __init__(self, token, lease_until, n):
        self.token, self.lease_until, self.n, self.acks = token, lease_until, n, []


def read_lines(path):
    with open(path) as f:
        for line in f:
            parts = line.split()
            if parts:
                yield parts


def read_publishers(directory):
    """Per transaction (pub, first): last, mode, never keys, and what the
    ledger says of its end ('C' returned, 'T' in doubt, 'R', 'B' broken off);
    and the errors that were not a lost connection."""
    txns, errors, lost_conns = {}, [], 0
    for name in sorted(os.listdir(directory)):
        if not name.startswith("pub-"):
            continue
        pub = int(name[4:-4])
        for p in read_lines(os.path.join(directory, name)):
            if p[0] == "B":
                txns[(pub, int(p[1]))] = {"last": int(p[2]), "mode": p[3],
                                          "never": {int(x) for x in p[4:]}, "end": "B"}
            elif p[0] in "TCR":
                txns[(pub, int(p[1]))]["end"] = p[0]
            elif p[0] == "E":
                if p[2][:2] in CONNECTION_CLASSES or p[2] == "-":
                    lost_conns += 1
                else:
                    errors.append("%s: %s" % (name, " ".join(p[2:])))
    return txns, errors, lost_conns


def read_consumer(path):
    """Deliveries [(time, key, event_id, attempt, lease)] in ledger order, the
    errors that were not a lost connection, and the lost connections."""
    deliveries, errors, lost_conns = [], [], 0
    leases = {}
    for p in read_lines(path):
        if p[0] == "D":
            t, token, until = float(p[1]), p[2], float(p[3])
            lease = Lease(token, until, len(p) - 4)
            leases[token] = lease
            for item in p[4:]:
                eid, key, att = item.split(":")
                deliveries.append((t, key, int(eid), int(att), lease))
        elif p[0] == "A":
            lease = leases.get(p[2])
            if lease is not None:
                lease.acks.append((float(p[1]), int(p[3]), int(p[4])))
        elif p[0] == "E":
            if p[2][:2] in CONNECTION_CLASSES or p[2] == "-":
                lost_conns += 1
            else:
                errors.append("%s: %s" % (os.path.basename(path), " ".join(p[2:])))
    return deliveries, errors, lost_conns


def why_again(d, prev):
    """Why delivery d may repeat the earlier delivery prev of its key: None
    when it may not (a second copy of the event in the log; an attempt
    number that did not grow, so prev's lease was lost; an ack that
    returned in time and finished every event of prev's lease)."""
    lease = prev[4]
    if d[2] != prev[2] or d[3] <= prev[3]:
        return None
    if not lease.acks:
        return "ack never returned"
    for t, count, n in lease.acks:
        if t < lease.lease_until and (count == n or count == -1):
            return None
    return "lease ran out before the ack"


def check(args):
    conn = psycopg2.connect(args.dsn)
    conn.autocommit = True
    cur = conn.cursor()
    txns, errors, lost_conns = read_publishers(args.dir)
    cur.execute("SELECT pub, first, last, mode FROM chaos_txn")
    in_db = {(r[0], r[1]): r for r in cur.fetchall()}

    committed, never = {}, {}  # key -> how its transaction ended
    unlogged_rows = [k for k in in_db if k not in txns]
    acked_not_committed = 0  # COMMIT returned, but no chaos_txn row: lost commits
    doubt_committed = doubt_aborted = 0
    for (pub, first), t in txns.items():
        keys = ["%d.%d" % (pub, s) for s in range(first, t["last"] + 1)]
        is_committed = (pub, first) in in_db
        if t["end"] == "C" and not is_committed:
            acked_not_committed += t["last"] - first + 1 - len(t["never"])
        if t["end"] == "T":
            if is_committed:
                doubt_committed += 1
            else:
                doubt_aborted += 1
        for s, k in zip(range(first, t["last"] + 1), keys):
            if is_committed and s not in t["never"]:
                committed[k] = t["mode"]
            else:
                never[k] = ("rolled back to a savepoint" if s in t["never"] and is_committed
                            else "rolled back on purpose" if t["end"] == "R"
                            else "transaction did not commit")

    # Deliveries per subscription, in the order each consumer saw them.
    per_sub = {}
    for sub in ("polled", "listened"):
        d, errs, lc = read_consumer(os.path.join(args.dir, "cons-%s.txt" % sub))
        per_sub[sub] = d
        errors += errs
        lost_conns += lc
    cur.execute("SELECT extract(epoch FROM at)::float8, key, event_id, attempt FROM chaos_handled ORDER BY at")
    per_sub["handled"] = [(r[0], r[1], r[2], r[3], None) for r in cur.fetchall()]

    fig = collections.OrderedDict()
    fig["publishers"] = len({p for p, _ in txns})
    fig["transactions"] = len(txns)
    fig["events_committed"] = len(committed)
    fig["events_rolled_back"] = len(never)
    fig["commits_in_doubt"] = doubt_committed + doubt_aborted
    fig["in_doubt_committed"] = doubt_committed
    fig["in_doubt_aborted"] = doubt_aborted
    fig["commits_acknowledged_lost"] = acked_not_committed
    fig["unlogged_transactions"] = len(unlogged_rows)
    lines = []  # details of what went wrong
    lost_total = phantom_total = explained_total = unexplained_total = 0
    reasons = collections.Counter()
    for sub in SUBS:
        seen = {}  # key -> deliveries
        phantoms = []
        unexplained = []
        for d in per_sub[sub]:
            key = d[1]
            if key not in committed:
                phantoms.append(d)
            prev = seen.get(key)
            if prev is not None:
                why = why_again(d, prev[-1]) if sub != "handled" else None
                if why is None:
                    unexplained.append((d, prev[-1]))
                else:
                    reasons[why] += 1
                prev.append(d)
            else:
                seen[key] = [d]
        lost = [k for k in committed if k not in seen]
        dups = sum(len(v) - 1 for v in seen.values())
        fig["delivered_" + sub] = len(per_sub[sub])
        fig["lost_" + sub] = len(lost)
        fig["phantom_" + sub] = len(phantoms)
        fig["duplicates_" + sub] = dups
        fig["unexplained_" + sub] = len(unexplained)
        lost_total += len(lost)
        phantom_total += len(phantoms)
        unexplained_total += len(unexplained)
        explained_total += dups - len(unexplained)
        for k in sorted(lost, key=lambda k: tuple(int(x) for x in k.split(".")))[:10]:
            lines.append("lost %s: key %s (%s), committed, never delivered" % (sub, k, committed[k]))
        for d in phantoms[:10]:
            lines.append("phantom %s: event %d key %s attempt %d at %.3f: %s"
                         % (sub, d[2], d[1], d[3], d[0], never.get(d[1], "no publisher wrote it")))
        for d, p in unexplained[:10]:
            if d[4] is None:
                lines.append("unexplained duplicate %s: key %s event %d attempt %d, handled before as event %d attempt %d"
                             % (sub, d[1], d[2], d[3], p[2], p[3]))
            else:
                lines.append("unexplained duplicate %s: key %s event %d attempt %d at %.3f; before: event %d "
                             "attempt %d at %.3f, lease %s until %.3f, acks %s"
                             % (sub, d[1], d[2], d[3], d[0], p[2], p[3], p[0], p[4].token, p[4].lease_until,
                                p[4].acks))
    fig["lost"] = lost_total + acked_not_committed
    fig["phantom"] = phantom_total
    fig["duplicates"] = explained_total + unexplained_total
    fig["duplicates_explained"] = explained_total
    fig["duplicates_unexplained"] = unexplained_total
    for why in ("ack never returned", "lease ran out before the ack"):
        fig["explained_" + why.replace(" ", "_")] = reasons[why]

    # Stuck: whatever a subscription still holds after the drain.
    stuck = 0
    for sub in SUBS:
        cur.execute("SELECT (SELECT count(*) FROM eventbus.deliveries WHERE subscription = %s),"
                    " (SELECT backlog + in_flight FROM eventbus.subscription_stats WHERE subscription = %s),"
                    " (SELECT string_agg(state || ' ' || n, ', ') FROM (SELECT state, count(*) n"
                    "   FROM eventbus.deliveries WHERE subscription = %s GROUP BY state) s)", (sub, sub, sub))
        rows, pending, states = cur.fetchone()
        n = max(rows, pending or 0)
        fig["stuck_" + sub] = n
        stuck += n
        if n:
            lines.append("stuck %s: %d delivery rows (%s), backlog + in flight %s" % (sub, rows, states, pending))
    fig["stuck"] = stuck
    fig["unexpected_errors"] = len(errors)
    lines += ["error %s" % e for e in errors[:10]]
    fig["lost_connections"] = lost_conns

    # Rotations and recovery times (from the cycles file the test writes).
    cur.execute("SELECT max(generation) FROM eventbus.chunk")
    fig["rotations"] = cur.fetchone()[0] - args.generation_start
    cycles = []
    if args.cycles and os.path.exists(args.cycles):
        cycles = [(int(p[1]), float(p[2]), float(p[3])) for p in read_lines(args.cycles) if p[0] == "cycle"]
    fig["cycles"] = len(cycles)
    times = {s: sorted(d[0] for d in per_sub[s]) for s in SUBS}
    first_any, all_three = [], []
    for n, t_restart, _ in cycles:
        firsts = []
        for s in SUBS:
            i = bisect.bisect_right(times[s], t_restart)
            firsts.append(times[s][i] - t_restart if i < len(times[s]) else None)
        got = [x for x in firsts if x is not None]
        if got:
            first_any.append(min(got))
        if len(got) == len(SUBS):
            all_three.append(max(got))
    if cycles:
        restarts = [ready - restart for _, restart, ready in cycles]
        fig["restart_median_s"] = "%.2f" % statistics.median(restarts)
        fig["restart_max_s"] = "%.2f" % max(restarts)
    if first_any:
        fig["recovery_first_delivery_median_s"] = "%.2f" % statistics.median(first_any)
        fig["recovery_first_delivery_max_s"] = "%.2f" % max(first_any)
    if all_three:
        fig["recovery_all_consumers_max_s"] = "%.2f" % max(all_three)
    conn.close()

    for k, v in fig.items():
        print("figure %s %s" % (k, v))
    for line in lines:
        print(line)
    summary = summarize(fig, args)
    print(summary)
    if args.report:
        with open(args.report, "w") as f:
            f.write(report(fig, args, summary))
    return 0


def summarize(fig, args):
    """The one-sentence verdict, in the form of the issue."""
    return ("%d immediate-shutdown cycles under load (%d publishers with single publishes, batches, "
            "savepoints and rollbacks, two consumers in both styles, a handler subscription, %s chunks "
            "rotating: %s events committed, %d rotations) lost %d events, delivered %d that never "
            "committed, left %d stuck, and %s."
            % (fig["cycles"], fig["publishers"], args.chunk_size, format(fig["events_committed"], ","),
               fig["rotations"], fig["lost"], fig["phantom"], fig["stuck"],
               ("every one of %d duplicates followed an ack that never returned or a lease that ran out"
                " first" % fig["duplicates"]) if fig["duplicates_unexplained"] == 0 and fig["duplicates"]
               else "there was no duplicate" if fig["duplicates"] == 0
               else "%d of %d duplicates are unexplained" % (fig["duplicates_unexplained"], fig["duplicates"])))


def report(fig, args, summary):
    """The figures as a Markdown table."""
    rows = [
        ("cycles run (immediate shutdown, restart)", fig["cycles"]),
        ("transactions (publishers: %d)" % fig["publishers"], format(fig["transactions"], ",")),
        ("events committed", format(fig["events_committed"], ",")),
        ("events rolled back (on purpose, savepoints, cut off by a crash)", format(fig["events_rolled_back"], ",")),
        ("commits in doubt (no answer): committed / not", "%d / %d" % (fig["in_doubt_committed"], fig["in_doubt_aborted"])),
        ("chunk rotations", fig["rotations"]),
        ("lost (committed, never delivered)", fig["lost"]),
        ("phantom (delivered, never committed)", fig["phantom"]),
        ("stuck (still pending after the drain)", fig["stuck"]),
        ("duplicates: explained / unexplained", "%d / %d" % (fig["duplicates_explained"], fig["duplicates_unexplained"])),
        ("... after an ack that never returned", fig["explained_ack_never_returned"]),
        ("... after a lease that ran out before its ack", fig["explained_lease_ran_out_before_the_ack"]),
        ("deliveries: polled / listened / handled", " / ".join(format(fig["delivered_" + s], ",") for s in SUBS)),
        ("client connections lost", fig["lost_connections"]),
        ("restart (pg_ctl start, crash recovery included): median / max",
         "%s s / %s s" % (fig.get("restart_median_s", "?"), fig.get("restart_max_s", "?"))),
        ("recovery, restart to first delivery: median / max",
         "%s s / %s s" % (fig.get("recovery_first_delivery_median_s", "?"), fig.get("recovery_first_delivery_max_s", "?"))),
        ("recovery, restart until all three consumers delivered: max", "%s s" % fig.get("recovery_all_consumers_max_s", "?")),
    ]
    out = ["| figure | value |", "|---|---|"] + ["| %s | %s |" % r for r in rows]
    return summary + "\n\n" + "\n".join(out) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=("run", "check"))
    p.add_argument("--dsn", required=True)
    p.add_argument("--dir", required=True, help="directory of the ledgers")
    p.add_argument("--publishers", type=int, default=4)
    p.add_argument("--rate", type=float, default=1000, help="run: events/s per publisher, at most")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cycles", help="check: the test's file of 'cycle N restart_time ready_time' lines")
    p.add_argument("--generation-start", type=int, default=1, help="check: max chunk generation at the start")
    p.add_argument("--chunk-size", default="64kB", help="check: for the summary")
    p.add_argument("--report", help="check: write the figures as Markdown here")
    args = p.parse_args()
    return run(args) if args.mode == "run" else check(args)


if __name__ == "__main__":
    sys.exit(main())
