#!/usr/bin/python3
"""JSON Schema Test Suite conformance of eventbus.validate().

Runs every line of the official JSON Schema Test Suite (as JSON lines, see
the suite's README.md) through eventbus.validate(schema, data) in one
database and compares the result with the recorded baseline, expected.txt
next to this script.

    /usr/bin/python3 test/jsonschema/conformance.py                  # both drafts
    /usr/bin/python3 test/jsonschema/conformance.py --draft 7 -v     # list every failure
    /usr/bin/python3 test/jsonschema/conformance.py --write-expected # new baseline

The database (--dsn, else the PG* environment) needs the eventbus extension,
and the user must be allowed to call eventbus.register_schema: the suite's
remote documents (remotes/, http://localhost:1234/<path>) are registered
under their URIs before the run and dropped after it (--keep-remotes keeps
them).

A test passes iff validate() returns the expected verdict without an error.
The lines whose data contains \\u0000 (jsonb cannot hold it) count as
failures. The draft-07 tests have no "$schema"; the runner adds
"$schema": "http://json-schema.org/draft-07/schema#" to every object schema
of a draft-07 run (tests and draft-07 remotes) that lacks one, since the
validator defaults to 2020-12 (--no-inject-schema turns that off).

Exit status: 0 when no draft passes fewer tests than expected.txt records
and every failing test is listed there; 1 otherwise; 2 when it cannot run
(no suite, no database, no extension).
"""

import argparse
import json
import os
import sys
import time

try:
    import psycopg2
    import psycopg2.extensions
except ImportError:  # pragma: no cover
    sys.stderr.write("conformance.py needs psycopg2 (Debian: python3-psycopg2; run it with /usr/bin/python3)\n")
    sys.exit(2)

HERE = os.path.dirname(os.path.abspath(__file__))
# The copy in the repository (test/jsonschema/suite), else the shared one.
DEFAULT_SUITE = next((d for d in (os.path.join(HERE, "suite"), "/work/shared/jsonschema-suite")
                      if os.path.isdir(d)), os.path.join(HERE, "suite"))
DRAFTS = ("draft2020-12", "draft7")
DRAFT7_URI = "http://json-schema.org/draft-07/schema#"
REMOTE_BASE = "http://localhost:1234/"
NUL_REASON = "jsonb cannot hold \\u0000"

# One line per subtransaction: an error (or a schema the validator rejects)
# rolls back that line only. query_canceled (statement_timeout) is not
# caught by OTHERS and aborts the batch; the runner then retries the batch
# line by line.
BATCH_FUNCTION = r"""
CREATE OR REPLACE FUNCTION pg_temp.eb_conformance_batch(lines text[], dialect text)
RETURNS TABLE (n integer, ok boolean, verdict boolean, state text, message text)
LANGUAGE plpgsql AS $fn$
DECLARE
    line jsonb;
    s jsonb;
    v_detail text;
BEGIN
    FOR i IN 1 .. coalesce(array_length(lines, 1), 0) LOOP
        n := i;
        BEGIN
            line := lines[i]::jsonb;
            s := line -> 'schema';
            IF dialect IS NOT NULL AND jsonb_typeof(s) = 'object' AND NOT s ? '$schema' THEN
                s := jsonb_build_object('$schema', dialect) || s;
            END IF;
            verdict := eventbus.validate(s, line -> 'data');
            ok := true; state := NULL; message := NULL;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_detail = PG_EXCEPTION_DETAIL;
            ok := false; verdict := NULL; state := SQLSTATE;
            message := SQLERRM || CASE WHEN coalesce(v_detail, '') <> '' THEN ' (' || v_detail || ')' ELSE '' END;
        END;
        RETURN NEXT;
    END LOOP;
END
$fn$
"""


def die(msg, code=2):
    sys.stderr.write("conformance: %s\n" % msg)
    sys.exit(code)


def one_line(text, limit=240):
    """A reason fit for one line of expected.txt."""
    text = " ".join(str(text).split())
    text = text.replace(" | ", " / ")
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def has_nul(value):
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(has_nul(v) for v in value)
    if isinstance(value, dict):
        return any("\x00" in k or has_nul(v) for k, v in value.items())
    return False


