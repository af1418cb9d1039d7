"""Raising escalations for missed acknowledgement deadlines, exactly once across restarts. Pure: no I/O.

    for write in writes_for(due, now, listed=registry.agencies):   # in one transaction per partition
        producer.send(write.topic, codec.encode(write.record), key=write.key)

The escalations the tracker owes are derived from its state (`Ledger.due`); those it already raised are
read back from alerts.escalations, which the tracker follows like its other inputs. Everything an
escalation writes is produced in one Kafka transaction under the fixed id `tracker-escalations-<n>`, so a
restarted tracker fences its predecessor, and it fires nothing before it has caught up with the topics:
after a restart, a deadline already escalated is not escalated again (nor its reminders sent again), and
one that passed while the tracker was down fires at once. What one owed escalation writes:

    level 1   EscalationRaised on alerts.escalations, and the recipient is reminded:
              - on its own topic agency.<CODE>.alerts, always: an AlertShared `alert.escalated` with reason
                `ack_overdue` and no content, keyed `<thread's first alert id>:<CODE>` like the thread's
                other records there, so it arrives after the copy it is about;
              - by webhook, the same record as `data`, when its copy went to a webhook.
    level 2   EscalationRaised only, one deadline period later: for the center's duty desk (and an
              `escalation.duty_desk` log line operators alert on), who reach the agency by other means.
              Nothing more is sent to the agency: the reminder on its own channels is what did not work.
    either    nothing to the agency if the registry no longer lists it: its topic's ACLs and its
              endpoint are gone (a removed agency cannot be written to), and the escalation still records
              the missed deadline.

The originator sees both levels in the alert's status. The reminder names only the version the agency
already holds (its alert id and originator), so it reveals nothing its copy did not.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime
from typing import NamedTuple

from services.common.events import ESCALATED
from services.common.records import AlertShared, DeliverWebhook, EscalationRaised, recipient_key
from services.common.topics import ALERTS_ESCALATIONS, DELIVERIES_WEBHOOK, agency_topic
from services.common.webhook_body import webhook_body
from services.tracker.state import Due

_NAMESPACE = uuid.UUID("0e1b9c5a-7f43-4d5e-9b7e-3a1c2d4e5f60")

# The reason code of a reminder (AlertShared.reason): its acknowledgement is overdue.
ACK_OVERDUE = "ack_overdue"


class Write(NamedTuple):
    topic: str
    key: bytes
    record: EscalationRaised | AlertShared | DeliverWebhook


def writes_for(due: Due, now: datetime, listed: Collection[str]) -> list[Write]:
    """Every record that raising `due` writes, in order (the table above); `listed`: the registry's agency codes."""
    key = recipient_key(due.alert_id, due.agency)
    writes = [Write(ALERTS_ESCALATIONS, key, escalation_for(due, now))]
    if due.level != 1 or due.agency not in listed:
        return writes
    reminder = reminder_for(due, now)
    writes.append(Write(agency_topic(due.agency), recipient_key(due.thread or due.alert_id, due.agency), reminder))
    if due.webhook:
        writes.append(Write(DELIVERIES_WEBHOOK, key, reminder_webhook(reminder, due, now)))
    return writes


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


def reminder_for(due: Due, now: datetime) -> AlertShared:
    """The reminder record: which version to acknowledge (its alert id) and why, and nothing of its content."""
    return AlertShared(
        alert_id=due.alert_id,
        recipient=due.agency,
        origin=due.origin,
        event_type=ESCALATED,
        agreement_id="",
        shared_at=now,
        priority=1,  # "act now", as a notice: the copy's own priority follows a severity it need not repeat
        thread_id=due.thread or due.alert_id,
        reason=ACK_OVERDUE,
        alert=None,
    )


def reminder_webhook(reminder: AlertShared, due: Due, now: datetime) -> DeliverWebhook:
    """The request to POST `reminder` to the agency's webhook in the body every webhook has (the record as `data`),
    under a webhook-id of its own (not the copy's, which the receiver has already seen), the same on every retry."""
    return DeliverWebhook(
        webhook_id=f"msg_{uuid.uuid5(_NAMESPACE, f'{due.alert_id}:{due.agency}:{due.level}').hex}",
        alert_id=due.alert_id,
        agency=due.agency,
        event_type=ESCALATED,
        urgency="Immediate",
        payload=webhook_body(reminder),
        requested_at=now,
        origin=due.origin,
    )
