#!/usr/bin/python3
"""Clients of eventbus through a transaction-pooling pgbouncer, for
test/t/020_pgbouncer.pl. Every statement runs in its own transaction
(autocommit), as a pooled client's would: nothing is kept in the session
but what the client holds itself (the lease token).

  pooled_client.py pub DSN TAG N          publish N events, keys TAG-0 .. TAG-(N-1)
  pooled_client.py consume DSN LEDGER STOPFILE
        poll(wait => 1s) + ack(lease_token) until STOPFILE exists and a poll
        is empty; writes "D key event_id attempt backend_pid" per delivery
        and "A n_given n_acked" per ack to LEDGER
  pooled_client.py wait DSN SECONDS       one poll(wait => SECONDS); prints
        "rows N elapsed S"
"""
import os
import sys
import time

import psycopg2


def connect(dsn):
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    return conn


def pub(dsn, tag, n):
    cur = connect(dsn).cursor()
    for i in range(int(n)):
        cur.execute("SELECT eventbus.publish('pb.order', jsonb_build_object('k', %s))",
                    ('%s-%d' % (tag, i),))


def consume(dsn, ledger, stopfile):
    cur = connect(dsn).cursor()
    with open(ledger, 'w', buffering=1) as f:
        while True:
            cur.execute("SELECT payload->>'k', event_id, attempt, lease_token, pg_backend_pid()"
                        "  FROM eventbus.poll('pb', 50, wait => '1s')")
            rows = cur.fetchall()
            if not rows:
                if os.path.exists(stopfile):
                    return
                continue
            for k, eid, att, _, pid in rows:
                f.write('D %s %d %d %d\n' % (k, eid, att, pid))
            cur.execute("SELECT eventbus.ack('pb', %s, lease_token => %s)",
                        ([r[1] for r in rows], rows[0][3]))
            f.write('A %d %d\n' % (len(rows), cur.fetchone()[0]))


def wait(dsn, seconds):
    cur = connect(dsn).cursor()
    t0 = time.time()
    cur.execute("SELECT count(*) FROM eventbus.poll('pb', 10, wait => %s::interval)",
                ('%s s' % seconds,))
    print('rows %d elapsed %.3f' % (cur.fetchone()[0], time.time() - t0), flush=True)


if __name__ == '__main__':
    {'pub': pub, 'consume': consume, 'wait': wait}[sys.argv[1]](*sys.argv[2:])
