"""The records that travel on Kafka, as typed Python values.

Each top-level class has the name of its Avro record in services/common/schemas/ (`AlertSubmitted` is
`rctc.AlertSubmitted`): events are past tense, requests imperative. Field names and types mirror the .avsc
files; the codec turns one into the other, and tests/unit/test_codec.py checks that every class round-trips
through its schema.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

import msgspec

MsgType = Literal["Alert", "Update", "Cancel"]
Severity = Literal["Extreme", "Severe", "Moderate", "Minor", "Unknown"]
Urgency = Literal["Immediate", "Expected", "Future", "Past", "Unknown"]
Certainty = Literal["Observed", "Likely", "Possible", "Unlikely", "Unknown"]
DeliveryOutcome = Literal["delivered", "retrying", "dead", "unknown"]
AckResponse = Literal["actioned", "no_nexus", "request_info", "other"]

# Ordered from least to most restrictive (FIRST TLP 2.0).
TLP_LEVELS: tuple[str, ...] = ("CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED")
# Ordered from least to most severe, for "minimum severity" comparisons.
SEVERITY_ORDER: tuple[str, ...] = ("Unknown", "Minor", "Moderate", "Severe", "Extreme")
# The Admiralty grading, best first: source reliability A (completely reliable) to E (unreliable), information
# credibility 1 (confirmed) to 5 (improbable). F and 6 are not worse grades but none: "cannot be judged", which
# is also what an alert submitted without a grading carries (the gateway's default). A minimum that a
# subscription or an agreement asks for (router/policy.py) is one of these, and F or 6 meets none.
JUDGED_RELIABILITY: tuple[str, ...] = ("A", "B", "C", "D", "E")
JUDGED_CREDIBILITY: tuple[int, ...] = (1, 2, 3, 4, 5)


def utcnow() -> datetime:
    """Now, timezone-aware, truncated to the millisecond that Avro timestamp-millis keeps."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class Record(msgspec.Struct, kw_only=True):
    """Base of every record on a topic."""


class Location(msgspec.Struct, kw_only=True):
    lat: float
    lon: float
    radius_km: float | None = None


class Indicator(msgspec.Struct, kw_only=True, frozen=True):
    type: str
    value: str


class Subject(msgspec.Struct, kw_only=True):
    kind: str
    name: str
    identifiers: dict[str, str] = {}
    nationality: str | None = None


# How far ahead an originator may schedule an embargo's end or a release (gateway/submission.py). A release is
# decided against its thread as the router knows it, and a restarted router knows the threads of its
# de-duplication window only: RouterSettings refuses a window that is not longer than this.
MAX_SCHEDULE_AHEAD = timedelta(days=6)


class ReleaseStep(msgspec.Struct, kw_only=True):
    """A step of an originator's release schedule: at `at` the system issues an Update of the same content with
    this TLP and releasable_to (router/schedule.py)."""

    at: datetime
    tlp: str
    releasable_to: list[str] = []


class Alert(msgspec.Struct, kw_only=True):
    msg_type: MsgType
    references: list[str] = []
    category: str
    severity: Severity
    urgency: Urgency
    certainty: Certainty
    tlp: str
    source_reliability: str = "F"
    information_credibility: int = 6
    title: str
    summary: str = ""
    sent: datetime
    expires: datetime | None = None
    affected_countries: list[str] = []
    locations: list[Location] = []
    indicators: list[Indicator] = []
    subjects: list[Subject] = []
    releasable_to: list[str] = []
    originator_control: bool = False
    # Delivered to nobody before this time (router/schedule.py); never part of a recipient's copy.
    embargo_until: datetime | None = None
    release: list[ReleaseStep] = []


class AlertSubmitted(Record, kw_only=True):
    alert_id: str
    origin: str
    submitted_at: datetime
    idempotency_key: str | None = None
    # Set only by the tracker when it issues a scheduled release: the version whose schedule it carries out.
    # No agency can set it (the gateway builds this record; agencies write SubmitAlert's JSON body).
    scheduled_by: str | None = None
    alert: Alert


class AlertEnriched(Record, kw_only=True):
    alert_id: str
    origin: str
    submitted_at: datetime
    enriched_at: datetime
    priority: int
    extracted_indicators: int = 0
    watchlist_hits: list[str] = []
    scheduled_by: str | None = None
    # The submission's idempotency key, carried for the router's refusal to the agency (router/refusals.py).
    idempotency_key: str | None = None
    alert: Alert


class AlertRejected(Record, kw_only=True):
    alert_id: str
    origin: str
    stage: str
    # For operators: it may name other agencies and their threads. `error` and `message` are what the
    # submitting agency may be told (None: nothing), and all the tracker shows it (tracker/state.py).
    reason: str
    rejected_at: datetime
    error: str | None = None
    message: str | None = None


