#!/usr/bin/env python3
"""Tests of the webhook test server (test/webhook/server.py): its signature
check against the Standard Webhooks test vector, and each fault mode through
a real server on 127.0.0.1. Python standard library only; a few seconds.

    python3 test/webhook/test_server.py [-v]
"""

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import server  # noqa: E402

# The test vector of the Standard Webhooks reference libraries.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = '{"test": 2432232314}'
VECTOR_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SECRET_A = "whsec_" + "c2VjcmV0LWEtZm9yLXRoZS13ZWJob29rLXRlc3Q="
SECRET_B = "whsec_" + "c2VjcmV0LWItZm9yLXRoZS13ZWJob29rLXRlc3Q="
SECRET_X = "whsec_" + "bm90LWEtc2VjcmV0LW9mLXRoZS1zZXJ2ZXI="


class VectorTest(unittest.TestCase):
    """The signature code against the known vector, without a server."""

    def test_vector_signature(self):
        """sign() gives the vector's signature"""
        self.assertEqual(server.sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS,
                                     VECTOR_BODY), VECTOR_SIG)

    def test_vector_verifies(self):
        """verify() accepts the vector, alone and beside another signature"""
        headers = {"webhook-id": VECTOR_ID,
                   "webhook-timestamp": str(VECTOR_TS),
                   "webhook-signature": VECTOR_SIG}
        ok, why = server.verify([VECTOR_SECRET], headers, VECTOR_BODY.encode(),
                                300, now=VECTOR_TS + 10)
        self.assertTrue(ok, why)
        headers["webhook-signature"] = "v1,Zm9v " + VECTOR_SIG
        ok, why = server.verify([SECRET_A, VECTOR_SECRET], headers,
                                VECTOR_BODY.encode(), 300, now=VECTOR_TS)
        self.assertTrue(ok, why)

    def test_vector_tampered(self):
        """verify() refuses the vector with a changed body, id or timestamp"""
        base = {"webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TS),
                "webhook-signature": VECTOR_SIG}
        cases = [(dict(base), '{"test": 2432232315}'),
                 (dict(base, **{"webhook-id": VECTOR_ID + "x"}), VECTOR_BODY),
                 (dict(base, **{"webhook-timestamp": str(VECTOR_TS + 1)}), VECTOR_BODY)]
        for headers, body in cases:
            ok, _ = server.verify([VECTOR_SECRET], headers, body.encode(), 300,
                                  now=VECTOR_TS)
            self.assertFalse(ok, headers)


