#!/usr/bin/env python3
"""A webhook receiver for the tests of the HTTP relay (docs/testing.md,
"The webhook test server").

Python standard library only; listens on 127.0.0.1 only. It records every
request (JSON lines in --log, and in memory for GET /_requests), verifies
Standard Webhooks signatures against the configured secrets (401 when none
matches), and answers with the faults a test asks for at run time through
POST /_control.

    server.py [--port 0] [--log FILE] [--secret whsec_...]... [--tolerance 300]
              [--accept-unsigned]

The first line on stdout is "listening <port>". SIGTERM or SIGINT stops it.
"""

import argparse
import base64
import binascii
import fnmatch
import hashlib
import hmac
import json
import signal
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONTROL_PATH = "/_control"
REQUESTS_PATH = "/_requests"


def secret_key(secret):
    """Returns the HMAC key of a secret: the base64 after "whsec_"."""
    if secret.startswith("whsec_"):
        secret = secret[len("whsec_"):]
    return base64.b64decode(secret, validate=True)


def sign(secret, msg_id, timestamp, body):
    """Returns the Standard Webhooks signature "v1,<base64>" of a message."""
    if isinstance(body, str):
        body = body.encode()
    signed = b"%s.%s.%s" % (str(msg_id).encode(), str(timestamp).encode(), body)
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secrets, headers, body, tolerance, now=None):
    """Checks the webhook-* headers against the secrets; returns (ok, why).

    headers maps lower-case names to values. ok is True when a v1 signature
    of the header matches one of the secrets and the timestamp is within
    tolerance seconds of now; why says what failed (None when ok).
    """
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    header = headers.get("webhook-signature")
    for name, value in (("webhook-id", msg_id), ("webhook-timestamp", stamp),
                        ("webhook-signature", header)):
        if not value:
            return False, "missing header %s" % name
    try:
        ts = int(stamp)
    except ValueError:
        return False, "webhook-timestamp is not an integer: %r" % stamp
    now = time.time() if now is None else now
    if abs(now - ts) > tolerance:
        return False, "webhook-timestamp %d is %d s away from now (tolerance %d s)" % (
            ts, int(now - ts), tolerance)
    given = [s.split(",", 1)[1] for s in header.split()
             if s.startswith("v1,")]
    if not given:
        return False, "no v1 signature in webhook-signature"
    for secret in secrets:
        expected = sign(secret, msg_id, stamp, body).split(",", 1)[1]
        for sig in given:
            if hmac.compare_digest(expected.encode(), sig.encode()):
                return True, None
    return False, "no signature matches the %d secret(s)" % len(secrets)


def events_of(headers, body):
    """Returns the CloudEvents of a request as [{id, type, source}]: one from
    the ce-* headers (binary mode), one from a structured body, or one per
    element of a batch."""
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    if "ce-id" in headers or "ce-type" in headers:
        return [{"id": headers.get("ce-id"), "type": headers.get("ce-type"),
                 "source": headers.get("ce-source")}]
    if ctype in ("application/cloudevents+json",
                 "application/cloudevents-batch+json"):
        try:
            doc = json.loads(body)
        except ValueError:
            return []
        docs = doc if isinstance(doc, list) else [doc]
        return [{"id": d.get("id"), "type": d.get("type"),
                 "source": d.get("source")}
                for d in docs if isinstance(d, dict)]
    return []


class Rule:
    """One fault: what it matches and how it answers.

    Matches (all given must hold): path (glob), ce_type (glob), ce_id
    (exact; for a batch, any event of it), method. count: how many matching
    requests it applies to (none: until reset). Answer: status (200), body
    (or body_hex: the bytes of a hex string, for bodies that are no UTF-8),
    retry_after (the Retry-After header), headers (more headers), delay
    (seconds to wait first), close (close the connection without an answer),
    reset (close it with a TCP RST).
    """

    FIELDS = {"path", "ce_type", "ce_id", "method", "count", "status", "body", "body_hex",
              "retry_after", "headers", "delay", "close", "reset", "name"}

    def __init__(self, spec):
        unknown = set(spec) - self.FIELDS
        if unknown:
            raise ValueError("unknown rule field(s): %s" % ", ".join(sorted(unknown)))
        self.spec = dict(spec)
        self.remaining = spec.get("count")
        if self.remaining is not None and (not isinstance(self.remaining, int)
                                           or self.remaining < 1):
            raise ValueError("count must be a positive integer")
        status = spec.get("status", 200)
        if not isinstance(status, int) or not 200 <= status <= 599:
            raise ValueError("status must be an integer from 200 to 599")

    def matches(self, method, path, events):
        """Says whether the rule applies to a request."""
        s = self.spec
        if "method" in s and s["method"].upper() != method:
            return False
        if "path" in s and not fnmatch.fnmatchcase(path, s["path"]):
            return False
        if "ce_type" in s and not any(
                e.get("type") is not None
                and fnmatch.fnmatchcase(e["type"], s["ce_type"]) for e in events):
            return False
        if "ce_id" in s and not any(e.get("id") == s["ce_id"] for e in events):
            return False
        return True

    def state(self):
        """Returns the rule as shown by GET /_control."""
        d = dict(self.spec)
        d["remaining"] = self.remaining
        return d