class SharedAlert(msgspec.Struct, kw_only=True):
    """A recipient's view of an alert: no handling lists, and every redactable field optional."""

    msg_type: MsgType
    references: list[str] = []
    category: str
    severity: Severity
    urgency: Urgency
    certainty: Certainty
    tlp: str
    title: str
    sent: datetime
    expires: datetime | None = None
    originator_control: bool = False
    source_reliability: str | None = None
    information_credibility: int | None = None
    summary: str | None = None
    affected_countries: list[str] | None = None
    locations: list[Location] | None = None
    indicators: list[Indicator] | None = None
    subjects: list[Subject] | None = None


class OnwardNotice(msgspec.Struct, kw_only=True):
    """What an onward.* event is about: the request, who asked, for whom, and the asker's reason (to the
    originator) or the originator's note (to the asker)."""

    request_id: str
    requester: str
    target: str
    text: str | None = None


class CorrelationNotice(msgspec.Struct, kw_only=True):
    """What an alert.correlated notice is about: two threads the recipient holds or originated, and the versions
    of them it holds, carry the same value (router/correlation.py)."""

    correlation_id: str
    kind: str
    value: str
    thread_ids: list[str]
    alert_ids: list[str]


class AlertShared(Record, kw_only=True):
    alert_id: str
    recipient: str
    origin: str
    event_type: str
    agreement_id: str
    shared_at: datetime
    priority: int
    redacted_fields: list[str] = []
    # The thread's first alert id (the key's first half): what a notice withdraws or cancels, and what orders
    # a thread's records wherever they arrive (None in records written before it was added).
    thread_id: str | None = None
    # A notice's reason code (alert.withdrawn: the rule that no longer permits the recipient).
    reason: str | None = None
    # Set on onward.* events only (router/onward.py).
    onward: OnwardNotice | None = None
    # Set on alert.correlated only.
    correlation: CorrelationNotice | None = None
    # None in a notice (alert.withdrawn, alert.cancelled, onward.*): it carries nothing of the content.
    alert: SharedAlert | None = None


# Not tracked by the collector (no reference cycle is possible in a decision): the tracker and the router's
# routed log keep a decision per alert, and walking them made full collections 5x longer (tracker/state.py).
class RoutingDecision(msgspec.Struct, kw_only=True, gc=False):
    agency: str
    delivered: bool
    rule: str
    reason: str
    agreement_id: str | None = None
    redacted_fields: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    copy_sha256: str | None = None
    ack_due: datetime | None = None
    # What was sent to the agency when delivered: alert.created, alert.updated, alert.withdrawn or
    # alert.cancelled (None in decisions written before every version was decided whole: router/threads.py).
    event: str | None = None


class OnwardStep(msgspec.Struct, kw_only=True, gc=False):
    """A step of an onward-sharing request, on the decision that took it (router/onward.py)."""

    request_id: str
    action_id: str = ""
    requester: str
    target: str
    state: Literal["requested", "approved", "refused", "revoked"]
    reason: str | None = None
    note: str | None = None
    floor: tuple[str, ...] = ()
    tlp: str | None = None


class AlertRouted(Record, kw_only=True, gc=False):
    alert_id: str
    origin: str
    msg_type: MsgType
    references: tuple[str, ...] = ()
    severity: Severity
    urgency: Urgency
    routed_at: datetime
    registry_version: int
    decisions: tuple[RoutingDecision, ...]
    # Set on a decision that answers an operator's request (ResendRequested): it decides one agency's copy of
    # an alert routed before, and adds to that alert's first decision instead of replacing it.
    request_id: str | None = None
    # A release the system issued: the version whose schedule it carried out (router/schedule.py).
    scheduled_by: str | None = None
    # A step of onward sharing (request_id is its request's): what its decisions notified or sent.
    onward: OnwardStep | None = None
    # The router's decision about a correlation (router/correlation.py): who was sent alert.correlated. Not a
    # version of the thread: it changes what nobody holds.
    correlation_id: str | None = None


class ResendRequested(Record, kw_only=True):
    request_id: str
    agency: str
    since: datetime
    requested_by: str
    requested_at: datetime


OnwardKind = Literal["ask", "approve", "refuse", "revoke"]


class OnwardAction(Record, kw_only=True):
    """An agency's step in onward sharing, as the gateway authenticated it (requests.onward, key the thread)."""

    action_id: str
    request_id: str
    thread_id: str
    action: OnwardKind
    agency: str
    target: str | None = None
    text: str | None = None
    at: datetime


class ReleaseScheduled(Record, kw_only=True):
    release_id: str
    thread_id: str
    scheduled_by: str
    origin: str
    kind: str
    due_at: datetime
    scheduled_at: datetime
    alert: Alert


class ReleaseIssued(Record, kw_only=True):
    release_id: str
    thread_id: str
    issued_at: datetime


class DeliverWebhook(Record, kw_only=True):
    webhook_id: str
    alert_id: str
    agency: str
    event_type: str
    urgency: Urgency
    payload: bytes
    attempt: int = 0
    requested_at: datetime
    last_error: str | None = None
    not_before: datetime | None = None
    origin: str = ""


class DeliveryAttempted(Record, kw_only=True):
    webhook_id: str
    alert_id: str
    agency: str
    attempt: int
    outcome: DeliveryOutcome
    status_code: int | None = None
    latency_ms: float
    error: str | None = None
    attempted_at: datetime