def norm_draft(name):
    name = name.strip().lower()
    if name in ("7", "draft7", "draft-07", "draft07"):
        return ["draft7"]
    if name in ("2020-12", "draft2020-12", "draft-2020-12", "2020"):
        return ["draft2020-12"]
    if name in ("both", "all"):
        return list(DRAFTS)
    raise argparse.ArgumentTypeError("unknown draft %r (2020-12, 7 or both)" % name)


class Test:
    __slots__ = ("draft", "file", "group", "test", "valid", "raw", "nul", "passed", "reason")

    def __init__(self, draft, raw):
        obj = json.loads(raw)
        self.draft = draft
        self.file = obj["file"]
        self.group = obj["group"]
        self.test = obj["test"]
        self.valid = bool(obj["valid"])
        self.raw = raw
        self.nul = has_nul(obj.get("schema")) or has_nul(obj.get("data"))
        self.passed = False
        self.reason = None

    def key(self):
        return (self.draft, self.file, self.group, self.test)


# ---------------------------------------------------------------- database

class Db:
    def __init__(self, dsn, line_timeout):
        self.dsn = dsn
        self.line_timeout = line_timeout
        self.conn = None

    def connect(self, patience=0.0):
        deadline = time.time() + patience
        while True:
            try:
                self.conn = psycopg2.connect(self.dsn, application_name="eventbus conformance")
                break
            except psycopg2.OperationalError as e:
                if time.time() >= deadline:
                    raise
                time.sleep(0.5)
        self.conn.autocommit = True
        with self.conn.cursor() as cur:
            cur.execute("SET client_min_messages = warning")
            cur.execute("SET statement_timeout = 0")
            cur.execute(BATCH_FUNCTION)

    def alive(self):
        if self.conn is None or self.conn.closed:
            return False
        try:
            with self.conn.cursor() as cur:
                cur.execute("SELECT 1")
            return True
        except psycopg2.Error:
            return False

    def reconnect(self):
        try:
            if self.conn is not None:
                self.conn.close()
        except psycopg2.Error:
            pass
        # After a backend crash the postmaster reinitialises: give it time.
        self.connect(patience=60.0)

    def run_batch(self, raws, dialect, timeout_s):
        with self.conn.cursor() as cur:
            cur.execute("SET statement_timeout = %s", ("%ds" % timeout_s if timeout_s else "0",))
            cur.execute("SELECT n, ok, verdict, state, message FROM pg_temp.eb_conformance_batch(%s::text[], %s)",
                        (raws, dialect))
            rows = cur.fetchall()
        return {r[0]: r[1:] for r in rows}


def check_extension(db):
    with db.conn.cursor() as cur:
        cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'eventbus'")
        row = cur.fetchone()
        if row is None:
            die("the database has no eventbus extension (CREATE EXTENSION eventbus)")
        cur.execute("SELECT to_regprocedure('eventbus.validate(jsonb,jsonb)') IS NOT NULL, "
                    "to_regprocedure('eventbus.register_schema(text,jsonb,text,text)') IS NOT NULL")
        v, r = cur.fetchone()
        if not (v and r):
            die("eventbus %s has no eventbus.validate(jsonb, jsonb) / register_schema(...): "
                "install a build with schema checks" % row[0])


def remote_files(suite, draft):
    """(uri, path) of the remotes a draft's tests use (see the suite's README)."""
    root = os.path.join(suite, "remotes")
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        top = rel_dir.split(os.sep)[0] if rel_dir != "." else ""
        if draft == "draft2020-12":
            if top != "draft2020-12":
                continue
        else:  # draft7: remotes/draft7/ and everything not under another draft's folder
            if top.startswith("draft") and top != "draft7" or top == "v1":
                continue
        for name in sorted(filenames):
            if not name.endswith(".json"):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            out.append((REMOTE_BASE + rel, path))
    return out


