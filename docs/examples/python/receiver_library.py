"""The receiver of receiver.py, verifying with a library instead of by hand.

    pip install standardwebhooks       # or: pip install svix
    WEBHOOK_SECRET=whsec_... PORT=8000 python3 receiver_library.py [standardwebhooks|svix]

Both libraries have the same `Webhook(secret).verify(body, headers)`: it checks the
signature and the 5-minute timestamp tolerance, and raises WebhookVerificationError.
"""

import sys

import receiver

if sys.argv[1:] == ["svix"]:
    from svix.webhooks import Webhook, WebhookVerificationError
else:
    from standardwebhooks import Webhook, WebhookVerificationError


def verify(secret, headers, body):
    try:
        Webhook(secret).verify(body, dict(headers.items()))
    except (WebhookVerificationError, ValueError) as e:  # ValueError: a malformed header
        raise receiver.InvalidWebhook(str(e)) from None
    return headers["webhook-id"]


if __name__ == "__main__":
    receiver.serve(verify)
