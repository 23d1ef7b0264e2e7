#!/usr/bin/python3
"""Consumers for make bench (test/bench/run.sh, test/bench/notify.sh).

    consumers.py pgq --dsn DSN --queue Q [--consumers 10] [--tick 0.1] [--seconds 3600]
    consumers.py latency --dsn DSN --subs 3 [--prefix p11] [--pattern 'orders.#']
                 [--timeout 10] -- COMMAND...

pgq (P5, the PgQ beside variant B): one thread calls pgq.ticker(Q) every
    --tick seconds (what pgqd does, by default every second), and
    --consumers threads c1 .. cN, each a consumer registered on Q (every
    one gets every event, like N subscriptions), loop: next_batch; if
    there is none, sleep --idle seconds; else fetch get_batch_events (id
    and type, as test/listen_latency.py fetches an id and two small fields
    of eventbus's events), finish_batch, COMMIT. --consumers 0: the ticker alone.
    Prints "ready" once every connection is up, runs until SIGTERM/SIGINT
    or --seconds, then prints "listener cN: E events, B batches ..." per
    consumer (the format notify.sh counts) and "ticker: T ticks".

latency (P11): --subs subscriptions PREFIX_1 .. PREFIX_N (created if
    missing, on --pattern), each with one consumer process that LISTENs on
    its channel and, on each notification, polls (BEGIN; poll(sub, 1000);
    ack(sub, ids, token); COMMIT; again while 1000 came) and takes, for
    each event, the time poll returned minus the time carried by the
    payload (payload->>'ts', epoch seconds from clock_timestamp() in the
    publishing statement, so just before its commit: the latency includes
    the commit itself). No fallback poll: a lost notification shows as
    events not received. Once all consumers LISTEN it runs COMMAND (the
    publisher, e.g. pgbench -R), then waits until every consumer has
    received every event of eventbus.event_log (emptied before the run) or
    --timeout s have passed, and prints:
      published: N events
      received: R of N x S
      latency ms: p50 .. p90 .. p99 .. max ..        (every consumer's events)
      consumer NAME: E events, P polls (Z empty), p50 .. p99 .. ms
      poll ms: p50 .. p99 .. max ..                  (poll's own duration, non-empty polls)
      start ms: p50 .. p99 ..   (publish -> the poll that returned it began)
    Exits 1 if a consumer failed or missed events.

One process per consumer in latency mode (no GIL between them); threads in
pgq mode (as test/listen_latency.py does for eventbus's listeners in P5).
Needs psycopg2 (Debian: python3-psycopg2, for /usr/bin/python3).
"""
import argparse
import multiprocessing as mp
import select
import signal
import subprocess
import sys
import threading
import time
from array import array

import psycopg2
from psycopg2 import sql

BATCH = 1000


