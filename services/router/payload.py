"""A recipient's copy as a record, and as a webhook (docs/webhooks.md describes the body for receivers).

The body follows the Standard Webhooks recommendation `{"type", "timestamp", "data"}`; `data` is the
recipient's `AlertShared` record as JSON. The webhook-id is derived from (alert, recipient), so it is the
same on every retry and on every re-routing of the same alert, and a receiver de-duplicates on it.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from services.common.records import AlertEnriched, AlertShared, DeliverWebhook, Urgency
from services.router.policy import Verdict
from services.router.redaction import shared_copy

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


def recipient_copy(enriched: AlertEnriched, verdict: Verdict, now: datetime) -> AlertShared:
    """The AlertShared a delivered verdict gives its agency: redacted as the verdict says."""
    copy, removed = shared_copy(enriched.alert, verdict.redact)
    return AlertShared(
        alert_id=enriched.alert_id,
        recipient=verdict.agency,
        origin=enriched.origin,
        event_type=EVENT_TYPES[enriched.alert.msg_type],
        agreement_id=verdict.agreement_id or "",
        shared_at=now,
        priority=enriched.priority,
        redacted_fields=removed,
        alert=copy,
    )


def webhook_request(shared: AlertShared, urgency: Urgency, now: datetime) -> DeliverWebhook:
    """The request to POST `shared` to its agency's webhook (same webhook-id on every retry and resend)."""
    return DeliverWebhook(
        webhook_id=webhook_id(shared.alert_id, shared.recipient),
        alert_id=shared.alert_id,
        agency=shared.recipient,
        event_type=shared.event_type,
        urgency=urgency,
        payload=webhook_body(shared),
        requested_at=now,
        origin=shared.origin,
    )
