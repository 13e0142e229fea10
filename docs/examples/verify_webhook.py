#!/usr/bin/env python3
"""Verify cardiostream alert webhooks (standard library only).

Use verify() in your receiver: pass the raw request body (bytes, before any
JSON parsing) and the request headers. It raises WebhookError unless the
request is signed with your secret and was sent within `tolerance` seconds.
Then drop repeats: the same alert can arrive more than once (at-least-once
delivery), always with the same X-Cardiostream-Delivery id.

Run as a script it is also a small reference receiver, and a checker that
cardiostream's own tests run against signatures made by the Go code:

    WEBHOOK_SECRET=... python3 verify_webhook.py serve [port]
    WEBHOOK_SECRET=... python3 verify_webhook.py check BODY_FILE TIMESTAMP SIGNATURE [NOW]
"""

import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class WebhookError(Exception):
    """The request is not an authentic, fresh cardiostream webhook."""


def verify(secret: bytes, headers, body: bytes, now: float | None = None,
           tolerance: int = 300) -> None:
    timestamp = (headers.get("X-Cardiostream-Timestamp") or "").strip()
    if not timestamp:
        raise WebhookError("timestamp header missing")
    if not (timestamp.isascii() and timestamp.isdigit()):
        raise WebhookError("timestamp is not unix seconds")
    # The header may list several signatures (a key rotation); any v1 match is enough.
    entries = [e.strip() for e in (headers.get("X-Cardiostream-Signature") or "").split(",")]
    signatures = [e[len("v1="):].lower().encode("utf-8", "replace") for e in entries if e.startswith("v1=")]
    if not signatures:
        raise WebhookError("signature header missing")
    expected = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest().encode()
    # compare_digest takes constant time: no leak of how much of a guess matched.
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise WebhookError("signature does not match")
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > tolerance:
        raise WebhookError("timestamp outside tolerance")  # replayed or delayed


class Receiver(BaseHTTPRequestHandler):
    """Accepts verified alerts once each; answers 401 to anything unverified."""

    seen: set[str] = set()  # delivery ids already processed; persist this in production

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            verify(SECRET, self.headers, body)
        except WebhookError as err:
            self.send_response(401)
            self.end_headers()
            self.wfile.write(str(err).encode())
            return
        delivery = self.headers["X-Cardiostream-Delivery"]
        if delivery not in Receiver.seen:
            Receiver.seen.add(delivery)
            alert = json.loads(body)
            print(f"accepted {delivery} {alert['rule']} {alert['status']}", flush=True)
        # 2xx also for a repeat, so the sender stops retrying it.
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    SECRET = os.environ["WEBHOOK_SECRET"].encode()
    mode = sys.argv[1] if len(sys.argv) > 1 else "serve"
    if mode == "check":
        with open(sys.argv[2], "rb") as f:
            body = f.read()
        headers = {"X-Cardiostream-Timestamp": sys.argv[3], "X-Cardiostream-Signature": sys.argv[4]}
        now = float(sys.argv[5]) if len(sys.argv) > 5 else None
        try:
            verify(SECRET, headers, body, now=now)
        except WebhookError as err:
            print(f"rejected: {err}")
            sys.exit(1)
        print("ok")
    elif mode == "serve":
        server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2]) if len(sys.argv) > 2 else 8080), Receiver)
        print(f"listening {server.server_address[1]}", flush=True)
        server.serve_forever()
    else:
        sys.exit(__doc__)