def percentile(sorted_values, p):
    """Nearest-rank percentile of a sorted sequence (p in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


def connect(dsn, autocommit=True):
    conn = psycopg2.connect(dsn)
    conn.autocommit = autocommit
    return conn


# ---------------------------------------------------------------- pgq

def pgq_main(args):
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    errors = []
    stats = {}
    ticks = [0]
    ready = threading.Barrier(args.consumers + 2)

    def ticker():
        try:
            conn = connect(args.dsn)
            cur = conn.cursor()
            ready.wait()
            while not stop.is_set():
                cur.execute("SELECT pgq.ticker(%s)", (args.queue,))
                if cur.fetchone()[0] is not None:
                    ticks[0] += 1
                stop.wait(args.tick)
            conn.close()
        except Exception as e:
            errors.append(f"ticker: {e}".strip())
            ready.abort()

    def consumer(name):
        st = stats[name] = {"events": 0, "batches": 0, "empty": 0}
        try:
            conn = connect(args.dsn, autocommit=False)
            cur = conn.cursor()
            cur.execute("SELECT pgq.register_consumer(%s, %s)", (args.queue, name))
            conn.commit()
            ready.wait()
            while not stop.is_set():
                cur.execute("SELECT pgq.next_batch(%s, %s)", (args.queue, name))
                bid = cur.fetchone()[0]
                if bid is None:
                    conn.commit()
                    st["empty"] += 1
                    stop.wait(args.idle)
                    continue
                # Like eventbus's listeners in P5 (test/listen_latency.py), a
                # few small columns come to the client, not the payload.
                cur.execute("SELECT ev_id, ev_type FROM pgq.get_batch_events(%s)", (bid,))
                rows = cur.fetchall()
                cur.execute("SELECT pgq.finish_batch(%s)", (bid,))
                conn.commit()
                st["events"] += len(rows)
                st["batches"] += 1
            conn.close()
        except Exception as e:
            errors.append(f"consumer {name}: {e}".strip())
            ready.abort()

    names = [f"c{i}" for i in range(1, args.consumers + 1)]
    threads = [threading.Thread(target=ticker, daemon=True)]
    threads += [threading.Thread(target=consumer, args=(n,), daemon=True) for n in names]
    for t in threads:
        t.start()
    try:
        ready.wait()
    except threading.BrokenBarrierError:
        stop.set()
        for e in errors:
            print("FAILED:", e)
        return 1
    print(f"ready: ticker every {args.tick:g} s on {args.queue}, {len(names)} consumers", flush=True)
    stop.wait(args.seconds)
    stop.set()
    for t in threads:
        t.join(10)
    for n in names:
        st = stats.get(n, {})
        print(f"listener {n}: {st.get('events', 0)} events, {st.get('batches', 0)} batches, "
              f"{st.get('empty', 0)} empty next_batch")
    print(f"ticker: {ticks[0]} ticks")
    for e in errors:
        print("FAILED:", e)
    return 1 if errors else 0


# ---------------------------------------------------------------- latency

def latency_consumer(dsn, sub, idx, counts, stop, out, ready):
    """One subscription's consumer (a process of its own)."""
    lat = array("d")      # ms, publish -> poll returned, per event
    start = array("d")    # ms, publish -> the poll that returned it began
    polls_ms = array("d")  # ms, duration of each non-empty poll
    polls = empty = 0
    try:
        conn = connect(dsn)
        cur = conn.cursor()
        cur.execute(sql.SQL("LISTEN {}").format(sql.Identifier("eventbus_" + sub)))

        def drain(measure):
            nonlocal polls, empty
            while True:
                cur.execute("BEGIN")
                t0 = time.time()
                cur.execute("SELECT event_id, lease_token, (payload->>'ts')::float8 FROM eventbus.poll(%s, %s)",
                            (sub, BATCH))
                rows = cur.fetchall()
                t1 = time.time()
                if rows:
                    cur.execute("SELECT eventbus.ack(%s, %s::bigint[], %s)", (sub, [r[0] for r in rows], rows[0][1]))
                cur.execute("COMMIT")
                if measure:
                    polls += 1
                    if rows:
                        polls_ms.append((t1 - t0) * 1e3)
                        for r in rows:
                            if r[2] is not None:
                                lat.append((t1 - r[2]) * 1e3)
                                start.append((t0 - r[2]) * 1e3)
                    else:
                        empty += 1
                if len(rows) < BATCH:
                    return

        drain(False)   # what is left from before: acked, not counted
        del conn.notifies[:]
        ready.put(sub)
        while not stop.is_set():
            if not conn.notifies:
                if select.select([conn], [], [], 0.2) == ([], [], []):
                    continue
                conn.poll()
            if not conn.notifies:
                continue
            del conn.notifies[:]
            drain(True)
            counts[idx] = len(lat)
        conn.close()
        out.put(("done", sub, lat.tobytes(), start.tobytes(), polls_ms.tobytes(), polls, empty, None))
    except Exception as e:
        ready.put(sub)
        out.put(("done", sub, b"", b"", b"", polls, empty, str(e).strip()))


