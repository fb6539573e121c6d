"""Drives a running Herald with the official Svix Python SDK, unchanged.

Run by tests/integration/sdk.rs with HERALD_URL and HERALD_TOKEN set. Every delivery that
reaches the local receivers is verified with the SDK's own `Webhook` class.
"""

import http.server
import json
import os
import sys
import threading
import time

import httpx
from svix.api import (
    ApplicationIn,
    ApplicationListOptions,
    EndpointIn,
    EndpointSecretRotateIn,
    EventTypeIn,
    MessageIn,
    OperationalWebhookEndpointHeadersIn,
    OperationalWebhookEndpointIn,
    OperationalWebhookEndpointSecretIn,
    OperationalWebhookEndpointUpsertIn,
    Svix,
    SvixOptions,
)
from svix.webhooks import Webhook, WebhookVerificationError

URL = os.environ["HERALD_URL"]
TOKEN = os.environ["HERALD_TOKEN"]
WAIT = 20.0


class Receiver:
    """A local HTTP server that records every request; fails while `failing` is set."""

    def __init__(self):
        self.requests = []
        self.failing = False
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with outer.lock:
                    outer.requests.append((dict(self.headers.items()), body))
                    failing = outer.failing
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def received(self):
        with self.lock:
            return list(self.requests)

    def wait_for(self, predicate, what):
        deadline = time.time() + WAIT
        while time.time() < deadline:
            found = [r for r in self.received() if predicate(r)]
            if found:
                return found
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}; got {len(self.received())} requests")


def msg_id_is(msg_id):
    return lambda r: r[0].get("webhook-id") == msg_id


def verify(secret, request):
    headers, body = request
    Webhook(secret).verify(body, headers)  # raises WebhookVerificationError


def wait(predicate, what):
    deadline = time.time() + WAIT
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def operational_webhooks(svix, app):
    """Herald's own events, to an endpoint made with the SDK, verified with its Webhook class."""
    ops = Receiver()
    op = svix.operational_webhook.endpoint.create(
        OperationalWebhookEndpointIn(url=ops.url, event_types=["endpoint.created", "endpoint.deleted"], uid="ops")
    )
    assert op.id.startswith("ep_") and op.event_types == ["endpoint.created", "endpoint.deleted"], op
    assert svix.operational_webhook.endpoint.get("ops").id == op.id
    assert [e.id for e in svix.operational_webhook.endpoint.list().data] == [op.id]
    svix.operational_webhook.endpoint.set_headers(op.id, OperationalWebhookEndpointHeadersIn(headers={"x-team": "payments"}))
    assert svix.operational_webhook.endpoint.get_headers(op.id).headers == {"x-team": "payments"}
    old_secret = svix.operational_webhook.endpoint.get_secret(op.id).key
    svix.operational_webhook.endpoint.rotate_secret(op.id, OperationalWebhookEndpointSecretIn())
    secret = svix.operational_webhook.endpoint.get_secret(op.id).key
    assert secret != old_secret

    created = svix.endpoint.create(app.id, EndpointIn(url=ops.url + "/not-ops", uid="watched"))
    svix.endpoint.delete(app.id, created.id)
    seen = ops.wait_for(lambda r: r[0].get("x-team") == "payments" and b"endpoint.deleted" in r[1], "endpoint.deleted")
    events = []
    for headers, body in ops.received():
        if headers.get("x-team"):
            Webhook(secret).verify(body, headers)  # raises WebhookVerificationError
            events.append(json.loads(body))
    assert [e["type"] for e in events] == ["endpoint.created", "endpoint.deleted"], events
    for event in events:
        assert event["data"]["appId"] == app.id and event["data"]["endpointId"] == created.id, event
        assert event["data"]["endpointUid"] == "watched", event
    assert seen

    upserted = svix.operational_webhook.endpoint.upsert(op.id, OperationalWebhookEndpointUpsertIn(url=ops.url, uid="ops"))
    assert upserted.event_types is None, upserted
    svix.operational_webhook.endpoint.delete(op.id)
    assert svix.operational_webhook.endpoint.list().data == []


