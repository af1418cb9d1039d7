"""Raising escalations for missed acknowledgement deadlines, exactly once across restarts.

The escalations the tracker owes are derived from its state (`Ledger.due`); those it already raised are
read back from alerts.escalations, which the tracker follows like its other inputs. Each escalation (and
its reminder webhook) is produced in a Kafka transaction under the fixed id `tracker-escalations`, so a
restarted tracker fences its predecessor, and it fires nothing before it has caught up with the topics:
after a restart, a deadline already escalated is not escalated again, and one that passed while the
tracker was down fires at once.

Level 1 re-notifies the recipient (a webhook flagged as a reminder, `alert.escalated`); level 2, one
deadline period later, goes to the center's duty desk (the escalation record and an `escalation.duty_desk`
log line operators alert on). The originator sees both in the alert's status.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from services.common.records import DeliverWebhook, EscalationRaised
from services.tracker.state import Due

_NAMESPACE = uuid.UUID("0e1b9c5a-7f43-4d5e-9b7e-3a1c2d4e5f60")


def escalation_for(due: Due, now: datetime) -> EscalationRaised:
    who = "the recipient is reminded" if due.level == 1 else "the duty desk is notified"
    return EscalationRaised(
        alert_id=due.alert_id,
        agency=due.agency,
        origin=due.origin,
        level=due.level,
        reason=f"no acknowledgement by {due.deadline.isoformat()}: {who}",
        deadline=due.deadline,
        raised_at=now,
        kind="ack_deadline",
    )


class ReminderData(msgspec.Struct):
    alert_id: str
    recipient: str
    level: int
    deadline: datetime
    reminder: bool
    message: str


class ReminderBody(msgspec.Struct):
    type: str
    timestamp: str
    data: ReminderData


def reminder_for(due: Due, now: datetime) -> DeliverWebhook:
    """A reminder webhook: it names the alert the recipient already holds and carries none of its content."""
    body = ReminderBody(
        type="alert.escalated",
        timestamp=now.isoformat().replace("+00:00", "Z"),
        data=ReminderData(
            alert_id=due.alert_id,
            recipient=due.agency,
            level=due.level,
            deadline=due.deadline,
            reminder=True,
            message="Please acknowledge this alert: POST /v1/alerts/{id}/ack",
        ),
    )
    return DeliverWebhook(
        webhook_id=f"msg_{uuid.uuid5(_NAMESPACE, f'{due.alert_id}:{due.agency}:{due.level}').hex}",
        alert_id=due.alert_id,
        agency=due.agency,
        event_type="alert.escalated",
        urgency="Immediate",
        payload=msgspec.json.encode(body),
        requested_at=now,
        origin=due.origin,
    )