class ServerTest(unittest.TestCase):
    """A server process, started once, reset before each test."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.log = os.path.join(cls.tmp.name, "requests.jsonl")
        cls.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "server.py"), "--log", cls.log,
             "--secret", SECRET_A, "--secret", SECRET_B, "--tolerance", "300"],
            stdout=subprocess.PIPE, text=True)
        line = cls.proc.stdout.readline()
        if not line.startswith("listening "):
            cls.proc.kill()
            raise RuntimeError("server.py printed %r" % line)
        cls.port = int(line.split()[1])

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait(10)
        cls.proc.stdout.close()
        cls.tmp.cleanup()

    def setUp(self):
        self.control({"reset": True, "clear": True})

    def http(self, method, path, body=b"", headers=None, timeout=5):
        """Sends one request on a new connection; returns (status, headers,
        body) of the answer."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body, headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def control(self, cmd):
        """POSTs a control command; returns the state."""
        status, _, body = self.http("POST", "/_control", json.dumps(cmd))
        self.assertEqual(status, 200, body)
        return json.loads(body)

    def requests(self):
        """Returns the recorded requests (GET /_requests)."""
        status, _, body = self.http("GET", "/_requests")
        self.assertEqual(status, 200)
        return json.loads(body)

    def deliver(self, ce_id="ev-1", ce_type="orders.created", body=None,
                secrets=(SECRET_A,), timestamp=None, path="/hook", timeout=5,
                extra=None):
        """POSTs one event as the relay will (CloudEvents binary mode, signed
        with each of secrets); returns (status, headers, body)."""
        body = body if body is not None else json.dumps({"id": ce_id, "n": 1})
        ts = int(time.time()) if timestamp is None else timestamp
        headers = {
            "ce-id": ce_id, "ce-type": ce_type, "ce-source": "/eventbus/test",
            "ce-time": "2026-12-03T19:00:00Z", "ce-specversion": "1.0",
            "content-type": "application/json",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "webhook-id": ce_id, "webhook-timestamp": str(ts),
            "webhook-signature": " ".join(server.sign(s, ce_id, ts, body)
                                          for s in secrets),
        }
        headers.update(extra or {})
        return self.http("POST", path, body.encode(), headers, timeout=timeout)

    def test_signed_accepted(self):
        """a signed request gets 200 and is recorded as verified"""
        status, _, _ = self.deliver()
        self.assertEqual(status, 200)
        [r] = self.requests()
        self.assertTrue(r["verified"])
        self.assertEqual(r["status"], 200)
        self.assertEqual(r["events"], [{"id": "ev-1", "type": "orders.created",
                                        "source": "/eventbus/test"}])

    def test_wrong_signature(self):
        """a wrong signature, or none, gets 401 unless accept_unsigned"""
        status, _, body = self.deliver(secrets=(SECRET_X,))
        self.assertEqual(status, 401)
        self.assertIn(b"no signature matches", body)
        status, _, _ = self.http("POST", "/hook", b"{}",
                                 {"content-type": "application/json"})
        self.assertEqual(status, 401)
        self.control({"accept_unsigned": True})
        status, _, _ = self.deliver(secrets=(SECRET_X,))
        self.assertEqual(status, 200)
        rs = self.requests()
        self.assertEqual([r["status"] for r in rs], [401, 401, 200])
        self.assertEqual([r["verified"] for r in rs], [False, False, False])
        self.assertEqual(rs[1]["verify_error"], "missing header webhook-id")

    def test_rotation(self):
        """with two secrets, either one verifies, and a header with both"""
        for secrets in ((SECRET_A,), (SECRET_B,), (SECRET_X, SECRET_B),
                        (SECRET_A, SECRET_B)):
            status, _, _ = self.deliver(secrets=secrets)
            self.assertEqual(status, 200, secrets)
        self.assertTrue(all(r["verified"] for r in self.requests()))

    def test_timestamp_tolerance(self):
        """a timestamp more than the tolerance away gets 401"""
        now = int(time.time())
        self.assertEqual(self.deliver(timestamp=now - 400)[0], 401)
        self.assertEqual(self.deliver(timestamp=now + 400)[0], 401)
        self.assertEqual(self.deliver(timestamp=now - 200)[0], 200)
        self.assertIn("tolerance 300", self.requests()[0]["verify_error"])

    def test_status_500_next_k(self):
        """500 for the next 2 requests, then 200 again"""
        self.control({"rule": {"status": 500, "count": 2}})
        got = [self.deliver(ce_id="e%d" % i)[0] for i in range(3)]
        self.assertEqual(got, [500, 500, 200])

    def test_status_429_retry_after(self):
        """429 with a Retry-After header"""
        self.control({"rule": {"status": 429, "retry_after": 7, "count": 1}})
        status, headers, _ = self.deliver()
        self.assertEqual(status, 429)
        self.assertEqual(headers.get("retry-after"), "7")

    def test_body_hex(self):
        """body_hex answers with those bytes, UTF-8 or not"""
        self.control({"rule": {"status": 400, "body_hex": "c3a920e9e9", "count": 1}})
        status, _, body = self.deliver()
        self.assertEqual((status, body), (400, b"\xc3\xa9 \xe9\xe9"))

    def test_status_204(self):
        """204 comes without a body, and the connection stays usable"""
        self.control({"rule": {"status": 204, "count": 1}})
        status, _, body = self.deliver()
        self.assertEqual((status, body), (204, b""))

    def test_status_400_body(self):
        """400 with the body text asked for"""
        self.control({"rule": {"status": 400, "body": "bad payload: no field x"}})
        status, _, body = self.deliver()
        self.assertEqual((status, body), (400, b"bad payload: no field x"))

    def test_match_type_id_path(self):
        """rules by ce-type, ce-id and path apply only to what they match"""
        self.control({"rules": [{"ce_type": "orders.*", "status": 410},
                                {"ce_id": "poison", "status": 422},
                                {"path": "/down/*", "status": 503}]})
        self.assertEqual(self.deliver(ce_type="orders.paid")[0], 410)
        self.assertEqual(self.deliver(ce_type="users.new")[0], 200)
        self.assertEqual(self.deliver(ce_id="poison", ce_type="users.new")[0], 422)
        self.assertEqual(self.deliver(ce_type="users.new", path="/down/x")[0], 503)
        self.assertEqual(len(self.control({})["rules"]), 3)
        self.control({"reset": True})
        self.assertEqual(self.deliver(ce_type="orders.paid")[0], 200)

    def test_batch_match(self):
        """a batch request: events from the body, a rule by ce_id matches it"""
        self.control({"rule": {"ce_id": "b2", "status": 500}})
        body = json.dumps([{"specversion": "1.0", "id": i, "type": "t",
                            "source": "/s", "data": {}} for i in ("b1", "b2")])
        status, _, _ = self.deliver(ce_id="batch-1", body=body, extra={
            "content-type": "application/cloudevents-batch+json"})
        # The ce-* headers of deliver() win; without them the body counts.
        self.assertEqual(status, 200)
        ts = int(time.time())
        headers = {"content-type": "application/cloudevents-batch+json",
                   "webhook-id": "batch-2", "webhook-timestamp": str(ts),
                   "webhook-signature": server.sign(SECRET_A, "batch-2", ts, body)}
        status, _, _ = self.http("POST", "/hook", body.encode(), headers)
        self.assertEqual(status, 500)
        self.assertEqual([e["id"] for e in self.requests()[-1]["events"]],
                         ["b1", "b2"])

    def test_hang(self):
        """a delay past the client's timeout: the client times out; the
        request is recorded at once"""
        self.control({"rule": {"delay": 2, "count": 1}})
        t0 = time.time()
        with self.assertRaises(socket.timeout):
            self.deliver(timeout=0.5)
        self.assertLess(time.time() - t0, 1.5)
        [r] = self.requests()
        self.assertEqual((r["delay"], r["status"]), (2, 200))
        self.assertEqual(self.deliver(ce_id="ev-2")[0], 200)

    def test_close(self):
        """close: the connection ends without an answer; reset: with RST"""
        for how in ("close", "reset"):
            self.control({"rule": {how: True, "count": 1}})
            with self.assertRaises((http.client.RemoteDisconnected,
                                    ConnectionResetError)):
                self.deliver()
        self.assertEqual([r["answer"] for r in self.requests()],
                         ["close", "reset"])
        self.assertEqual(self.deliver()[0], 200)

    def test_keep_alive(self):
        """several requests on one connection (libcurl reuses them)"""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        self.control({"rule": {"status": 500, "count": 1},
                      "accept_unsigned": True})
        try:
            got = []
            for i in range(3):
                conn.request("POST", "/hook", b"{}",
                             {"content-type": "application/json"})
                r = conn.getresponse()
                r.read()
                got.append(r.status)
                if i == 0:
                    sock = conn.sock
            self.assertIs(conn.sock, sock)
        finally:
            conn.close()
        self.assertEqual(got, [500, 200, 200])

    def test_bad_control(self):
        """an unknown control key or rule field gets 400"""
        for cmd in ({"nope": 1}, {"rule": {"stauts": 500}},
                    {"rule": {"status": 1000}}, {"rule": {"status": 101}},
                    {"rule": {"count": 0}}, {"secrets": ["whsec_!!"]}):
            status, _, _ = self.http("POST", "/_control", json.dumps(cmd))
            self.assertEqual(status, 400, cmd)

    def test_log_file(self):
        """the JSON-lines log has each request as it was sent"""
        before = time.time()
        body = json.dumps({"order": 42, "text": "caf\u00e9"})
        self.deliver(ce_id="log-1", body=body, path="/hooks/orders?x=1")
        self.control({"rule": {"status": 500, "count": 1}})
        self.deliver(ce_id="log-2")
        with open(self.log, encoding="utf-8") as f:
            lines = [json.loads(line) for line in f]
        first, second = [l for l in lines if l["headers"].get("ce-id") in
                         ("log-1", "log-2")]
        self.assertEqual(first["body"], body)
        self.assertEqual((first["method"], first["path"], first["query"]),
                         ("POST", "/hooks/orders", "x=1"))
        h = first["headers"]
        for name in ("ce-id", "ce-type", "ce-source", "ce-time",
                     "ce-specversion", "content-type", "traceparent",
                     "webhook-id", "webhook-timestamp", "webhook-signature"):
            self.assertIn(name, h)
        self.assertEqual(h["webhook-id"], "log-1")
        self.assertTrue(first["verified"])
        self.assertGreaterEqual(first["time"], before)
        self.assertLessEqual(first["time"], second["time"])
        self.assertEqual((first["status"], second["status"]), (200, 500))
        self.assertEqual(second["seq"], first["seq"] + 1)


if __name__ == "__main__":
    unittest.main()