class Receiver:
    """The server's state: settings, fault rules, recorded requests."""

    def __init__(self, secrets, tolerance, accept_unsigned, log_path):
        self.lock = threading.Lock()
        self.secrets = list(secrets)
        self.tolerance = tolerance
        self.accept_unsigned = accept_unsigned
        self.rules = []
        self.requests = []
        self.seq = 0
        self.log = open(log_path, "a", encoding="utf-8") if log_path else None
        self.initial = (list(secrets), tolerance, accept_unsigned)

    def control(self, cmd):
        """Applies a control command (a JSON object); returns the state."""
        if not isinstance(cmd, dict):
            raise ValueError("the control body must be a JSON object")
        known = {"reset", "clear", "rule", "rules", "accept_unsigned",
                 "secrets", "tolerance"}
        unknown = set(cmd) - known
        if unknown:
            raise ValueError("unknown control key(s): %s" % ", ".join(sorted(unknown)))
        new_rules = []
        if "rule" in cmd:
            new_rules.append(Rule(cmd["rule"]))
        for spec in cmd.get("rules", []):
            new_rules.append(Rule(spec))
        secrets = cmd.get("secrets")
        if secrets is not None:
            for s in secrets:
                secret_key(s)
        tolerance = int(cmd["tolerance"]) if "tolerance" in cmd else None
        with self.lock:
            if cmd.get("reset"):
                self.rules = []
                secrets0, self.tolerance, self.accept_unsigned = self.initial
                self.secrets = list(secrets0)
            if cmd.get("clear"):
                self.requests = []
            self.rules.extend(new_rules)
            if "accept_unsigned" in cmd:
                self.accept_unsigned = bool(cmd["accept_unsigned"])
            if secrets is not None:
                self.secrets = list(secrets)
            if tolerance is not None:
                self.tolerance = tolerance
            return self.state_locked()

    def state_locked(self):
        """Returns the state shown by the control endpoint (lock held)."""
        return {"rules": [r.state() for r in self.rules],
                "accept_unsigned": self.accept_unsigned,
                "secrets": len(self.secrets),
                "tolerance": self.tolerance,
                "requests": len(self.requests),
                "seq": self.seq}

    def decide(self, method, path, headers, body):
        """Verifies a request and picks its answer; returns (verified, why,
        rule spec or None); consumes one use of the rule."""
        with self.lock:
            secrets = list(self.secrets)
            tolerance = self.tolerance
            accept_unsigned = self.accept_unsigned
        if secrets:
            verified, why = verify(secrets, headers, body, tolerance)
        else:
            verified, why = None, "no secret configured"
        if verified is False and not accept_unsigned:
            return verified, why, {"status": 401, "body": why + "\n",
                                   "name": "signature"}
        events = events_of(headers, body)
        with self.lock:
            for rule in self.rules:
                if rule.matches(method, path, events):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining == 0:
                            self.rules.remove(rule)
                    return verified, why, dict(rule.spec)
        return verified, why, None

    def record(self, entry):
        """Numbers a request's record, keeps it and appends it to the log."""
        with self.lock:
            self.seq += 1
            entry["seq"] = self.seq
            self.requests.append(entry)
            if self.log:
                self.log.write(json.dumps(entry, sort_keys=True) + "\n")
                self.log.flush()


