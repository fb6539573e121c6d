"""A receiver for Herald's webhooks that verifies them by hand, with the standard library only.

Run it with the endpoint's secret (PORT=0 picks a free port):

    WEBHOOK_SECRET=whsec_... PORT=8000 python3 receiver.py

It answers 200 to a genuine delivery (processing each webhook-id once) and 400, with the
reason, to anything else. The check itself is `verify`; with the design's test vector:

>>> verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
...        {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
...         "webhook-timestamp": "1614265330",
...         "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="},
...        b'{"test": 2432232314}', now=1614265330)
'msg_p5jXN8AQM9LWM0D4loKWxJek'
>>> verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
...        {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
...         "webhook-timestamp": "1614265330",
...         "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="},
...        b'{"test": 2432232314}', now=1614265330 + 301)
Traceback (most recent call last):
receiver.InvalidWebhook: webhook-timestamp is more than 5 minutes away from now
"""

import base64
import hashlib
import hmac
import http.server
import json
import os
import time

TOLERANCE_SECONDS = 5 * 60


class InvalidWebhook(Exception):
    """The request is not a genuine, fresh delivery signed with our secret."""


def verify(secret, headers, body, now=None):
    """Checks one delivery and returns its webhook-id, or raises InvalidWebhook.

    `headers` is anything with .get() (http.server's, Flask's and Django's are
    case-insensitive); `body` is the raw bytes received, before any JSON parsing.
    """
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (msg_id and timestamp and signatures):
        raise InvalidWebhook("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise InvalidWebhook("webhook-timestamp is not a unix time") from None
    now = time.time() if now is None else now
    if abs(now - sent_at) > TOLERANCE_SECONDS:
        raise InvalidWebhook("webhook-timestamp is more than 5 minutes away from now")

    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    # One "v1,<base64>" entry per secret Herald signs with (two during a rotation).
    for entry in signatures.split(" "):
        version, _, signature = entry.partition(",")
        if version == "v1" and hmac.compare_digest(signature.encode(), expected):
            return msg_id
    raise InvalidWebhook("no signature matches")


# Ids already processed. In production: a table with a unique key on webhook-id, written in
# the same transaction as the work the event causes.
processed = set()


def handle(event):
    """Your work. Keep it short, or queue it: Herald waits at most 15 s for the answer."""


def serve(verify):
    secret = os.environ["WEBHOOK_SECRET"]

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            try:
                msg_id = verify(secret, self.headers, body)
            except InvalidWebhook as e:
                return self.answer(400, f"rejected: {e}")
            if msg_id in processed:
                return self.answer(200, "already processed")
            handle(json.loads(body))
            processed.add(msg_id)
            self.answer(200, "processed")

        def answer(self, status, text):
            print(status, self.headers.get("webhook-id"), text, flush=True)
            self.send_response(status)
            self.send_header("content-type", "text/plain")
            self.end_headers()
            self.wfile.write(text.encode())

        def log_message(self, *args):
            pass  # `answer` prints one line per request instead

    server = http.server.HTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8000"))), Receiver)
    print(f"listening on http://127.0.0.1:{server.server_port}/webhooks", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    serve(verify)
