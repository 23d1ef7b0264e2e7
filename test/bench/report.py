#!/usr/bin/python3
"""make bench (test/bench/run.sh): the table of ratios, from the raw figures.

    report.py RAW.tsv META.txt OUT.md KEY=VALUE...

RAW.tsv: one line per run: key, pass (on/off: synchronous_commit), round,
variant, value, extra (key=value words). META.txt: "name: value" lines
(machine facts). Prints the table and the per-run figures, and writes them,
with the machine facts, as markdown to OUT.md.
"""
import statistics
import sys
from collections import defaultdict

raw_path, meta_path, out_path = sys.argv[1:4]
opts = dict(a.split("=", 1) for a in sys.argv[4:])
T, ROUNDS, CLIENTS = opts["T"], int(opts["ROUNDS"]), opts["CLIENTS"]
DRAIN_N, P7_N, P7_FIRST = int(opts["DRAIN_N"]), int(opts["P7_N"]), int(opts["P7_FIRST"])
SMOKE = opts.get("SMOKE") == "1"

runs = defaultdict(list)   # (key, pass, variant) -> [(round, value, extra)]
for line in open(raw_path):
    f = line.rstrip("\n").split("\t")
    if len(f) < 5:
        continue
    key, pas, rnd, var, val = f[:5]
    extra = dict(w.split("=", 1) for w in (f[5] if len(f) > 5 else "").split() if "=" in w)
    try:
        v = float(val)
    except ValueError:
        v = None
    runs[(key, pas, var)].append((int(rnd), v, extra))


def values(key, pas, var):
    return {r: v for r, v, _ in runs.get((key, pas, var), []) if v is not None}


def num(x, unit=""):
    if x is None:
        return "NA"
    s = f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.1f}"
    return f"{s} {unit}".strip()


PASS = {"on": "durable", "off": "sync off"}
DKEY = {"P3fresh": "P3 fresh"}   # raw key -> the name in the table of runs
rows = []      # the table
details = []   # per-run figures


def pair(label, key, pas, a, b, desc_a, desc_b, unit, target, mult=1.0):
    va, vb = values(key, pas, a), values(key, pas, b)
    if not va and not vb:
        return
    ma = statistics.mean(va.values()) * mult if va else None
    mb = statistics.mean(vb.values()) * mult if vb else None
    ratio = ma / mb if ma and mb else None
    per = [va[r] / vb[r] for r in sorted(va) if r in vb and vb[r]]
    rtext = "NA" if ratio is None else f"{ratio:.2f}"
    if ratio is not None and target is not None and (round(ratio, 2) >= target) != (ratio >= target):
        rtext = f"{ratio:.3f}"  # two decimals would round across the target
    if ratio is not None and len(per) > 1:
        rtext += f" ({min(per):.2f}–{max(per):.2f})"
    if target is None:
        ttext, met = "reported", "—"
    else:
        ttext = f"≥ {target:.2f}"
        met = "NA" if ratio is None else ("yes" if ratio >= target else "no")
    rows.append((f"{label} {PASS[pas]}", desc_a, desc_b, num(ma, unit), num(mb, unit), rtext, ttext, met))
    for var, desc, v in ((a, desc_a, va), (b, desc_b, vb)):
        if (key, pas, var) in seen:
            continue
        seen.add((key, pas, var))
        extra = "; ".join(" ".join(f"{k}={x}" for k, x in e.items())
                          for _, _, e in sorted(runs.get((key, pas, var), []), key=lambda t: t[0]) if e)
        details.append((f"{DKEY.get(key, key)} {PASS[pas]}", desc,
                        ", ".join(num(v[r] * mult) for r in sorted(v)), num(statistics.mean(v.values()) * mult if v else None, unit),
                        extra))


seen = set()
for pas in ("on", "off"):
    pair("P1", "P1", pas, "publish", "insert", f"`publish`, 1 event/tx, {CLIENTS} clients",
         "plain INSERT, same row (PK)", "tps", 0.90 if pas == "on" else None)
for pas in ("on", "off"):
    pair("P1 acl", "P1", pas, "publish_acl", "insert",
         f"`publish` under topic ACLs (20 patterns), 1 event/tx, {CLIENTS} clients",
         "plain INSERT, same row (PK)", "tps", 0.90 if pas == "on" else None)
