#!/usr/bin/python3
"""P10 of make bench (test/bench/run.sh): commit -> message in Kafka.

    relay_latency.py --bootstrap HOST:PORT --topic T [--warmup 1] [--timeout 15]
                     [--per-tx 10] -- COMMAND...

Follows Kafka topic T (which must exist) from its end with kcat, one
consumer of every partition, and stamps each message with the time its
line arrives here. Once kcat is reading, it runs COMMAND (the publisher:
pgbench -R with p11_publish.sql, whose payloads carry "ts", epoch seconds
of clock_timestamp() in the publishing statement, so just before its
commit), then waits until every published event came (pgbench's
transactions x --per-tx) or nothing came for --timeout s. The latency of a
message is its arrival here minus its "ts": publishing statement ->
commit -> relay polls it -> librdkafka produces it -> the broker appends
it (and acknowledges it: the mock cluster acknowledges what it appended)
-> this consumer fetched it. It bounds commit -> acknowledged from above:
it includes the commit's own WAL flush and the consumer's fetch (kcat with
fetch.wait.max.ms=5). Events published in the first --warmup s are left
out (connections to new partition leaders). Prints:
  published: N events in S s: R events/s
  received: M of N
  latency ms: p50 .. p95 .. p99 .. max .. (K events after the warm-up)
  produce ms: p50 .. p95 .. p99   ("ts" -> the message's CreateTime, which
                                   librdkafka sets when the relay produces it)
  fetch ms: p50 .. p95 .. p99     (CreateTime -> arrival here: batching
                                   (linger.ms), the broker, the consumer)
and COMMAND's output. Exits 1 if events are missing.
"""
import argparse
import json
import re
import subprocess
import sys
import threading
import time


def pct(xs, p):
    """Returns the p-th percentile (nearest rank) of sorted xs."""
    if not xs:
        return float("nan")
    k = max(0, min(len(xs) - 1, int(round(p / 100.0 * len(xs) + 0.5)) - 1))
    return xs[k]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=15.0)
    ap.add_argument("--per-tx", type=int, default=10)
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command

    got = []            # (arrival, ts, the message's CreateTime)
    lock = threading.Lock()
    kcat = subprocess.Popen(
        ["kcat", "-C", "-q", "-u", "-b", a.bootstrap, "-t", a.topic, "-o", "end", "-f", "%T %s\n",
         "-X", "fetch.wait.max.ms=5", "-X", "fetch.error.backoff.ms=5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # buffered: readline must not read a byte at a time

    def reader():
        """Stamps each message line as it arrives."""
        for line in iter(kcat.stdout.readline, b""):
            now = time.time()
            try:
                create, payload = line.split(b" ", 1)
                ts = float(json.loads(payload)["ts"])
                create = int(create) / 1000.0
            except (ValueError, KeyError, TypeError):
                continue        # not an event of the publisher (e.g. the topic's first message)
            with lock:
                got.append((now, ts, create))

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    time.sleep(2.0)         # kcat assigns the partitions and reads from their end
    if kcat.poll() is not None:
        print("FAILED: kcat exited: " + kcat.stderr.read().decode(errors="replace"))
        sys.exit(1)
    t0 = time.time()
    pub = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    t1 = time.time()
    out = pub.stdout.decode(errors="replace")
    print(out.rstrip())
    m = re.search(r"number of transactions actually processed: (\d+)", out)
    expected = int(m.group(1)) * a.per_tx if m else 0
    last, n = time.time(), -1
    while True:
        with lock:
            k = len(got)
        if k >= expected > 0:
            break
        if k != n:
            n, last = k, time.time()
        elif time.time() - last > a.timeout:
            break
        time.sleep(0.05)
    kcat.terminate()
    kcat.wait()
    with lock:
        rows = list(got)
    kept = [r for r in rows if r[1] >= t0 + a.warmup]
    lat = sorted((arr - ts) * 1000.0 for arr, ts, _ in kept)
    produce = sorted((create - ts) * 1000.0 for _, ts, create in kept)
    fetch = sorted((arr - create) * 1000.0 for arr, _, create in kept)
    print(f"published: {expected} events in {t1 - t0:.1f} s: {expected / max(t1 - t0, 1e-9):.0f} events/s")
    print(f"received: {len(rows)} of {expected}")
    print(f"latency ms: p50 {pct(lat, 50):.2f} p95 {pct(lat, 95):.2f} p99 {pct(lat, 99):.2f} "
          f"max {(lat[-1] if lat else float('nan')):.2f} ({len(lat)} events after the warm-up)")
    for name, xs in (("produce", produce), ("fetch", fetch)):
        print(f"{name} ms: p50 {pct(xs, 50):.2f} p95 {pct(xs, 95):.2f} p99 {pct(xs, 99):.2f}")
    if pub.returncode != 0 or len(rows) < expected or expected == 0:
        print("FAILED: publisher exit %d, %d of %d received" % (pub.returncode, len(rows), expected))
        sys.exit(1)


if __name__ == "__main__":
    main()
