"""The webhook body and id for one recipient's copy (docs/webhooks.md describes it for receivers).

The body follows the Standard Webhooks recommendation `{"type", "timestamp", "data"}`; `data` is the
recipient's `AlertShared` record as JSON. The webhook-id is derived from (alert, recipient), so it is the
same on every retry and on every re-routing of the same alert, and a receiver de-duplicates on it.
"""

from __future__ import annotations

import uuid

import msgspec

from services.common.records import AlertShared

_NAMESPACE = uuid.UUID("2b7e1516-28ae-4d2a-abf7-158809cf4f3c")

EVENT_TYPES = {"Alert": "alert.created", "Update": "alert.updated", "Cancel": "alert.cancelled"}


def webhook_id(alert_id: str, agency: str) -> str:
    return f"msg_{uuid.uuid5(_NAMESPACE, f'{alert_id}:{agency}').hex}"


class WebhookBody(msgspec.Struct):
    type: str
    timestamp: str
    data: AlertShared


def webhook_body(shared: AlertShared) -> bytes:
    return msgspec.json.encode(
        WebhookBody(type=shared.event_type, timestamp=shared.shared_at.isoformat().replace("+00:00", "Z"), data=shared)
    )