EndpointState = Literal["active", "failing", "disabled"]


class EndpointChanged(Record, kw_only=True):
    agency: str
    url: str
    state: EndpointState
    reason: str
    changed_at: datetime
    changed_by: str


class WatchlistEntryAdded(Record, kw_only=True):
    """An operator's watchlist entry (watchlist.entries, key `<kind>:<comparable value>`; common/watchlist.py)."""

    kind: str
    value: str
    reason: str
    added_by: str
    added_at: datetime
    expires_at: datetime | None = None


class AckSubmitted(Record, kw_only=True):
    ack_id: str
    alert_id: str
    agency: str
    response: AckResponse | None = None
    note: str | None = None
    channel: str
    submitted_at: datetime


class EscalationRaised(Record, kw_only=True):
    alert_id: str
    agency: str
    origin: str
    level: int
    reason: str
    deadline: datetime
    raised_at: datetime
    kind: str = "ack_deadline"


class RetiredRecipient(msgspec.Struct, kw_only=True, gc=False):
    agency: str
    state: str
    event: str | None = None
    acknowledged_at: datetime | None = None
    response: str | None = None
    ack_channel: str | None = None
    escalation_level: int = 0
    webhook: str | None = None


# Out of the collector's reach like AlertRouted: the tracker keeps one per retired alert (tracker/retention.py).
class AlertRetired(Record, kw_only=True, gc=False):
    alert_id: str
    thread_id: str
    origin: str
    msg_type: MsgType
    severity: Severity
    urgency: Urgency
    routed_at: datetime
    registry_version: int
    retired_at: datetime
    recipients: tuple[RetiredRecipient, ...]


class AuditRecorded(Record, kw_only=True):
    seq: int = 0
    prev_hash: str = ""
    hash: str = ""
    recorded_at: datetime
    kind: str
    alert_id: str
    msg_type: str
    origin: str
    agency: str
    rule: str
    reason: str
    agreement_id: str | None = None
    redacted_fields: list[str] = []
    copy_sha256: str | None = None
    registry_version: int
    routed_at: datetime


class AuditCheckpointed(Record, kw_only=True):
    """The audit trail's head signed by the auditor (services/auditor/checkpoints.py)."""

    seq: int
    head_hash: str
    signed_at: datetime
    key_id: str
    signature: str
    accepted_from_seq: int | None = None


def recipient_key(alert_id: str, agency: str) -> bytes:
    """The Kafka key of a per-recipient record: `alert_id:agency` (docs/architecture.md, Topics)."""
    return f"{alert_id}:{agency}".encode()


class Quarantined(Record, kw_only=True):
    """A record set aside because it could not be decoded or validated (services/common/quarantine.py)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    value: bytes | None = None
    value_size: int
    reason: str
    service: str
    quarantined_at: datetime


class SubmitAlert(Record, kw_only=True):
    """An agency's alert submitted over Kafka: the JSON body of POST /v1/alerts, validated by the same code."""

    body: bytes


class Problem(msgspec.Struct, kw_only=True):
    field: str
    message: str


class SubmissionRejected(Record, kw_only=True):
    """The gateway's refusal of a SubmitAlert, with the error body HTTP answers for the same submission."""

    agency: str
    idempotency_key: str | None = None
    # Where a refused Kafka submission is; None when the router refused a version it had accepted (stage).
    partition: int | None = None
    offset: int | None = None
    status: int
    error: str
    message: str
    problems: list[Problem] = []
    rejected_at: datetime
    stage: str = "gateway"  # who refused it: gateway or router
    alert_id: str | None = None


class CorrelatedAlert(msgspec.Struct, kw_only=True):
    """One side of a correlation: the version that carried the value, its thread and originator, and the
    redactable fields of it that carry the value (services/common/sightings.py)."""

    alert_id: str
    thread_id: str
    origin: str
    fields: list[str]


class AlertCorrelated(Record, kw_only=True):
    """Two alerts from different originators carry the same value within the correlator's window. `a` is the
    earlier. Key: a's thread id (alerts.correlated is co-partitioned with alerts.enriched)."""

    correlation_id: str
    kind: str
    value: str
    a: CorrelatedAlert
    b: CorrelatedAlert
    found_at: datetime
    # Always None from the correlator: the router's, for its second phase.
    candidates: list[str] | None = None


class Sighting(msgspec.Struct, kw_only=True, frozen=True):
    """An alert that carried an indexed value: an entry of the correlator's index (services/correlator/index.py)."""

    alert_id: str
    thread_id: str
    origin: str
    submitted_at: datetime
    fields: tuple[str, ...]


class IndicatorSighted(Record, kw_only=True):
    """The correlator's internal record: an alert carries the value `kind:value` (its key on correlator.sightings)."""

    kind: str
    value: str
    alert_id: str
    thread_id: str
    origin: str
    submitted_at: datetime
    fields: list[str]


class IndicatorIndexed(Record, kw_only=True):
    """The correlator's index entry of one value, as its table's changelog keeps it."""

    kind: str
    value: str
    sightings: list[Sighting]