class Handler(BaseHTTPRequestHandler):
    """Answers one request: the control API, or a recorded delivery."""

    protocol_version = "HTTP/1.1"
    server_version = "eventbus-webhook-test/1"

    def setup(self):
        """Turns Nagle off: with delayed ACKs it costs 40 ms a request."""
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt, *args):
        """Keeps stderr quiet: the log file has every request."""

    def reply(self, status, body=b"", headers=None, ctype="text/plain"):
        """Sends a complete answer with a Content-Length."""
        if isinstance(body, str):
            body = body.encode()
        if status in (204, 304):
            body = b""
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, str(value))
        if status not in (204, 304):
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        # Headers and body in one write (one segment for a small answer).
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(body)
        self.flush_headers()

    def reply_json(self, status, doc):
        """Sends a JSON answer."""
        self.reply(status, json.dumps(doc) + "\n",
                   ctype="application/json")

    def read_body(self):
        """Reads the request body (Content-Length or chunked)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def handle_any(self):
        """Routes a request of any method."""
        received = time.time()
        body = self.read_body()
        path = self.path.split("?", 1)[0]
        receiver = self.server.receiver
        if path == CONTROL_PATH:
            if self.command == "GET":
                with receiver.lock:
                    return self.reply_json(200, receiver.state_locked())
            try:
                state = receiver.control(json.loads(body or b"{}"))
            except (ValueError, TypeError, binascii.Error) as e:
                return self.reply_json(400, {"error": str(e)})
            return self.reply_json(200, state)
        if path == REQUESTS_PATH:
            if self.command == "DELETE":
                receiver.control({"clear": True})
                return self.reply_json(200, [])
            since = 0
            for part in self.path.partition("?")[2].split("&"):
                if part.startswith("since="):
                    since = int(part[6:])
            with receiver.lock:
                found = [r for r in receiver.requests if r["seq"] > since]
            return self.reply_json(200, found)
        self.deliver(received, path, body)

    def deliver(self, received, path, body):
        """Verifies, records and answers a delivery as the rules say."""
        receiver = self.server.receiver
        headers = {}
        for name, value in self.headers.items():
            name = name.lower()
            headers[name] = headers[name] + ", " + value if name in headers else value
        verified, why, rule = receiver.decide(self.command, path, headers, body)
        rule = rule or {}
        entry = {
            "time": received,
            "method": self.command,
            "path": path,
            "query": self.path.partition("?")[2],
            "headers": headers,
            "events": events_of(headers, body),
            "verified": verified,
            "verify_error": why if verified is False else None,
            "rule": rule.get("name"),
            "delay": rule.get("delay", 0),
        }
        try:
            entry["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            entry["body"] = None
            entry["body_base64"] = base64.b64encode(body).decode()
        if rule.get("close") or rule.get("reset"):
            entry["answer"] = "reset" if rule.get("reset") else "close"
            entry["status"] = None
        else:
            entry["answer"] = "status"
            entry["status"] = rule.get("status", 200)
        # Recorded before the delay: a test sees a hung request at once.
        receiver.record(entry)
        if rule.get("delay"):
            time.sleep(float(rule["delay"]))
        if entry["answer"] != "status":
            self.close_connection = True
            if entry["answer"] == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        extra = dict(rule.get("headers") or {})
        if "retry_after" in rule:
            extra["Retry-After"] = rule["retry_after"]
        status = entry["status"]
        default = "ok\n" if status < 300 else "status %d\n" % status
        body = rule.get("body", default)
        if "body_hex" in rule:
            body = bytes.fromhex(rule["body_hex"])
        self.reply(status, body, extra)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = handle_any


class Server(ThreadingHTTPServer):
    """The HTTP server; hung handlers must not hold up the exit."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        """Stays quiet when a client went away (a hang past its timeout)."""
        if isinstance(sys.exc_info()[1], (ConnectionError, socket.timeout)):
            return
        super().handle_error(request, client_address)


def main(argv=None):
    """Parses the command line, listens, and serves until SIGTERM."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=0,
                   help="port on 127.0.0.1 (0: an ephemeral one)")
    p.add_argument("--log", help="JSON-lines file, one line per request")
    p.add_argument("--secret", action="append", default=[],
                   help="whsec_<base64 key>; repeat for rotation (any verifies)")
    p.add_argument("--tolerance", type=int, default=300,
                   help="seconds of webhook-timestamp skew allowed (300)")
    p.add_argument("--accept-unsigned", action="store_true",
                   help="answer requests whose signature fails as if it verified")
    args = p.parse_args(argv)
    for s in args.secret:
        try:
            secret_key(s)
        except (ValueError, binascii.Error):
            p.error("--secret %s: not whsec_ followed by base64" % s)
    server = Server(("127.0.0.1", args.port), Handler)
    server.receiver = Receiver(args.secret, args.tolerance,
                               args.accept_unsigned, args.log)

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("listening %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
