"""When an alert leaves the tracker's memory, and what is kept of it. Pure: no I/O.

    if retirable(alert, cutoff=now - retention): summary = summary_of(alert, thread_id, now)
    held = pack(summary); summary == unpack(held)

Without this the tracker holds every alert it ever routed, and rebuilds every one at each start from topics
that keep them (alerts.routed for ever). An alert is **retired** once it is both:

| condition | precisely |
|---|---|
| old | `routed_at + retention <= now` (TrackerSettings.retention_s; the clock is the caller's) |
| settled | every recipient row is settled (below) |

A row is settled when its webhook copy is not `retrying` (the dispatcher still owes an outcome) and it awaits
no acknowledgement: its state ended the wait (state.ENDED: acknowledged, cancelled, withdrawn, superseded), or
it never had a deadline (`ack_due` None), or it lapsed: the duty desk was called (escalation level 2), which is
the last thing the tracker does about a missing acknowledgement.

Expiry: the tracker does not know an alert's `expires` (AlertRouted does not carry it, and the decision is the
only record of the alert the tracker reads). An alert the originator let expire without its recipients
acknowledging is covered by the lapse instead: its silent rows were escalated to the duty desk one period
after their deadline, long before any retention, so it retires like any other. A webhook copy `pending` (no
attempt recorded) does not hold an alert: the dispatcher writes every attempt, so a copy with none by the
retention is one whose events were lost, and would otherwise be held for ever.

The retention must stay well inside the 30 days deliveries.events, acks.submitted and alerts.escalations keep
their records (services/common/topics.yaml): an alert is retired while what settled it can still be read, so a tracker
restarted around the retirement rebuilds it settled and retires it again, instead of rebuilding it from its
routing alone as unacknowledged. Hence 7 days by default.

The summary (AlertRetired, on the compacted topic alerts.retired, key alert_id) keeps the alert's identity
and, per recipient, the final state, what it was sent, when and how it acknowledged, its escalation level and
the webhook's last status. Not the acknowledgement's note: free text up to 64 KiB that may name people or
sources, it would be most of the summary's size, and it stays on acks.submitted for that topic's retention.
Not the routing decision's refusals and reasons either: the decision is kept for ever on alerts.routed,
where an operator reads it (`rctc`).

The ledger keeps every summary, packed (`pack`): a msgpack array with the words every summary repeats (states,
events, responses, severities) as small numbers, about 300 bytes for eight recipients where the decoded record
takes over 1 KB. Summaries accumulate for as long as the tracker runs (bench/tracker_memory.py measures a year;
README "Tracker memory"): the next step, if that grows too large, is to keep only each summary's offset on
alerts.retired and read it when asked.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from services.common.records import AlertRetired, RetiredRecipient

if TYPE_CHECKING:
    from services.tracker.state import AlertState, RecipientState

# The escalation level at which the tracker has done all it does about a missing acknowledgement.
LAPSED_LEVEL = 2


def row_settled(row: RecipientState, ended: Iterable[str]) -> bool:
    """Whether a recipient's row awaits nothing more (the table above)."""
    if row.webhook is not None and row.webhook.status == "retrying":
        return False
    return row.state in ended or row.ack_due is None or row.escalation_level >= LAPSED_LEVEL


def retirable(alert: AlertState, cutoff: datetime, ended: frozenset[str]) -> bool:
    """Routed at or before `cutoff` (now minus the retention), and every row settled."""
    return alert.routed_at <= cutoff and all(row_settled(r, ended) for r in alert.recipients.values())


def summary_of(alert: AlertState, thread_id: str, now: datetime) -> AlertRetired:
    """What is kept of a retired alert (no note: the module's docstring)."""
    return AlertRetired(
        alert_id=alert.alert_id,
        thread_id=thread_id,
        origin=alert.origin,
        msg_type=alert.msg_type,  # type: ignore[arg-type]
        severity=alert.severity,  # type: ignore[arg-type]
        urgency=alert.urgency,  # type: ignore[arg-type]
        routed_at=alert.routed_at,
        registry_version=alert.registry_version,
        retired_at=now,
        recipients=tuple(
            RetiredRecipient(
                agency=r.agency,
                state=r.state,
                event=r.event,
                acknowledged_at=r.acknowledged_at,
                response=r.response,
                ack_channel=r.ack_channel,
                escalation_level=r.escalation_level,
                webhook=r.webhook.status if r.webhook is not None else None,
            )
            for r in alert.recipients.values()
        ),
    )


# The words summaries repeat, numbered for pack(); a word not listed (a state or event added later) is kept as
# itself, so adding one here is an optimisation, never a format change (unpack reads either).
Word = int | str | None
_ALERT_WORDS: dict[str, tuple[str | None, ...]] = {
    "msg_type": ("Alert", "Update", "Cancel"),
    "severity": ("Extreme", "Severe", "Moderate", "Minor", "Unknown"),
    "urgency": ("Immediate", "Expected", "Future", "Past", "Unknown"),
}
_ROW_WORDS: dict[str, tuple[str | None, ...]] = {
    "state": ("routed", "delivered", "acknowledged", "cancelled", "withdrawn", "superseded"),
    "event": (None, "alert.created", "alert.updated", "alert.withdrawn", "alert.cancelled"),
    "response": (None, "actioned", "no_nexus", "request_info", "other"),
    "ack_channel": (None, "http", "kafka"),
    "webhook": (None, "pending", "delivered", "retrying", "dead"),
}


class _Row(msgspec.Struct, array_like=True):
    agency: str
    state: Word
    event: Word
    acknowledged_at: datetime | None
    response: Word
    ack_channel: Word
    escalation_level: int
    webhook: Word


class _Packed(msgspec.Struct, array_like=True):
    alert_id: str
    thread_id: str  # "": the alert's own id
    origin: str
    msg_type: Word
    severity: Word
    urgency: Word
    routed_at: datetime
    registry_version: int
    retired_at: datetime
    recipients: list[_Row]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Packed)


def pack(summary: AlertRetired) -> bytes:
    """The summary as the ledger holds it (unpack reads it back)."""
    fields = _coded(msgspec.structs.asdict(summary), _ALERT_WORDS)
    fields["thread_id"] = "" if summary.thread_id == summary.alert_id else summary.thread_id
    fields["recipients"] = [_Row(**_coded(msgspec.structs.asdict(r), _ROW_WORDS)) for r in summary.recipients]
    return _encoder.encode(_Packed(**fields))


def unpack(held: bytes) -> AlertRetired:
    packed = _decoder.decode(held)
    fields = _worded(msgspec.structs.asdict(packed), _ALERT_WORDS)
    fields["thread_id"] = packed.thread_id or packed.alert_id
    fields["recipients"] = tuple(
        RetiredRecipient(**_worded(msgspec.structs.asdict(r), _ROW_WORDS)) for r in packed.recipients
    )
    return AlertRetired(**fields)


def _coded(fields: dict[str, Any], words: dict[str, tuple[str | None, ...]]) -> dict[str, Any]:
    for name, known in words.items():
        if fields[name] in known:
            fields[name] = known.index(fields[name])
    return fields


def _worded(fields: dict[str, Any], words: dict[str, tuple[str | None, ...]]) -> dict[str, Any]:
    for name, known in words.items():
        if isinstance(fields[name], int):
            fields[name] = known[fields[name]]
    return fields