def register_remotes(db, suite, drafts, inject):
    """Registers the remotes; returns (registered uris, [(uri, reason)] skipped)."""
    pending = []
    seen = set()
    for draft in drafts:
        dialect = DRAFT7_URI if (draft == "draft7" and inject) else None
        for uri, path in remote_files(suite, draft):
            if uri in seen:
                continue
            seen.add(uri)
            with open(path, encoding="utf-8") as f:
                pending.append((uri, f.read(), dialect))
    registered, errors = [], {}
    # A remote may $ref another one: retry the failures until no progress.
    while pending:
        retry = []
        for uri, text, dialect in pending:
            try:
                with db.conn.cursor() as cur:
                    cur.execute(
                        "SELECT eventbus.register_schema(NULL, "
                        "CASE WHEN %(d)s::text IS NOT NULL AND jsonb_typeof(%(s)s::jsonb) = 'object' "
                        "          AND NOT %(s)s::jsonb ? '$schema' "
                        "     THEN jsonb_build_object('$schema', %(d)s::text) || %(s)s::jsonb "
                        "     ELSE %(s)s::jsonb END, uri => %(u)s)",
                        {"s": text, "d": dialect, "u": uri})
                registered.append(uri)
                errors.pop(uri, None)
            except psycopg2.Error as e:
                if not db.alive():
                    db.reconnect()
                msg = (e.pgerror or str(e)).strip().splitlines()[0] if (e.pgerror or str(e)) else "error"
                if e.pgcode:
                    msg = "%s %s" % (e.pgcode, msg.replace("ERROR:  ", ""))
                if e.diag and e.diag.message_detail:
                    msg += " (%s)" % e.diag.message_detail
                errors[uri] = one_line(msg)
                retry.append((uri, text, dialect))
        if len(retry) == len(pending):
            break
        pending = retry
    return registered, sorted(errors.items())


def drop_remotes(db, uris):
    for uri in uris:
        try:
            with db.conn.cursor() as cur:
                cur.execute("SELECT eventbus.drop_schema(%s)", (uri,))
        except psycopg2.Error:
            if not db.alive():
                db.reconnect()


def reason_of(state, message):
    if state == "22023":
        return one_line("schema rejected: %s" % message)
    return one_line("error %s: %s" % (state, message))


def settle(tests, results):
    for i, t in enumerate(tests, 1):
        ok, verdict, state, message = results[i]
        if not ok:
            t.passed, t.reason = False, reason_of(state, message)
        elif verdict == t.valid:
            t.passed, t.reason = True, None
        else:
            t.passed = False
            t.reason = "expected valid=%s, got %s" % (str(t.valid).lower(), str(verdict).lower())


def run_tests(db, tests, dialect, batch_size, line_timeout):
    runnable = []
    for t in tests:
        if t.nul:
            t.passed, t.reason = False, NUL_REASON
        else:
            runnable.append(t)
    for start in range(0, len(runnable), batch_size):
        batch = runnable[start:start + batch_size]
        try:
            # A batch normally takes well under a second; on a timeout (a
            # line that hangs, or a slow validator) it is retried line by line.
            settle(batch, db.run_batch([t.raw for t in batch], dialect, line_timeout * 3 if line_timeout else 0))
            continue
        except psycopg2.Error as e:
            if not db.alive():
                sys.stderr.write("conformance: connection lost in a batch (%s); retrying it line by line\n"
                                 % one_line(e, 120))
                db.reconnect()
        # One line at a time, to find the line that crashed or hung.
        for t in batch:
            try:
                settle([t], db.run_batch([t.raw], dialect, line_timeout))
            except psycopg2.Error as e:
                if not db.alive():
                    t.passed, t.reason = False, one_line("server crashed (connection lost): %s" % e)
                    sys.stderr.write("conformance: CONNECTION LOST on %s | %s | %s | %s\n"
                                     % (t.draft, t.file, t.group, t.test))
                    db.reconnect()
                elif e.pgcode == "57014":
                    t.passed, t.reason = False, "timeout: no verdict within %d s" % line_timeout
                else:
                    t.passed, t.reason = False, reason_of(e.pgcode, e.diag.message_primary or str(e))


# ---------------------------------------------------------------- expected.txt