for pas in ("on", "off"):
    pair("P1b", "P1", pas, "publish", "pgq", f"`publish`, 1 event/tx, {CLIENTS} clients",
         "PgQ `insert_event`, 1 event/tx", "tps", 1.0)
for pas in ("on", "off"):
    pair("P2", "P2", pas, "batch", "insert", f"`publish_batch`, 100 events/tx, {CLIENTS} clients",
         "`INSERT … SELECT` 100 rows/tx", "events/s", 0.80, mult=100)
pair("P3", "P3", "on", "eventbus", "pgq", f"drain {DRAIN_N:,}: `poll(500)` + `ack`",
     "PgQ drain: `next_batch`/`get_batch_events`/`finish_batch`", "events/s", 0.70)
pair("P3 fresh", "P3fresh", "on", "eventbus", "pgq",
     f"drain {DRAIN_N:,} right after the fill, fresh database, no VACUUM/ANALYZE",
     "PgQ drain, the same way", "events/s", 0.70)
for pas in ("on", "off"):
    pair("P4", "P4", pas, "subs100", "subs1", f"`publish`, 100 wildcard subscriptions, {CLIENTS} clients",
         "`publish`, 1 subscription", "tps", 0.95)
# P5: publishers while 10 listeners wait on LISTEN (N, >= 0.95), and while
# they also poll and ack every event (B, >= 0.80: the consumers' own work
# runs on the same 2 cores); beside it PgQ's publishers with and without
# 10 consumers (reported).
pair("P5", "P5", "on", "N", "A", "8 publishers, 10 listeners waiting on LISTEN",
     "8 publishers, no listeners", "tps", 0.95)
pair("P5 (B)", "P5", "on", "B", "A", "8 publishers, 10 listeners LISTEN + poll/ack every event",
     "8 publishers, no listeners", "tps", 0.80)
pair("P5 (PgQ)", "P5", "on", "R", "Q", "PgQ: 8 publishers `insert_event`, 10 consumers "
     f"`next_batch`/`get_batch_events`/`finish_batch`, a tick every {opts.get('PGQ_TICK', '1')} s",
     "PgQ: 8 publishers, ticker only", "tps", None)
pair("P5 (ref)", "P5", "on", "C", "A", "INSERT + `pg_notify` per tx, 8 clients",
     "8 publishers, no listeners", "tps", None)
pair("P5 (ref)", "P5", "on", "D", "C", "INSERT + `pg_notify`, 10 listeners reading",
     "INSERT + `pg_notify`, no listeners", "tps", None)

# P6: latency, eventbus (worker NOTIFY) and the reference (NOTIFY by the publishing commit)
p6 = {var: e for (key, _, var), lst in runs.items() if key == "P6" for _, _, e in lst}
if p6:
    def lat(e):
        return f"p50 {e['p50']} / p99 {e['p99']} ms" if e else "NA"
    eb, ref = p6.get("eventbus"), p6.get("reference")
    met = "NA"
    if eb:
        try:
            met = "yes" if float(eb["p99"]) <= 10 else "no"
        except ValueError:
            pass
    rows.append(("P6 durable", "commit → LISTEN wake → `poll` returns, 1,000 events/s",
                 "INSERT + `pg_notify` in the tx (reference)", lat(eb), lat(ref), "—", "p99 ≤ 10 ms", met))
    for var, e in sorted(p6.items()):
        details.append(("P6 durable", var, f"rate {e.get('rate')}/s: p50 {e.get('p50')}, p90 {e.get('p90')}, "
                        f"p99 {e.get('p99')}, max {e.get('max')} ms", "", ""))

# P8: competing consumers of one subscription
pair("P8", "P8", "on", "c4", "c1", "4 consumers of one subscription: `BEGIN; poll(100)`; 10 ms; `ack`; `COMMIT`",
     "1 such consumer", "events/s", 3.5)