def main():
    svix = Svix(TOKEN, SvixOptions(server_url=URL))
    herald = httpx.Client(base_url=URL, headers={"authorization": f"Bearer {TOKEN}"})
    good, flaky = Receiver(), Receiver()

    svix.event_type.create(EventTypeIn(name="payment.confirmed", description="A payment was confirmed"))
    app = svix.application.create(ApplicationIn(name="Acme Payments", uid="acme"))
    assert app.id.startswith("app_"), app.id
    again = svix.application.get_or_create(ApplicationIn(name="Acme Payments", uid="acme"))
    assert again.id == app.id

    endpoint = svix.endpoint.create(app.id, EndpointIn(url=good.url, event_types=["payment.confirmed"]))
    assert endpoint.id.startswith("ep_")
    secret = svix.endpoint.get_secret(app.id, endpoint.id).key

    # Deliveries verify with the SDK's Webhook class.
    sent = []
    for i in range(3):
        msg = svix.message.create(app.id, MessageIn(event_type="payment.confirmed", payload={"payment": i, "status": "confirmed"}))
        assert msg.id.startswith("msg_")
        sent.append(msg)
    for msg in sent:
        request = good.wait_for(msg_id_is(msg.id), f"delivery of {msg.id}")[0]
        verify(secret, request)
        assert json.loads(request[1]) == {"payment": sent.index(msg), "status": "confirmed"}
    fetched = svix.message.get(app.id, sent[0].id)
    assert fetched.event_type == "payment.confirmed"

    # The attempt log.
    attempts = wait(lambda: svix.message_attempt.list_by_msg(app.id, sent[0].id).data, "an attempt")
    assert attempts[0].response_status_code == 204, attempts[0]
    assert attempts[0].status == 0, attempts[0]
    assert attempts[0].endpoint_id == endpoint.id

    # Rotation: during the grace period both the old and the new secret verify.
    new_secret = svix.endpoint.rotate_secret(app.id, endpoint.id, EndpointSecretRotateIn()).key
    assert new_secret != secret and new_secret.startswith("whsec_")
    assert svix.endpoint.get_secret(app.id, endpoint.id).key == new_secret
    msg = svix.message.create(app.id, MessageIn(event_type="payment.confirmed", payload={"after": "rotation"}))
    request = good.wait_for(msg_id_is(msg.id), "delivery after rotation")[0]
    verify(secret, request)
    verify(new_secret, request)
    try:
        verify("whsec_" + "A" * 40, request)
        raise AssertionError("a wrong secret must not verify")
    except WebhookVerificationError:
        pass

    # A failing endpoint: the delivery dies after the (shortened) schedule.
    flaky.failing = True
    failing = svix.endpoint.create(app.id, EndpointIn(url=flaky.url, event_types=["payment.confirmed"]))
    flaky_secret = svix.endpoint.get_secret(app.id, failing.id).key
    msg = svix.message.create(app.id, MessageIn(event_type="payment.confirmed", payload={"doomed": True}))
    dead = wait(
        lambda: herald.get("/api/v1/dead-letter", params={"endpoint_id": failing.id}).json()["data"],
        "the dead letter",
    )
    assert dead[0]["msgId"] == msg.id, dead
    destinations = svix.message_attempt.list_attempted_destinations(app.id, msg.id).data
    assert {d.id: d.status for d in destinations}[failing.id] == 2  # fail

    # The receiver recovers; the dead letter is replayed and verifies.
    flaky.failing = False
    replay = herald.post(f"/api/v1/dead-letter/{dead[0]['id']}/replay")
    assert replay.status_code == 202, replay.text
    ok = wait(
        lambda: [r for r in flaky.received() if r[0].get("webhook-id") == msg.id and not flaky.failing][-1:]
        if any(a.status == 0 for a in svix.message_attempt.list_by_msg(app.id, msg.id).data) else None,
        "the replayed delivery",
    )
    verify(flaky_secret, ok[0])

    # Pagination over more than one page.
    for i in range(7):
        svix.application.create(ApplicationIn(name=f"Tenant {i}"))
    seen, iterator = [], None
    while True:
        page = svix.application.list(ApplicationListOptions(limit=3, iterator=iterator))
        seen.extend(a.id for a in page.data)
        if page.done:
            break
        iterator = page.iterator
    assert len(seen) == 8 and len(set(seen)) == 8, seen

    operational_webhooks(svix, app)

    print("svix SDK: all checks passed")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - report anything as a failure with context
        print(f"svix SDK test failed: {type(e).__name__}: {e}", file=sys.stderr)
        raise