HEADER = """\
# JSON Schema Test Suite conformance of eventbus.validate(): the baseline.
# Written by test/jsonschema/conformance.py --write-expected; reviewed by humans.
#
#   total <draft> <tests passed>
#   fail <draft> <file> | <group> | <test> | <reason>
#
# The run fails when a draft passes fewer tests than its total here, or when
# a test fails that is not listed below. Listed tests that pass again are
# reported ("now passes"): rewrite this file with --write-expected.
# Suite: json-schema-org/JSON-Schema-Test-Suite 44401e0c (required tests only).
# draft-07 schemas without "$schema" are run with the draft-07 one added.
"""


def read_expected(path):
    totals, fails, others = {}, {}, []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            if line.startswith("total "):
                parts = line.split()
                if len(parts) != 3 or not parts[2].isdigit():
                    die("%s:%d: bad line %r" % (path, n, line))
                totals[parts[1]] = int(parts[2])
            elif line.startswith("fail "):
                head, _, rest = line[5:].partition(" ")
                fields = rest.split(" | ", 3)
                if len(fields) < 3:
                    die("%s:%d: bad line %r" % (path, n, line))
                reason = fields[3] if len(fields) > 3 else ""
                fails[(head, fields[0], fields[1], fields[2])] = reason
            else:
                die("%s:%d: bad line %r" % (path, n, line))
    return totals, fails


def fail_line(t):
    return "fail %s %s | %s | %s | %s" % (t.draft, t.file, t.group, t.test, t.reason)


