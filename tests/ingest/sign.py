"""Signs test requests for Herald's inbound-webhook tests with the providers' own libraries
where they publish one (stripe, slack_sdk, svix, standardwebhooks; cryptography for
Circle's ECDSA), and with Python's hmac module where they do not (Shopify, generic-hmac):
never with Herald's code.

Reads a JSON array of requests on stdin, writes a JSON array of answers:
  {"op": "sign", "scheme": ..., "secret": ..., "body": ..., "timestamp": int, "id": ...}
      -> {"headers": {...}}
  {"op": "circle-key"} -> {"private_pem": ..., "public_spki": base64 DER}
  {"op": "circle-sign", "private_pem": ..., "body": ...} -> {"signature": base64 DER}
"""

import base64
import hashlib
import hmac
import json
import sys
from datetime import datetime, timezone

import stripe
import svix.webhooks
import standardwebhooks.webhooks
from slack_sdk.signature import SignatureVerifier
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


def sign(r):
    scheme, secret, body = r["scheme"], r["secret"], r["body"]
    ts = r.get("timestamp")
    if scheme == "stripe":
        header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=ts)
        # The library checks its own header, as a Stripe receiver would.
        stripe.WebhookSignature.verify_header(body, header, secret, tolerance=None)
        return {"Stripe-Signature": header}
    if scheme == "slack":
        verifier = SignatureVerifier(secret)
        sig = verifier.generate_signature(timestamp=str(ts), body=body)
        return {"X-Slack-Signature": sig, "X-Slack-Request-Timestamp": str(ts)}
    if scheme in ("svix", "standard-webhooks"):
        when = datetime.fromtimestamp(ts, tz=timezone.utc)
        if scheme == "svix":
            sig = svix.webhooks.Webhook(secret).sign(r["id"], when, body)
            prefix = "svix"
        else:
            sig = standardwebhooks.webhooks.Webhook(secret).sign(r["id"], when, body)
            prefix = "webhook"
        return {f"{prefix}-id": r["id"], f"{prefix}-timestamp": str(ts), f"{prefix}-signature": sig}
    if scheme == "shopify":
        mac = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
        return {"X-Shopify-Hmac-Sha256": base64.b64encode(mac).decode()}
    if scheme == "generic-hmac":
        # The tests' generic scheme: sha512 of "{timestamp}.{body}", base64, "sha512=" prefix.
        mac = hmac.new(secret.encode(), f"{ts}.{body}".encode(), hashlib.sha512).digest()
        return {"X-Signature": "sha512=" + base64.b64encode(mac).decode(), "X-Timestamp": str(ts)}
    raise ValueError(scheme)


def answer(r):
    op = r.get("op", "sign")
    if op == "sign":
        return {"headers": sign(r)}
    if op == "circle-key":
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        spki = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {"private_pem": pem, "public_spki": base64.b64encode(spki).decode()}
    if op == "circle-sign":
        key = serialization.load_pem_private_key(r["private_pem"].encode(), password=None)
        sig = key.sign(r["body"].encode(), ec.ECDSA(hashes.SHA256()))
        return {"signature": base64.b64encode(sig).decode()}
    raise ValueError(op)


print(json.dumps([answer(r) for r in json.load(sys.stdin)]))