# P11: end to end at 10,000 events/s, 3 subscriptions (and 1 beside it)
p11 = {var: e for (key, _, var), lst in runs.items() if key == "P11" for _, _, e in lst}
if p11:
    def lat11(e):
        return f"p50 {e['p50']} / p99 {e['p99']} ms" if e else "NA"
    three, one = p11.get("subs3"), p11.get("subs1")
    met = "NA"
    if three:
        try:
            met = "yes" if float(three["p99"]) <= 10 else "no"
        except ValueError:
            pass
        if three.get("received") != three.get("expected"):
            met += f" ({three.get('received')} of {three.get('expected')} received)"
    rate = (three or one or {}).get("rate", "?")
    rate = f"{int(rate):,}" if rate.isdigit() else rate
    rows.append(("P11 durable", f"publish → consumer's hands, `publish_batch` of 10 per tx at {rate} events/s, "
                 "3 subscriptions, a LISTEN consumer each (poll + ack)",
                 "the same, 1 subscription", lat11(three), lat11(one), "—", "p99 ≤ 10 ms", met))
    for var, e in sorted(p11.items(), reverse=True):
        details.append(("P11 durable", var, f"rate {e.get('rate')}/s: p50 {e.get('p50')}, p90 {e.get('p90')}, "
                        f"p99 {e.get('p99')}, max {e.get('max')} ms", "",
                        " ".join(f"{k}={v}" for k, v in e.items() if k not in ("p50", "p90", "p99", "max", "rate"))))

# P9: a relay to Kafka beside 4 durable publishers: what it costs them
# (reported) and whether it keeps up: the rate it acks at against the
# rate they publish at, and a backlog that does not grow over the run.
pair("P9", "P9", "on", "relay", "norelay",
     f"`publish`, 1 event/tx, {CLIENTS} clients, a relay of their topics to Kafka (mock cluster, the relay's defaults)",
     "the same publishers, no relay", "tps", None)
p9 = [(values("P9", "on", "relay").get(r), e) for r, _, e in runs.get(("P9", "on", "relay"), [])]
p9 = [(v, e) for v, e in p9 if v and "relay_eps" in e]
if p9:
    pub = statistics.mean(v for v, _ in p9)
    eps = statistics.mean(float(e["relay_eps"]) for _, e in p9)
    bounded = all(e.get("bounded") == "yes" for _, e in p9)
    maxlag = max(int(e["max_lag"]) for _, e in p9)
    endlag = max(int(e["end_lag"]) for _, e in p9)
    maxage = max(float(e["max_age_s"]) for _, e in p9)
    ratio = eps / pub if pub else None
    met = "NA" if ratio is None else ("yes" if ratio >= 0.95 and bounded else "no")
    rows.append(("P9 relay durable",
                 f"events acked by the relay per second during the run; backlog max {maxlag:,}, at the end {endlag:,} "
                 f"events (oldest pending ≤ {maxage:.2f} s), {'bounded' if bounded else 'GROWING'}",
                 "events published per second beside it", num(eps, "events/s"), num(pub, "events/s"),
                 "NA" if ratio is None else f"{ratio:.2f}", "keeps up (≥ 0.95), backlog bounded", met))

# P10: commit -> message in Kafka through a relay, at fixed rates
p10 = {var: e for (key, _, var), lst in runs.items() if key == "P10" for _, _, e in lst}
if p10:
    def lat10(e):
        return f"{e.get('rate', '?')}/s: p50 {e['p50']} / p95 {e['p95']} / p99 {e['p99']} ms" if e else "NA"
    order = sorted(p10, key=lambda v: int(v[1:]) if v[1:].isdigit() else 0)
    met, goal = "yes", "yes"
    for v in order:
        e = p10[v]
        try:
            if float(e["p95"]) > 100:
                met = "no"
            if float(e["p99"]) > 20:
                goal = "no"
        except ValueError:
            met = goal = "NA"
        if e.get("received") != e.get("published"):
            met += f" ({e.get('received')} of {e.get('published')} received)"
    rows.append(("P10 durable", f"commit → message in Kafka through a relay, {order[0][1:]} events/s",
                 f"the same at {order[-1][1:]} events/s" if len(order) > 1 else "—",
                 lat10(p10[order[0]]), lat10(p10[order[-1]]) if len(order) > 1 else "—", "—",
                 "p95 ≤ 100 ms (goal p99 ≤ 20 ms)", f"{met} (goal: {goal})"))
    for v in order:
        e = p10[v]
        details.append(("P10 durable", f"{v[1:]} events/s", f"rate {e.get('rate')}/s: p50 {e.get('p50')}, p95 {e.get('p95')}, "
                        f"p99 {e.get('p99')}, max {e.get('max')} ms", "",
                        " ".join(f"{k}={x}" for k, x in e.items() if k not in ("p50", "p95", "p99", "max", "rate"))))