def write_expected(path, by_draft, old_totals, old_fails, skipped_remotes):
    lines = [HEADER]
    if skipped_remotes:
        lines.append("#\n# Remotes register_schema rejected in this run (the tests that use them fail):\n")
        for uri, msg in skipped_remotes:
            lines.append("#   %s: %s\n" % (uri, msg))
    lines.append("\n")
    for draft in DRAFTS:
        if draft in by_draft:
            lines.append("total %s %d\n" % (draft, sum(t.passed for t in by_draft[draft])))
        elif draft in old_totals:
            lines.append("total %s %d\n" % (draft, old_totals[draft]))
    for draft in DRAFTS:
        lines.append("\n# %s\n" % draft)
        if draft in by_draft:
            for t in by_draft[draft]:
                if not t.passed:
                    lines.append(fail_line(t) + "\n")
        else:
            for k, reason in old_fails.items():
                if k[0] == draft:
                    lines.append("fail %s %s | %s | %s | %s\n" % (k + (reason,)))
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(lines)
    os.replace(tmp, path)


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description="Runs the JSON Schema Test Suite through eventbus.validate().")
    ap.add_argument("--dsn", default="", help="libpq connection string (default: the PG* environment)")
    ap.add_argument("--suite-dir", default=os.environ.get("EB_JSONSCHEMA_SUITE") or DEFAULT_SUITE,
                    help="the suite as JSON lines (default: $EB_JSONSCHEMA_SUITE, else %s)" % DEFAULT_SUITE)
    ap.add_argument("--draft", type=norm_draft, default=list(DRAFTS), help="2020-12, 7 or both (default)")
    ap.add_argument("--expected", default=os.path.join(HERE, "expected.txt"),
                    help="the baseline (default: expected.txt next to this script)")
    ap.add_argument("--write-expected", action="store_true", help="rewrite the baseline from this run")
    ap.add_argument("--batch-size", type=int, default=100, help="lines per round trip (100)")
    ap.add_argument("--timeout", type=int, default=10, help="seconds one line may take (10)")
    ap.add_argument("--keep-remotes", action="store_true", help="leave the remotes registered after the run")
    ap.add_argument("--no-inject-schema", action="store_true",
                    help="do not add the draft-07 \"$schema\" to draft-07 schemas")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every failing test")
    args = ap.parse_args()

    suite = args.suite_dir
    if not os.path.isdir(suite):
        die("no JSON Schema Test Suite at %s: pass --suite-dir DIR or set EB_JSONSCHEMA_SUITE "
            "(the directory with draft2020-12.jsonl, draft7.jsonl and remotes/)" % suite)
    drafts = [d for d in DRAFTS if d in args.draft]
    for d in drafts:
        if not os.path.isfile(os.path.join(suite, d + ".jsonl")):
            die("%s has no %s.jsonl" % (suite, d))
    if not os.path.isdir(os.path.join(suite, "remotes")):
        die("%s has no remotes/ directory" % suite)

    started = time.time()
    db = Db(args.dsn, args.timeout)
    try:
        db.connect()
    except psycopg2.Error as e:
        die("cannot connect (%s): %s" % (args.dsn or "PG* environment", one_line(e)))
    check_extension(db)

    inject = not args.no_inject_schema
    registered, skipped = register_remotes(db, suite, drafts, inject)
    print("remotes: %d registered, %d rejected" % (len(registered), len(skipped)))
    for uri, msg in skipped:
        print("  remote not registered: %s: %s" % (uri, msg))

    by_draft = {}
    try:
        for draft in drafts:
            with open(os.path.join(suite, draft + ".jsonl"), encoding="utf-8") as f:
                tests = [Test(draft, line.rstrip("\n")) for line in f if line.strip()]
            dialect = DRAFT7_URI if (draft == "draft7" and inject) else None
            run_tests(db, tests, dialect, max(1, args.batch_size), args.timeout)
            by_draft[draft] = tests
    finally:
        if not args.keep_remotes:
            drop_remotes(db, registered)

    # Per file, per draft.
    for draft in drafts:
        tests = by_draft[draft]
        print("\n%s" % draft)
        files = {}
        for t in tests:
            p, n = files.get(t.file, (0, 0))
            files[t.file] = (p + t.passed, n + 1)
        for name in sorted(files):
            p, n = files[name]
            print("  %-45s %4d/%-4d%s" % (name, p, n, "" if p == n else "  (%d failing)" % (n - p)))
        passed = sum(t.passed for t in tests)
        print("  %-45s %4d/%-4d (%.1f%%)" % ("total", passed, len(tests), 100.0 * passed / max(1, len(tests))))
        if args.verbose:
            for t in tests:
                if not t.passed:
                    print("  " + fail_line(t))

    summary = "conformance: " + ", ".join(
        "%s %d/%d (%.1f%%)" % (d, sum(t.passed for t in by_draft[d]), len(by_draft[d]),
                               100.0 * sum(t.passed for t in by_draft[d]) / max(1, len(by_draft[d])))
        for d in drafts)

    old_totals, old_fails = {}, {}
    have_expected = os.path.isfile(args.expected)
    if have_expected:
        old_totals, old_fails = read_expected(args.expected)

    print()
    if args.write_expected:
        write_expected(args.expected, by_draft, old_totals, old_fails, skipped)
        print("wrote %s" % args.expected)
        print("(%.1f s)" % (time.time() - started))
        print(summary)
        return 0

    status = 0
    if not have_expected:
        print("no baseline %s: run with --write-expected to create it" % args.expected)
        status = 1
    else:
        for draft in drafts:
            tests = by_draft[draft]
            passed = sum(t.passed for t in tests)
            names = {t.key() for t in tests}
            if draft not in old_totals:
                print("%s: no \"total %s\" line in %s" % (draft, draft, args.expected))
                status = 1
            elif passed < old_totals[draft]:
                print("REGRESSION: %s passes %d tests, %s records %d"
                      % (draft, passed, os.path.basename(args.expected), old_totals[draft]))
                status = 1
            elif passed > old_totals[draft]:
                print("%s passes %d tests, more than the recorded %d (update expected.txt)"
                      % (draft, passed, old_totals[draft]))
            for t in tests:
                if not t.passed and t.key() not in old_fails:
                    print("NEW FAILURE %s %s | %s | %s | %s" % (t.key() + (t.reason,)))
                    status = 1
            for t in tests:
                if t.passed and t.key() in old_fails:
                    print("now passes (update expected.txt): %s %s | %s | %s" % t.key())
            for k in old_fails:
                if k[0] == draft and k not in names:
                    print("not in the suite (stale line in expected.txt): %s %s | %s | %s" % k)
    print("(%.1f s)" % (time.time() - started))
    print(summary)
    return status


if __name__ == "__main__":
    sys.exit(main())