def latency_main(args):
    if not args.command:
        print("latency: give the publishing command after --", file=sys.stderr)
        return 2
    names = [f"{args.prefix}_{i}" for i in range(1, args.subs + 1)]
    conn = connect(args.dsn)
    cur = conn.cursor()
    for n in names:
        cur.execute("SELECT 1 FROM eventbus.subscriptions WHERE name = %s", (n,))
        if cur.fetchone() is None:
            cur.execute("SELECT eventbus.subscribe(%s, %s)", (n, [args.pattern]))
    stop = mp.Event()
    out = mp.Queue()
    ready = mp.Queue()
    shared = mp.Array("q", len(names), lock=False)  # events each consumer received so far
    procs = [mp.Process(target=latency_consumer, args=(args.dsn, n, i, shared, stop, out, ready), daemon=True)
             for i, n in enumerate(names)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=60)
    print(f"ready: {len(procs)} consumers on {', '.join('eventbus_' + n for n in names)}", flush=True)

    t0 = time.time()
    pub = subprocess.run(args.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t1 = time.time()
    print(f"publisher ({t1 - t0:.1f} s, exit {pub.returncode}):")
    for line in pub.stdout.splitlines():
        if line.startswith(("tps", "latency", "rate limit", "number of transactions", "number of failed", "pgbench:")):
            print("  " + line)
    cur.execute("SELECT count(*) FROM eventbus.event_log")
    published = cur.fetchone()[0]
    conn.close()

    # Until every consumer has every event, or the timeout.
    deadline = time.time() + args.timeout
    while time.time() < deadline and min(shared) < published and all(p.is_alive() for p in procs):
        time.sleep(0.05)
    stop.set()
    results = {}
    while len(results) < len(names):
        try:
            m = out.get(timeout=15)
        except Exception:
            break
        results[m[1]] = m
    for p in procs:
        p.join(5)

    failures = [] if pub.returncode == 0 else [f"the publisher exited {pub.returncode}"]
    every, starts, polls_ms = [], [], []
    lines = []
    for n in names:
        m = results.get(n)
        if m is None:
            failures.append(f"consumer {n} did not report")
            continue
        _, _, lb, sb, pb, polls, empty, err = m
        lat, st, pm = array("d"), array("d"), array("d")
        lat.frombytes(lb)
        st.frombytes(sb)
        pm.frombytes(pb)
        every += lat
        starts += st
        polls_ms += pm
        s = sorted(lat)
        lines.append(f"consumer {n}: {len(lat)} events, {polls} polls ({empty} empty), "
                     f"p50 {percentile(s, 50):.2f} p99 {percentile(s, 99):.2f} max {(s[-1] if s else float('nan')):.2f} ms")
        if err:
            failures.append(f"consumer {n}: {err}")
        elif len(lat) < published:
            failures.append(f"consumer {n} received {len(lat)} of {published} events within {args.timeout:g} s")
    every.sort()
    starts.sort()
    polls_ms.sort()
    print(f"published: {published} events in {t1 - t0:.2f} s: {published / (t1 - t0):.0f} events/s")
    print(f"received: {len(every)} of {published * len(names)} ({len(names)} consumers)")
    print("latency ms: " + " ".join(f"{k} {percentile(every, q):.2f}" for k, q in (("p50", 50), ("p90", 90), ("p99", 99)))
          + f" max {(every[-1] if every else float('nan')):.2f}")
    for line in lines:
        print(line)
    print("poll ms: " + " ".join(f"{k} {percentile(polls_ms, q):.2f}" for k, q in (("p50", 50), ("p99", 99)))
          + f" max {(polls_ms[-1] if polls_ms else float('nan')):.2f} ({len(polls_ms)} non-empty polls)")
    print("start ms: " + " ".join(f"{k} {percentile(starts, q):.2f}" for k, q in (("p50", 50), ("p99", 99)))
          + " (publish -> the poll that returned the event began)")
    for f in failures:
        print("FAILED:", f)
    print("result:", "FAILED" if failures else "ok")
    return 1 if failures else 0


def main():
    p = argparse.ArgumentParser(description="make bench consumers: PgQ load (P5), end-to-end latency (P11)")
    sp = p.add_subparsers(dest="mode", required=True)
    q = sp.add_parser("pgq")
    q.add_argument("--dsn", default="")
    q.add_argument("--queue", required=True)
    q.add_argument("--consumers", type=int, default=10)
    q.add_argument("--tick", type=float, default=1, help="seconds between pgq.ticker calls (1, as pgqd)")
    q.add_argument("--idle", type=float, default=0.02, help="sleep when next_batch finds no batch (0.02)")
    q.add_argument("--seconds", type=float, default=3600)
    lt = sp.add_parser("latency")
    lt.add_argument("--dsn", default="")
    lt.add_argument("--subs", type=int, default=3)
    lt.add_argument("--prefix", default="p11")
    lt.add_argument("--pattern", default="orders.#")
    lt.add_argument("--timeout", type=float, default=10)
    lt.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args()
    if args.mode == "pgq":
        return pgq_main(args)
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    return latency_main(args)


if __name__ == "__main__":
    sys.exit(main())
