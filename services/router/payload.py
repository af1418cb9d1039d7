"""A recipient's copy as a record, and as a webhook (its body: services/common/webhook_body.py).

The webhook-id is derived from (alert, recipient), so it is the same on every retry and on every re-routing of
the same alert, and a receiver de-duplicates on it.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

from services.common.codec import Codec
from services.common.priority import priority
from services.common.records import AlertEnriched, AlertShared, DeliverWebhook, SharedAlert, Urgency
from services.common.webhook_body import webhook_body
from services.router.policy import Verdict
from services.router.redaction import shared_copy

_NAMESPACE = uuid.UUID("2b7e1516-28ae-4d2a-abf7-158809cf4f3c")
_NAMESPACE_BYTES = _NAMESPACE.bytes


def webhook_id(alert_id: str, agency: str) -> str:
    """`msg_` and the hex of uuid5(namespace, "alert_id:agency"), computed without building UUID objects
    (a tenth of a router's fan-out cost went to them); equal to uuid.uuid5 (tests/unit/test_payload.py)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"{alert_id}:{agency}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return f"msg_{digest.hex()}"


def recipient_copy(enriched: AlertEnriched, verdict: Verdict, now: datetime) -> AlertShared:
    """The AlertShared a delivered verdict gives its agency: redacted as the verdict says."""
    copy, removed = shared_copy(enriched.alert, verdict.redact)
    return _addressed(enriched, verdict, now, copy, removed)


class RecipientCopies:
    """One alert's copies for its recipients, as records and as the bytes written to their topics.

    Recipients whose agreements redact the same fields receive the same alert body, so each distinct
    redaction is masked and encoded once per alert (most alerts have one or two), and each recipient's
    bytes are its own header fields followed by that body (`Codec.encode(last=)`): the same bytes as
    encoding its copy whole, a third of the cost.
    """

    def __init__(self, enriched: AlertEnriched, now: datetime, codec: Codec) -> None:
        self._enriched, self._now, self._codec = enriched, now, codec
        self._bodies: dict[frozenset[str], tuple[SharedAlert, list[str], bytes]] = {}

    def copy_for(self, verdict: Verdict) -> tuple[AlertShared, bytes]:
        """The delivered verdict's copy, and its encoding."""
        body = self._bodies.get(verdict.redact)
        if body is None:
            alert, removed = shared_copy(self._enriched.alert, verdict.redact)
            body = self._bodies[verdict.redact] = (alert, removed, self._codec.encode_last(AlertShared, alert))
        alert, removed, encoded = body
        shared = _addressed(self._enriched, verdict, self._now, alert, removed)
        return shared, self._codec.encode(shared, last=encoded)


def thread_of(enriched: AlertEnriched) -> str:
    """The thread's first alert id: an original's own, a follow-up's first reference (as the gateway keys it)."""
    alert = enriched.alert
    return alert.references[0] if alert.msg_type != "Alert" and alert.references else enriched.alert_id


def notice(enriched: AlertEnriched, verdict: Verdict, now: datetime) -> AlertShared:
    """A withdrawal or cancellation notice: which thread (its key and `alert_id`), the event and its reason code,
    and nothing of the version's content, which the recipient is no longer (or never) permitted."""
    return AlertShared(
        alert_id=enriched.alert_id,
        recipient=verdict.agency,
        origin=enriched.origin,
        event_type=verdict.event,
        agreement_id="",
        thread_id=thread_of(enriched),
        shared_at=now,
        # Not the version's priority, which follows its severity: the recipient may not know that. 1, "act
        # now": a withdrawn copy is to be purged at once.
        priority=1,
        reason=verdict.notice,
        alert=None,
    )


def _addressed(
    enriched: AlertEnriched, verdict: Verdict, now: datetime, copy: SharedAlert, removed: list[str]
) -> AlertShared:
    return AlertShared(
        alert_id=enriched.alert_id,
        recipient=verdict.agency,
        origin=enriched.origin,
        event_type=verdict.event,
        agreement_id=verdict.agreement_id or "",
        thread_id=thread_of(enriched),
        shared_at=now,
        # The base, not the version's own: the enricher raises that for watchlist hits, which are the center's
        # and never a recipient's to learn (services/common/priority.py).
        priority=priority(enriched.alert),
        redacted_fields=removed,
        alert=copy,
    )


# The urgency a notice (alert.withdrawn, alert.cancelled) is delivered with, whatever the version's: the
# dispatcher's retry schedule follows a request's urgency, so a recipient that answers 503 and times the
# retries (5 s, 30 s or 2 min first) would learn the urgency of a version it was not permitted (red team,
# issue 15). Immediate, as the notice's priority 1 says: a withdrawn copy is to be purged at once.
NOTICE_URGENCY: Urgency = "Immediate"


def webhook_request(shared: AlertShared, urgency: Urgency, now: datetime) -> DeliverWebhook:
    """The request to POST `shared` to its agency's webhook (same webhook-id on every retry and resend), retried
    on `urgency`'s schedule if it carries content, on NOTICE_URGENCY's if it is a notice."""
    return DeliverWebhook(
        webhook_id=webhook_id(shared.alert_id, shared.recipient),
        alert_id=shared.alert_id,
        agency=shared.recipient,
        event_type=shared.event_type,
        urgency=urgency if shared.alert is not None else NOTICE_URGENCY,
        payload=webhook_body(shared),
        requested_at=now,
        origin=shared.origin,
    )