# P12: the HTTP relay
p12 = {var: (v, e) for (key, _, var), lst in runs.items() if key == "P12" for _, v, e in lst}
if p12:
    c1, c8 = p12.get("c1", (None, {}))[0], p12.get("c8", (None, {}))[0]
    rows.append(("P12 durable", "HTTP relay: events/s with 8 requests in flight", "with 1 in flight",
                 num(c8, "events/s"), num(c1, "events/s"), "—", "(no target)", "—"))
    lat = p12.get("latency", (None, {}))[1]
    if lat:
        try:
            met = "yes" if float(lat["p95"]) <= 100 else "no"
            goal = "yes" if float(lat["p99"]) <= 20 else "no"
        except (KeyError, ValueError):
            met = goal = "NA"
        rows.append(("P12 durable", f"commit → request received by the endpoint, {lat.get('rate', '?')} events/s", "—",
                     f"p50 {lat.get('p50')} / p95 {lat.get('p95')} / p99 {lat.get('p99')} ms", "—", "—",
                     "p95 ≤ 100 ms (goal p99 ≤ 20 ms)", f"{met} (goal: {goal})"))

# P7: storage
p7 = {var: (v, e) for (key, _, var), lst in runs.items() if key == "P7" for _, v, e in lst}
if "first" in p7 and "final" in p7:
    (first, ef), (final, ez) = p7["first"], p7["final"]
    chunk = float(ef.get("chunk_size", "0"))
    mb = lambda b: b / 1048576
    grow = final - first
    met = "yes" if chunk and grow <= 2 * chunk else "no"
    rows.append(("P7 durable", f"size after {P7_N:,} events published and acked",
                 f"size after the first {int(ef.get('events', P7_FIRST)):,}",
                 f"{mb(final):.1f} MB", f"{mb(first):.1f} MB",
                 f"{'+' if grow >= 0 else '−'}{abs(mb(grow)):.1f} MB = {grow / chunk:.2f} chunks" if chunk else "NA",
                 f"≤ 2 chunks (2 × {mb(chunk):.0f} MB)" + (", no VACUUM" if ef.get("autovacuum") == "off" else ""), met))
    lf, lz = float(ef.get("log", 0)), float(ez.get("log", 0))
    rows.append(("P7 (log) durable", f"of which the event log chunks, after {P7_N:,}",
                 f"the same after the first {int(ef.get('events', P7_FIRST)):,}", f"{mb(lz):.1f} MB", f"{mb(lf):.1f} MB",
                 f"{'+' if lz >= lf else '−'}{abs(mb(lz - lf)):.1f} MB = {(lz - lf) / chunk:.2f} chunks" if chunk else "NA",
                 "reported", "—"))
    for var in ("first", "final", "settled", "samples"):
        if var in p7:
            v, e = p7[var]
            details.append(("P7 durable", var, "" if var == "samples" else f"{mb(v):.1f} MB", "",
                            " ".join(f"{k}={(f'{mb(float(x)):.1f}MB' if k in ('log', 'delivery', 'other', 'peak', 'peak_log', 'peak_delivery') else x)}"
                                     for k, x in e.items())))

head = ["#", "A", "B (baseline)", "A", "B", "A/B", "target", "met?"]
table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
table += ["| " + " | ".join(r) + " |" for r in rows]
dhead = ["pair", "variant", "per round", "mean", "notes"]
dtable = ["| " + " | ".join(dhead) + " |", "|" + "---|" * len(dhead)]
dtable += ["| " + " | ".join(d) + " |" for d in details]

meta = [l.rstrip("\n") for l in open(meta_path) if l.strip()]
md = []
md.append("# make bench" + (" (SMOKE RUN: tiny runs, the figures mean nothing)" if SMOKE else ""))
md.append("")
md += [f"- {l}" for l in meta]
md.append(f"- pgbench runs of {T} s, {ROUNDS} round(s) A B A B …; A/B is the ratio of the means, "
          "in brackets the lowest and highest ratio of one round's A and B; "
          "durable = fsync and synchronous_commit on, sync off = synchronous_commit=off")
md.append("")
md += table
md.append("")
md.append("Every run (tps; events/s for P2, P3 and P8):")
md.append("")
md += dtable
text = "\n".join(md) + "\n"
open(out_path, "w").write(text)
print()
print("\n".join(table))
print()
print("\n".join(dtable))
