"""The body of every webhook the exchange POSTs (docs/webhooks.md describes it for receivers).

    request.payload = webhook_body(shared)

The Standard Webhooks recommendation `{"type", "timestamp", "data"}`: `data` is the recipient's `AlertShared`
record as JSON, `type` its event and `timestamp` its `shared_at`. The router sends copies and notices in it, the
tracker reminders (`alert.escalated`): one definition, so that a receiver reads every kind in one way.
"""

from __future__ import annotations

import msgspec

from services.common.records import AlertShared


class WebhookBody(msgspec.Struct):
    type: str
    timestamp: str
    data: AlertShared


def webhook_body(shared: AlertShared) -> bytes:
    """`shared` as a webhook's JSON body (UTC written with `Z`, as Standard Webhooks' examples do)."""
    timestamp = shared.shared_at.isoformat().replace("+00:00", "Z")
    return msgspec.json.encode(WebhookBody(type=shared.event_type, timestamp=timestamp, data=shared))
