"""Standard Webhooks signatures, made with the published `standardwebhooks` library.

Every secret of the endpoint signs, and all signatures travel space-separated in `webhook-signature`, so
during a rotation a receiver that holds either the old or the new secret verifies the request.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from standardwebhooks.webhooks import Webhook


@lru_cache(maxsize=1024)
def _signer(secret: str) -> Webhook:
    return Webhook(secret)


def signed_headers(webhook_id: str, at: datetime, body: bytes, secrets: list[str]) -> dict[str, str]:
    if not secrets:
        # The dispatcher defers a delivery whose secrets it does not know (outcome.py); this is the last guard.
        raise ValueError("no signing secret: a webhook is never sent unsigned")
    data = body.decode("utf-8")
    signatures = " ".join(_signer(s).sign(webhook_id, at, data) for s in secrets)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signatures,
    }
