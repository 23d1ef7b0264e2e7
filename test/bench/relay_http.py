#!/usr/bin/env python3
"""The HTTP relay's figures for make bench (docs/performance.md, P12).

A receiver in this process (127.0.0.1, HTTP/1.1 keep-alive, answers 200 at
once, notes when each request arrived by its ce-id) and an HTTP relay to
it, with a signing secret (every request is signed, as in production):

  throughput  N unkeyed events published while the relay is paused, then
              resumed: events/s until the last one arrived, with the
              relay's concurrency 1 and 8 (requests in flight);
  latency     events published one per transaction at a fixed rate from
              two connections; for each, the time from its COMMIT
              returning to its request arriving: p50, p95, p99.

Prints one line per figure, "key value", for test/bench/run.sh.

  relay_http.py --port 54470 [--events 20000] [--rate 1000] [--seconds 20]
"""
import argparse
import http.server
import json
import socketserver
import statistics
import sys
import threading
import time

import psycopg2

ARRIVED = {}
ARRIVED_LOCK = threading.Lock()
ARRIVED_EVENT = threading.Condition(ARRIVED_LOCK)


class Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        now = time.time()
        n = int(self.headers.get("content-length", 0))
        if n:
            self.rfile.read(n)
        ce_id = self.headers.get("ce-id", "")
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()
        event_id = int(ce_id.rsplit(":", 1)[-1]) if ":" in ce_id else -1
        with ARRIVED_LOCK:
            ARRIVED.setdefault(event_id, now)
            ARRIVED_EVENT.notify_all()

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128    # the default 5 refuses the relay's connections under load


ERRORS = []


def wait_for(ids, timeout):
    deadline = time.time() + timeout
    with ARRIVED_LOCK:
        while not ids <= ARRIVED.keys():
            left = deadline - time.time()
            if left <= 0:
                return False
            ARRIVED_EVENT.wait(min(left, 0.5))
    return True


def connect(args):
    conn = psycopg2.connect(host=args.host, port=args.port, dbname=args.dbname, user=args.user)
    conn.autocommit = True
    return conn


def setup(cur, port, concurrency):
    cur.execute("SELECT count(*) FROM eventbus.relays WHERE name = 'bench_http'")
    if cur.fetchone()[0]:
        cur.execute("SELECT eventbus.drop_relay('bench_http')")
    cur.execute("DROP SERVER IF EXISTS bench_hooks CASCADE")
    cur.execute("CREATE SERVER bench_hooks FOREIGN DATA WRAPPER eventbus_http "
                "OPTIONS (url %s, concurrency %s)", (f"http://127.0.0.1:{port}/hook", str(concurrency)))
    cur.execute("SET log_statement = 'none'")
    cur.execute("CREATE USER MAPPING FOR CURRENT_USER SERVER bench_hooks "
                "OPTIONS (secret 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')")
    cur.execute("SELECT eventbus.create_relay('bench_http', array['bench.http.#'], sink => 'http', "
                "server => 'bench_hooks')")


def wait_running(cur, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        cur.execute("SELECT state FROM eventbus.relays WHERE name = 'bench_http'")
        if cur.fetchone()[0] == 'running':
            return True
        time.sleep(0.1)
    return False


def throughput(args, port, concurrency):
    conn = connect(args)
    cur = conn.cursor()
    setup(cur, port, concurrency)
    if not wait_running(cur):
        sys.exit("the HTTP relay did not start")
    cur.execute("SELECT eventbus.pause('bench_http')")
    ids = set()
    left = args.events
    while left > 0:
        n = min(left, 1000)
        cur.execute("SELECT eventbus.publish_batch(array_fill('bench.http.t'::text, array[%s]), "
                    "array_agg(jsonb_build_object('n', i))) FROM generate_series(1, %s) i", (n, n))
        ids.update(r[0] for r in cur.fetchall())
        left -= n
    start = time.time()
    cur.execute("SELECT eventbus.resume('bench_http')")
    if not wait_for(ids, 600):
        sys.exit(f"only {len(ids & ARRIVED.keys())} of {len(ids)} events arrived")
    end = max(ARRIVED[i] for i in ids)
    cur.execute("SELECT last_error FROM eventbus.relays WHERE name = 'bench_http'")
    ERRORS.append(cur.fetchone()[0])
    cur.execute("SELECT eventbus.drop_relay('bench_http')")
    conn.close()
    return len(ids) / (end - start)


def latency(args, port):
    conn = connect(args)
    cur = conn.cursor()
    setup(cur, port, 8)
    if not wait_running(cur):
        sys.exit("the HTTP relay did not start")
    committed = {}
    lock = threading.Lock()
    stop_at = time.time() + args.seconds

    def publisher(offset):
        c = connect(args)
        k = c.cursor()
        interval = 2.0 / args.rate      # two publishers
        t = time.time() + offset * interval / 2
        while t < stop_at:
            now = time.time()
            if now < t:
                time.sleep(t - now)
            k.execute("SELECT eventbus.publish('bench.http.l', '{}')")
            eid = k.fetchone()[0]
            done = time.time()          # autocommit: COMMIT has returned
            with lock:
                committed[eid] = done
            t += interval
        c.close()

    threads = [threading.Thread(target=publisher, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wait_for(set(committed), 60)
    lat = sorted((ARRIVED[i] - committed[i]) * 1000 for i in committed if i in ARRIVED)
    cur.execute("SELECT last_error FROM eventbus.relays WHERE name = 'bench_http'")
    ERRORS.append(cur.fetchone()[0])
    cur.execute("SELECT eventbus.drop_relay('bench_http')")
    conn.close()
    if not lat:
        sys.exit("no event arrived")

    def pct(p):
        return lat[min(len(lat) - 1, int(len(lat) * p))]
    return len(committed) / args.seconds, pct(0.50), pct(0.95), pct(0.99), len(committed) - len(lat)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="/tmp")
    ap.add_argument("--port", type=int, default=54470)
    ap.add_argument("--dbname", default="bench")
    ap.add_argument("--user", default=None)
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()

    server = Server(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    for c in (1, 8):
        print(f"http_throughput_c{c} {throughput(args, port, c):.0f}", flush=True)
    rate, p50, p95, p99, lost = latency(args, port)
    print(f"http_latency_rate {rate:.0f}")
    print(f"http_latency_p50_ms {p50:.2f}")
    print(f"http_latency_p95_ms {p95:.2f}")
    print(f"http_latency_p99_ms {p99:.2f}")
    print(f"http_latency_missing {lost}")
    print(f"http_relay_errors {'; '.join(e for e in ERRORS if e) or 'none'}")
    server.shutdown()


if __name__ == "__main__":
    main()
