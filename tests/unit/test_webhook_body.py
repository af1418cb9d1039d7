"""The body of every webhook the exchange sends, a copy's (the router) and a reminder's (the tracker): one
Standard Webhooks shape, byte for byte what receivers have been reading (docs/webhooks.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import msgspec

from services.common.events import CREATED, WITHDRAWN
from services.router.payload import notice, recipient_copy, webhook_request
from services.router.policy import Verdict
from services.tracker.escalation import reminder_for, reminder_webhook
from services.tracker.state import Due
from tests.unit.samples import enriched, sample_alert

AT = datetime(2026, 11, 28, 9, 0, 12, 345000, tzinfo=UTC)

REMINDER = (
    b'{"type":"alert.escalated","timestamp":"2026-11-28T09:00:12.345000Z","data":{"alert_id":"a2",'
    b'"recipient":"JO-B","origin":"IQ-A","event_type":"alert.escalated","agreement_id":"",'
    b'"shared_at":"2026-11-28T09:00:12.345000Z","priority":1,"redacted_fields":[],"thread_id":"a1",'
    b'"reason":"ack_overdue","onward":null,"correlation":null,"alert":null}}'
)


def test_a_reminder_has_the_same_body_from_the_tracker_and_the_router() -> None:
    """The tracker's reminder webhook and the router's webhook request for the same record carry the pinned bytes."""
    due = Due("a2", "JO-B", "IQ-A", 1, AT, webhook=True, thread="a1")
    reminder = reminder_for(due, AT)
    expected = (REMINDER, REMINDER)

    assert expected == (reminder_webhook(reminder, due, AT).payload, webhook_request(reminder, "Immediate", AT).payload)


def test_a_notices_body_is_pinned() -> None:
    """A withdrawal notice's body: its event as `type`, its time as `timestamp` (Z for UTC), the record as `data`."""
    version = enriched(sample_alert(msg_type="Update", references=["alert-0"]), alert_id="alert-1")
    verdict = Verdict("SA-A", True, "withdrawn", "w", event=WITHDRAWN, notice="no_agreement")
    expected = (
        b'{"type":"alert.withdrawn","timestamp":"2026-11-28T09:00:12.345000Z","data":{"alert_id":"alert-1",'
        b'"recipient":"SA-A","origin":"IQ-A","event_type":"alert.withdrawn","agreement_id":"",'
        b'"shared_at":"2026-11-28T09:00:12.345000Z","priority":1,"redacted_fields":[],"thread_id":"alert-0",'
        b'"reason":"no_agreement","onward":null,"correlation":null,"alert":null}}'
    )

    assert expected == webhook_request(notice(version, verdict, AT), "Expected", AT).payload


def test_a_copys_body_wraps_its_record() -> None:
    """A copy with content: the same three fields in the same order, `data` the AlertShared record as JSON."""
    shared = recipient_copy(
        enriched(sample_alert()), Verdict("JO-B", True, "shared", "x", agreement_id="G", event=CREATED), AT
    )
    body = webhook_request(shared, "Expected", AT).payload

    assert body.startswith(b'{"type":"alert.created","timestamp":"2026-11-28T09:00:12.345000Z","data":{')
    assert json.loads(msgspec.json.encode(shared)) == json.loads(body)["data"]
