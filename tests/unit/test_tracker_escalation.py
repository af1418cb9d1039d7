"""What raising an owed escalation writes (services/tracker/escalation.py): the escalation, and at level 1 a
reminder on the agency's own topic and, for a webhook recipient, the same reminder by webhook."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from services.common.codec import Codec
from services.common.records import AlertShared, DeliverWebhook, EscalationRaised
from services.tracker.escalation import escalation_for, reminder_for, writes_for
from services.tracker.state import Due, Ledger
from tests.unit.test_tracker_state import routed_with_deadline

AT = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
NOW = AT + timedelta(minutes=31)


def due(level: int = 1, *, webhook: bool = False, thread: str = "a1", alert_id: str = "a1") -> Due:
    return Due(alert_id, "JO-B", "IQ-A", level, AT, webhook, partition=2, thread=thread)


def test_a_kafka_only_recipient_is_reminded_on_its_own_topic() -> None:
    """Level 1 for an agency without a webhook: the escalation, and one reminder on agency.<CODE>.alerts."""
    expected = [
        ("alerts.escalations", b"a1:JO-B", escalation_for(due(), NOW)),
        (
            "agency.JO-B.alerts",
            b"a1:JO-B",
            AlertShared(
                alert_id="a1",
                recipient="JO-B",
                origin="IQ-A",
                event_type="alert.escalated",
                agreement_id="",
                shared_at=NOW,
                priority=1,
                thread_id="a1",
                reason="ack_overdue",
                alert=None,
            ),
        ),
    ]
    assert expected == [tuple(w) for w in writes_for(due(), NOW, listed={"JO-B", "IQ-A"})]


def test_a_webhook_recipient_gets_the_same_reminder_on_both_channels() -> None:
    """The webhook's `data` is the record on the agency's topic, and its type the record's event type."""
    writes = writes_for(due(webhook=True), NOW, listed={"JO-B"})
    assert [w.topic for w in writes] == ["alerts.escalations", "agency.JO-B.alerts", "deliveries.webhook"]
    on_topic, hook = writes[1].record, writes[2].record
    assert isinstance(hook, DeliverWebhook)
    body = msgspec.json.decode(hook.payload)
    expected = {"type": "alert.escalated", "data": msgspec.to_builtins(on_topic)}
    assert expected == {"type": body["type"], "data": body["data"]}
    assert (hook.event_type, hook.urgency, hook.agency) == ("alert.escalated", "Immediate", "JO-B")


def test_the_duty_desk_level_writes_only_the_escalation() -> None:
    """Level 2 is for the center's duty desk: nothing more goes to the agency on either channel."""
    assert [("alerts.escalations", escalation_for(due(2), NOW))] == [
        (w.topic, w.record) for w in writes_for(due(2, webhook=True), NOW, listed={"JO-B"})
    ]


def test_an_agency_the_registry_no_longer_lists_is_not_reminded() -> None:
    """A removed agency's topic and endpoint are gone: the missed deadline is escalated, nothing is sent."""
    assert [w.topic for w in writes_for(due(webhook=True), NOW, listed={"IQ-A"})] == ["alerts.escalations"]


def test_a_reminder_about_an_update_is_keyed_by_its_thread() -> None:
    """The reminder about an Update carries the Update's id and the thread's key, as the router keys the
    thread's copies on the agency's topic, so it arrives after them."""
    ledger = Ledger()
    ledger.apply_routed(routed_with_deadline())
    ledger.apply_routed(routed_with_deadline("u1", "Update", ("a1",), due_minutes=60))
    owed = [d for d in ledger.due(AT + timedelta(hours=1)) if d.agency == "KW-C"]
    assert [(d.alert_id, d.thread) for d in owed] == [("u1", "a1")]
    [_, reminder] = writes_for(owed[0], NOW, listed={"KW-C"})
    assert (reminder.topic, reminder.key, reminder.record.alert_id) == ("agency.KW-C.alerts", b"a1:KW-C", "u1")


@given(
    level=st.sampled_from([1, 2]),
    webhook=st.booleans(),
    listed=st.booleans(),
    thread=st.sampled_from(["a1", "root-0"]),
)
def test_every_owed_escalation_writes_what_the_rules_say(level: int, webhook: bool, listed: bool, thread: str) -> None:
    """For every level, channel and registry: the escalation first, then a reminder on the agency's topic
    (thread key) and by webhook only at level 1 to a listed agency, never with any of the alert's content."""
    owed = due(level, webhook=webhook, thread=thread)
    writes = writes_for(owed, NOW, listed={"JO-B"} if listed else set())
    reminded = level == 1 and listed
    expected = [("alerts.escalations", b"a1:JO-B")]
    expected += [("agency.JO-B.alerts", f"{thread}:JO-B".encode())] if reminded else []
    expected += [("deliveries.webhook", b"a1:JO-B")] if reminded and webhook else []
    assert expected == [(w.topic, w.key) for w in writes]
    assert isinstance(writes[0].record, EscalationRaised)
    for w in writes[1:]:
        hook = w.record if isinstance(w.record, DeliverWebhook) else None
        sent = msgspec.json.decode(hook.payload)["data"] if hook else msgspec.to_builtins(w.record)
        assert (sent["alert"], sent["reason"], sent["event_type"]) == (None, "ack_overdue", "alert.escalated")


def test_the_reminder_encodes_as_an_agency_topic_record() -> None:
    """The reminder is a valid rctc.AlertShared: it round-trips through the schema agencies decode with."""
    codec = Codec.from_directory()
    reminder = reminder_for(due(), NOW)
    assert reminder == codec.decode(codec.encode(reminder), AlertShared)
