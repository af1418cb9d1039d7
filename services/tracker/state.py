"""Per-(alert, recipient) state folded from the routed, delivery and ack records, and who may see it.
Pure: no I/O.

    ledger = Ledger()
    ledger.apply_routed(routed); ledger.apply_attempt(attempt); ledger.apply_ack(ack)
    status, body = ledger.status(alert_id, Viewer("agency", "JO-GID"))
    status, body = ledger.alert_list(Viewer("operator", "desk"), now=utcnow(), state="overdue")

`ledger.version` counts the changes folded in (every apply_* that changed something adds one): a reader that
polls (the operators' console, through GET /internal/alerts and its ETag) asks again only when it moved.

States of a recipient: `delivered` once its copy is committed to its own topic (the router does that in
the routing transaction), `acknowledged` once it acks. The webhook channel is tracked beside the state
(pending, delivered, retrying, dead) because a recipient can read its topic while its receiver is down.
Records for an alert not routed yet (topics are read in parallel) wait until its routing arrives, in a
buffer bounded per agency and in all (EarlyLimits): anyone can write acks for ids that were never routed.

Visibility: the originator and operators see every recipient and the routing decision; a recipient sees
only its own row (and is refused the routing decision); anyone else gets exactly the answer given for an
alert that does not exist (`unknown`), so an id cannot be probed to learn that an alert exists.

The router's decision about a correlation (an AlertRouted with `correlation_id`) is not a version of its alert:
it goes to the duty desk's view of correlations (correlations.py) and nowhere else, never to the alert's
status, routing or waits (it would replace the later alert's recipients with the agencies told of the
correlation). Only operators see that view: an agency learns of a correlation through its own notice.

Retention (retention.py has the rules): `ledger.retire(now)` removes every settled alert older than the ledger's
retention from every structure and returns what is kept of each (AlertRetired), which the service writes to
the compacted alerts.retired; `apply_retired` folds such a summary in (at start, read before anything else;
later, one another replica wrote), dropping the alert's state if held. A retired alert's status, routing and
recipient queries answer from its summary by the same visibility rules. A record about a retired alert read
afterwards (its routing and acks replayed at start, a late ack, a resend of it) changes nothing and is counted
(`dropped["retired"]`): replayed, it would rebuild what was retired; late, the summary already says how the
alert ended, and an ack weeks after its deadline is kept on acks.submitted only. A resend of a retired alert is
not tracked either (a limit: an operator resends recent alerts; its copy is still delivered and audited).

A version refused before it was routed (alerts.rejected: the enricher or the router) has no recipients. Its
originator sees it refused with the code and message the refusing stage marked as safe to tell it
(router/refusals.py: nothing of another agency's thread), operators with the full reason as well; anyone
else, and the originator when the stage marked nothing, gets the answer for an unknown alert.
"""

from __future__ import annotations

import heapq
from collections import Counter, OrderedDict
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import msgspec

from services.common.events import CONTENT_EVENTS, ONWARD_EVENTS, UPDATED, WITHDRAWN, event_of
from services.common.pages import Key
from services.common.records import (
    AckSubmitted,
    AlertCorrelated,
    AlertRejected,
    AlertRetired,
    AlertRouted,
    DeliveryAttempted,
    EscalationRaised,
    RoutingDecision,
)
from services.tracker.correlations import CorrelationDesk, CorrelationLimits
from services.tracker.retention import pack, retirable, summary_of, unpack
from services.tracker.waits import ALERT_STATES, Waits, in_state, waits_of
from services.tracker.webhooks import WebhookTally

Early = DeliveryAttempted | AckSubmitted | EscalationRaised


@dataclass(frozen=True)
class EarlyLimits:
    """How much the tracker keeps of records read before their alert's routing.

    Per agency (the `agency` of the record: the recipient whose copy it is about, and for an ack its
    writer, whose identity the gateway checked), so one agency acking ids that were never routed evicts
    only its own oldest early records; and in all, evicting from the fullest agency first. Bytes are
    estimated from the record's JSON size plus the objects that hold it (a 64 KiB note counts as such).
    An early ack only waits for a routing decision being read in parallel, so the oldest go first.
    """

    agency_records: int = 20_000
    agency_bytes: int = 16 * 1024 * 1024
    records: int = 200_000
    bytes: int = 128 * 1024 * 1024


_OVERHEAD = 600  # bytes of Python objects around a record's fields (struct, strings, datetime, index entries)


class _EarlyBuffer:
    """Early records by alert id, evicted oldest first by agency (see EarlyLimits). Pure bookkeeping."""

    def __init__(self, limits: EarlyLimits) -> None:
        self.limits = limits
        self._seq = 0
        # agency -> arrival number -> (alert id, record, estimated bytes), oldest first
        self._by_agency: dict[str, OrderedDict[int, tuple[str, Early, int]]] = {}
        self._agency_bytes: Counter[str] = Counter()
        self._of_alert: dict[str, dict[int, str]] = {}  # alert id -> arrival number -> agency
        self.records = 0
        self.bytes = 0
        self.evicted = 0

    def __len__(self) -> int:
        return self.records

    def agency_usage(self, agency: str) -> tuple[int, int]:
        """(records, estimated bytes) held for one agency."""
        return len(self._by_agency.get(agency, ())), self._agency_bytes[agency]

    def add(self, record: Early) -> None:
        size = len(msgspec.json.encode(record)) + _OVERHEAD
        self._seq += 1
        queue = self._by_agency.setdefault(record.agency, OrderedDict())
        queue[self._seq] = (record.alert_id, record, size)
        self._of_alert.setdefault(record.alert_id, {})[self._seq] = record.agency
        self._agency_bytes[record.agency] += size
        self.records += 1
        self.bytes += size
        limits = self.limits
        while len(queue) > limits.agency_records or self._agency_bytes[record.agency] > limits.agency_bytes:
            self._evict(record.agency)
        while self.records > limits.records or self.bytes > limits.bytes:
            self._evict(max(self._agency_bytes, key=self._agency_bytes.__getitem__))

    def pop(self, alert_id: str) -> list[Early]:
        """The records waiting for `alert_id`, in the order they were read."""
        found = []
        for seq, agency in sorted(self._of_alert.pop(alert_id, {}).items()):
            _, record, size = self._by_agency[agency].pop(seq)
            self._forget(agency, size)
            found.append(record)
        return found

    def _evict(self, agency: str) -> None:
        seq, (alert_id, _, size) = self._by_agency[agency].popitem(last=False)
        waiting = self._of_alert[alert_id]
        del waiting[seq]
        if not waiting:
            del self._of_alert[alert_id]
        self._forget(agency, size)
        self.evicted += 1

    def _forget(self, agency: str, size: int) -> None:
        self.records -= 1
        self.bytes -= size
        self._agency_bytes[agency] -= size
        if not self._by_agency[agency]:
            del self._by_agency[agency]
            del self._agency_bytes[agency]


@dataclass(frozen=True)
class Viewer:
    kind: Literal["agency", "operator"]
    name: str


# The ledger holds every alert's state, and a full collection walked all of it: with these structs (and the
# decisions, services/common/records.py) out of the collector's reach, 15,000 alerts took a collection from
# 288 to 56 ms, and with tuples instead of lists inside (a tuple of untracked items leaves the collector's
# lists at its first pass) to 1 ms (focused measurements). gc=False is sound only for objects in no
# reference cycle: these are trees of strings, numbers, times and tuples, and hold no reference back up.
class WebhookStatus(msgspec.Struct, kw_only=True, gc=False):
    webhook_id: str | None = None
    status: Literal["pending", "delivered", "retrying", "dead"] = "pending"
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None


class EscalationView(msgspec.Struct, kw_only=True, gc=False):
    kind: str
    level: int
    reason: str
    raised_at: datetime


State = Literal["routed", "delivered", "acknowledged", "cancelled", "withdrawn", "superseded"]
# States in which no acknowledgement is awaited any more: given, or the copy cancelled, withdrawn, or
# superseded by a later version whose severity rose (which starts a wait of its own).
ENDED = frozenset({"acknowledged", "cancelled", "withdrawn", "superseded"})


class RecipientState(msgspec.Struct, kw_only=True, gc=False):
    agency: str
    state: State
    # What the agency was sent (common/events.py): content, or a withdrawal or cancellation notice.
    event: str | None = None
    agreement_id: str | None
    redacted_fields: tuple[str, ...]
    channels: tuple[str, ...]
    routed_at: datetime
    webhook: WebhookStatus | None = None
    acknowledged_at: datetime | None = None
    response: str | None = None
    note: str | None = None
    ack_channel: str | None = None
    ack_due: datetime | None = None
    escalation_level: int = 0
    escalations: tuple[EscalationView, ...] = ()


@dataclass(frozen=True)
class Due:
    """An escalation the tracker owes: the recipient has not acknowledged by `deadline`."""

    alert_id: str
    agency: str
    origin: str
    level: int
    deadline: datetime
    webhook: bool
    partition: int = 0
    # The first alert id of the alert's thread ("": the alert is its own first), which keys the reminder on
    # the agency's topic like the thread's other records there, so it arrives in the thread's order.
    thread: str = ""


class AlertState(msgspec.Struct, kw_only=True, gc=False):
    alert_id: str
    origin: str
    msg_type: str
    severity: str
    urgency: str
    routed_at: datetime
    registry_version: int
    recipients: dict[str, RecipientState]


class OnwardView(msgspec.Struct, kw_only=True, gc=False):
    """A request for onward sharing (router/onward.py) as its steps left it."""

    request_id: str
    thread_id: str
    alert_id: str  # the version the latest step was about
    origin: str
    requester: str
    target: str
    state: str  # requested, approved, refused, revoked; cancelled (the thread was, while it was pending or approved)
    reason: str | None = None  # the requester's
    note: str | None = None  # the originator's
    # The rule that refused the copy after the originator approved (the originator and operators only).
    refusal: str | None = None
    requested_at: datetime
    decided_at: datetime | None = None


# What a requester sees of its own request: not why the policy refused the copy the originator approved,
# which would tell it about the agency it named (a suspension, an agreement).
# Nor the version the latest step was about, which the requester may not hold (under embargo, or a narrowing
# that withdrew it): it has the thread's id.
_REQUESTER_SEES = frozenset(OnwardView.__struct_fields__) - {"refusal", "alert_id"}


# Ledger.alert_list: how many alerts it lists by default and at most.
LIST_LIMIT = 100
LIST_MAX = 1000


# The stages that refuse a version before it is routed (alerts.rejected also records dead deliveries that a
# replay dropped, stage `replay`, of alerts that were routed).
REFUSING_STAGES = frozenset({"enricher", "router"})


class Ledger:
    def __init__(
        self,
        early: EarlyLimits | None = None,
        correlations: CorrelationLimits | None = None,
        retention: timedelta | None = None,
    ) -> None:
        self.alerts: dict[str, AlertState] = {}
        # How long a settled alert is held after its routing (retention.py); None: for ever.
        self.retention = retention
        # What is kept of the alerts retired (by this ledger, or read from alerts.retired), by alert id, packed
        # (retention.py: a year of them is most of what the tracker holds); summary() unpacks one.
        self.retired: dict[str, bytes] = {}
        self._late = 0  # records about retired alerts, changing nothing
        # First alert id of a thread -> how many of its alerts are held: its onward requests are retired with
        # the last of them.
        self._thread_held: Counter[str] = Counter()
        # Versions refused before routing, by alert id: `error` and `message` are what the originator may be told.
        self.refused: dict[str, AlertRejected] = {}
        self.routing: dict[str, AlertRouted] = {}
        # Decisions of operators' resend requests about an alert after its first, in order (routing_of).
        self.resends: dict[str, tuple[AlertRouted, ...]] = {}
        # Records read before their alert's routing. Bounded: anyone can ack an id that was never routed
        # (on its own acks topic), and such records must not grow the tracker without limit.
        self._early = _EarlyBuffer(early or EarlyLimits())
        self._not_recipient = 0
        # First alert id of a thread -> agency -> the alerts of the thread whose row for the agency may still
        # await something (a row ended since, by an ack, is dropped when next met): a new version ends the
        # waits it ends without walking the thread (_end_earlier_waits).
        self._waits: dict[str, dict[str, dict[str, None]]] = {}
        # alerts.routed partition each alert's decision came from: whoever owns it raises its escalations.
        self.partition_of: dict[str, int] = {}
        # Requests for onward sharing, by request id, and the ids of those each agency is a party to (the
        # originator or the requester): a listing costs the viewer's requests, not everyone's.
        self.onward: dict[str, OnwardView] = {}
        self._onward_of: dict[str, dict[str, None]] = {}
        self._onward_thread: dict[str, list[str]] = {}  # thread id -> its requests
        # The duty desk's view of correlations and of whom the router told of each (bounded).
        self.correlations = CorrelationDesk(correlations)
        # Changes folded in so far (the module's docstring): one more for every apply_* that changed something.
        self.version = 0
        # The alerts that may still await an acknowledgement, oldest first: what alert_list walks for the states
        # that need one (open, overdue, escalated), instead of every alert the tracker holds. The console asks
        # for "open" every second; a year of alerts would cost each ask a walk of millions of settled rows.
        # An alert found settled there leaves it (nothing makes a settled alert await again but a resend,
        # which puts it back through _track_waits).
        self._open: dict[str, None] = {}
        self.webhooks = WebhookTally()

    @property
    def dropped(self) -> dict[str, int]:
        """Records given up, by reason: from an agency that did not receive the (known) alert they name, so
        refused for good; and early records evicted from the bounded buffer before their alert was routed."""
        return {"not_a_recipient": self._not_recipient, "early_evicted": self._early.evicted, "retired": self._late}

    def sizes(self) -> dict[str, int]:
        """How many entries each structure holds (what retention bounds; the tracker publishes them)."""
        return {
            "alerts": len(self.alerts),
            "routing": len(self.routing),
            "resends": len(self.resends),
            "partition_of": len(self.partition_of),
            "waits": sum(len(alerts) for agencies in self._waits.values() for alerts in agencies.values()),
            "open": len(self._open),
            "onward": len(self.onward),
            "early": len(self._early),
            "refused": len(self.refused),
            "retired": len(self.retired),
        }

    def apply_routed(self, routed: AlertRouted, partition: int = 0) -> None:
        if routed.correlation_id is not None:
            # First: whom the router told of a correlation, not a version of `alert_id`. Folded into the
            # alert's views it would replace the later alert's recipients and start waits nobody owes.
            self.correlations.apply_decision(routed)
            self.version += 1
            return
        if routed.alert_id in self.retired and routed.onward is None:
            self._late += 1  # its routing replayed, or a resend of it (the module's docstring)
            return
        if routed.onward is not None:
            self._apply_onward(routed)
            self.version += 1
            if routed.alert_id not in self.alerts:
                return  # a step about a version read before this tracker's window: only the request is kept
        if routed.request_id is not None and routed.alert_id in self.alerts:
            self._apply_resent(routed)
            self.version += 1
            return
        if routed.alert_id in self.alerts:
            return  # routed again after a replay: the first decision stands
        self.version += 1
        self.partition_of[routed.alert_id] = partition
        recipients = {d.agency: _row(routed, d) for d in routed.decisions if d.delivered}
        self.alerts[routed.alert_id] = AlertState(
            alert_id=routed.alert_id,
            origin=routed.origin,
            msg_type=routed.msg_type,
            severity=routed.severity,
            urgency=routed.urgency,
            routed_at=routed.routed_at,
            registry_version=routed.registry_version,
            recipients=recipients,
        )
        self.routing[routed.alert_id] = routed
        self._thread_held[self._root_of(routed.alert_id)] += 1
        self._end_earlier_waits(routed)
        self._track_waits(routed.alert_id)
        if routed.msg_type == "Cancel":
            self._end_onward(self._root_of(routed.alert_id), routed.routed_at)
        for record in self._early.pop(routed.alert_id):
            self._apply(record)

    def _root_of(self, alert_id: str) -> str:
        """The first alert id of the thread of a routed alert."""
        routed = self.routing[alert_id]
        return routed.references[0] if routed.msg_type != "Alert" and routed.references else alert_id

    def _apply_resent(self, routed: AlertRouted) -> None:
        """A resend's decision (an operator's request, decided by the router) adds to the alert's first one:
        an agency sent a copy it did not hold gets a row (and owes the ack the decision says); a holder keeps
        its row and what it already did with it; a withdrawal ends the agency's waits on the thread."""
        alert = self.alerts[routed.alert_id]
        self.resends[routed.alert_id] = (*self.resends.get(routed.alert_id, ()), routed)
        for d in routed.decisions:
            if d.event in ONWARD_EVENTS:
                continue  # a notice about onward sharing: no copy of the alert, nothing to acknowledge
            row = alert.recipients.get(d.agency)
            if d.delivered and (row is None or row.state in ("withdrawn", "cancelled")):
                alert.recipients[d.agency] = _row(routed, d)
        self._track_waits(routed.alert_id)
        if any(event_of(routed.msg_type, d) == WITHDRAWN for d in routed.decisions):
            self._end_earlier_waits(routed)

    def _apply_onward(self, routed: AlertRouted) -> None:
        step = routed.onward
        assert step is not None
        root = routed.references[0] if routed.msg_type != "Alert" and routed.references else routed.alert_id
        view = self.onward.get(step.request_id)
        if view is None or step.state == "requested":
            view = OnwardView(
                request_id=step.request_id,
                thread_id=root,
                alert_id=routed.alert_id,
                origin=routed.origin,
                requester=step.requester,
                target=step.target,
                state=step.state,
                reason=step.reason if step.state == "requested" else None,
                requested_at=routed.routed_at,
            )
            self.onward[step.request_id] = view
            for party in (view.origin, view.requester):
                self._onward_of.setdefault(party, {})[step.request_id] = None
            self._onward_thread.setdefault(root, []).append(step.request_id)
            if step.state == "requested":
                return
        view.state = step.state
        view.alert_id = routed.alert_id
        view.note = step.note
        view.refusal = step.reason if step.state == "refused" else None
        view.decided_at = routed.routed_at

    def _end_onward(self, thread_id: str, at: datetime) -> None:
        """A Cancel ends the thread's requests awaiting the originator and its approvals (router/onward.py)."""
        for request_id in self._onward_thread.pop(thread_id, ()):
            view = self.onward[request_id]
            if view.state in ("requested", "approved"):
                view.state = "cancelled"
                view.decided_at = at

    def onward_requests(self, viewer: Viewer) -> list[dict[str, Any]]:
        """The requests the viewer may see: an agency those it asked and those about its own threads, an
        operator all; newest first."""
        ids = self.onward if viewer.kind == "operator" else self._onward_of.get(viewer.name, {})
        seen = [self._onward_seen(self.onward[i], viewer) for i in ids]
        return sorted((s for s in seen if s is not None), key=lambda s: s["requested_at"], reverse=True)

    def onward_request(self, request_id: str, viewer: Viewer) -> tuple[int, dict[str, Any]]:
        view = self.onward.get(request_id)
        seen = self._onward_seen(view, viewer) if view is not None else None
        if seen is None:
            # The same answer for a request that does not exist and for one the viewer may not know of.
            return 404, {"error": "not_found", "message": f"no onward-sharing request {request_id}"}
        return 200, seen

    @staticmethod
    def _onward_seen(view: OnwardView, viewer: Viewer) -> dict[str, Any] | None:
        body: dict[str, Any] = msgspec.to_builtins(view)
        if viewer.kind == "operator" or viewer.name == view.origin:
            return body
        if viewer.name == view.requester:
            return {k: v for k, v in body.items() if k in _REQUESTER_SEES}
        return None

    def _track_waits(self, alert_id: str) -> None:
        """Add the alert's rows that still await something to its thread's waits (_end_earlier_waits)."""
        waits = self._waits.setdefault(self._root_of(alert_id), {})
        for row in self.alerts[alert_id].recipients.values():
            if row.state not in ENDED:
                waits.setdefault(row.agency, {})[alert_id] = None
                if row.ack_due is not None:
                    self._open[alert_id] = None

    def _end_earlier_waits(self, routed: AlertRouted) -> None:
        """A later version ends the waits for an agency's earlier copies of its thread: a withdrawal or a
        cancel because there is nothing left to acknowledge, an update whose severity rose (it carries an
        ack deadline) because the wait restarts on it. A Cancel ends every earlier wait of the thread.

        Earlier: the thread's rows tracked so far (a new version's own are tracked after this). Costs what
        it ends, not the thread's length: the rows it ends leave the waits."""
        waits = self._waits.get(self._root_of(routed.alert_id))
        if not waits:
            return
        ending: dict[str, State]
        if routed.msg_type == "Cancel":
            ending = dict.fromkeys(waits, "cancelled")
        else:
            ending = {}
            for d in routed.decisions:
                event = event_of(routed.msg_type, d)
                if event == WITHDRAWN or d.rule == "agency_removed":
                    ending[d.agency] = "withdrawn"  # removed from the registry: it cannot even be told
                elif event == UPDATED and d.ack_due is not None:
                    ending[d.agency] = "superseded"
        for agency, end in ending.items():
            for alert_id in waits.pop(agency, ()):
                row = self.alerts[alert_id].recipients.get(agency)
                if row is not None and row.state not in ENDED:
                    row.state = end

    def apply_correlated(self, found: AlertCorrelated) -> bool:
        """A correlation for the duty desk; False when it changes nothing (correlations.py)."""
        changed = self.correlations.apply_correlated(found)
        self.version += changed
        return changed

    def correlation_page(
        self,
        viewer: Viewer,
        limit: int,
        before: Key | None,
        agency: str | None,
        kind: str | None,
        thread: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Correlations newest first, for operators only (`agency`: either originator or a notified agency;
        `thread`: either side's thread)."""
        if viewer.kind != "operator":
            return _desk_only()
        views, after = self.correlations.page(limit, before, agency, kind, thread)
        return 200, {"correlations": msgspec.to_builtins(views), "next": after}

    def correlation(self, correlation_id: str, viewer: Viewer) -> tuple[int, dict[str, Any]]:
        if viewer.kind != "operator":
            return _desk_only()
        view = self.correlations.views.get(correlation_id)
        if view is None:
            return 404, {"error": "not_found", "message": f"no correlation {correlation_id} is known"}
        return 200, msgspec.to_builtins(view)

    def apply_rejected(self, rejected: AlertRejected) -> None:
        """A version refused before routing (the first refusal of an id stands: a repeat is the same version)."""
        if rejected.stage in REFUSING_STAGES and rejected.alert_id not in self.refused:
            # Kept as read: of scalars only, msgspec keeps it out of the collector's reach (test_tracker_state.py).
            self.refused[rejected.alert_id] = rejected
            self.version += 1

    def apply_attempt(self, attempt: DeliveryAttempted) -> None:
        self._apply(attempt)

    def apply_ack(self, ack: AckSubmitted) -> bool:
        """Apply an ack; False when it changes nothing (a repeat, or not from a recipient)."""
        return self._apply(ack)

    def apply_escalation(self, escalation: EscalationRaised) -> bool:
        """Record an escalation (idempotent: the same kind and level twice is one)."""
        return self._apply(escalation)

    def due(self, now: datetime, owned: Collection[int] | None = None) -> list[Due]:
        """Escalations owed at `now`: level 1 at the deadline, level 2 (the duty desk) one period later.

        With `owned`, only for alerts whose decision is on one of those alerts.routed partitions.
        """
        owed = []
        for alert in self.alerts.values():
            if owned is not None and self.partition_of.get(alert.alert_id) not in owned:
                continue
            for row in alert.recipients.values():
                if row.ack_due is None or row.state in ENDED or row.escalation_level >= 2:
                    continue
                deadline = row.ack_due if row.escalation_level == 0 else row.ack_due + (row.ack_due - row.routed_at)
                if now >= deadline:
                    owed.append(
                        Due(
                            alert.alert_id,
                            row.agency,
                            alert.origin,
                            row.escalation_level + 1,
                            deadline,
                            "webhook" in row.channels,
                            self.partition_of.get(alert.alert_id, 0),
                            self._root_of(alert.alert_id),
                        )
                    )
        return owed

    def outstanding_counts(self) -> dict[str, int]:
        """How many acknowledgements each agency still owes (for the metric, without building rows).

        Asked every escalation check (a second): it walks the alerts that may still await an ack (`_open`),
        not every alert held, which grew with the retention period (issue 19). One found awaiting nothing
        leaves the index, as in alert_list (the same condition: a row not ended that has an ack deadline)."""
        counts: dict[str, int] = {}
        for alert_id in list(self._open):
            alert = self.alerts.get(alert_id)
            owed = False
            for r in alert.recipients.values() if alert is not None else ():
                if r.ack_due is not None and r.state not in ENDED:
                    counts[r.agency] = counts.get(r.agency, 0) + 1
                    owed = True
            if not owed:
                del self._open[alert_id]
        return counts

    def outstanding(self, agency: str | None) -> list[dict[str, Any]]:
        """Acknowledgements still expected (from one agency, or from all), soonest deadline first."""
        pending = sorted(
            (
                (r.ack_due, a, r)
                for a in self.alerts.values()
                for r in a.recipients.values()
                if r.ack_due is not None and r.state not in ENDED and (agency is None or r.agency == agency)
            ),
            key=lambda item: item[0],
        )
        return [
            msgspec.to_builtins(
                {
                    "alert_id": a.alert_id,
                    "agency": r.agency,
                    "origin": a.origin,
                    "severity": a.severity,
                    "state": r.state,
                    "ack_due": due,
                    "escalation_level": r.escalation_level,
                }
            )
            for due, a, r in pending
        ]

    def alert_list(
        self,
        viewer: Viewer,
        *,
        now: datetime,
        since: datetime | None = None,
        state: str | None = None,
        origin: str | None = None,
        limit: int = LIST_LIMIT,
    ) -> tuple[int, dict[str, Any]]:
        """The routed alerts, newest `routed_at` first, at most `limit` (1 to LIST_MAX), for operators only.

        Each is its status as an operator sees it, plus what a desk scans for: `awaiting` (recipients that owe
        an acknowledgement: a deadline, and their row not ended), `overdue` (of those, past the deadline at
        `now`), `escalation_level` (the highest of the rows not ended) and `thread_id`. `since` keeps those
        routed at or after it, `origin` one originator's, `state` those open, overdue, escalated or settled
        (waits.py has the table).

        An overdue row changes at `now` without a record: its escalation, raised at the deadline by the tracker,
        is the change that moves `version` (an ETag made of it stays honest within the escalation loop's beat).
        """
        if viewer.kind != "operator":
            return 403, {"error": "forbidden", "message": "only operators list alerts"}
        if state is not None and state not in ALERT_STATES:
            return 400, {"error": "bad_request", "message": f"state is one of {', '.join(ALERT_STATES)}"}
        if not 1 <= limit <= LIST_MAX:
            return 400, {"error": "bad_request", "message": f"limit is between 1 and {LIST_MAX}"}

        awaiting_only = state in ("open", "overdue", "escalated")

        def chosen() -> Iterator[tuple[AlertState, Waits]]:
            candidates = (self.alerts[i] for i in list(self._open)) if awaiting_only else self.alerts.values()
            for alert in candidates:
                if (since is not None and alert.routed_at < since) or (origin is not None and alert.origin != origin):
                    continue
                waits = waits_of(alert.recipients.values(), now, ENDED)
                if awaiting_only and not waits.awaiting:
                    del self._open[alert.alert_id]  # settled: it awaits nothing, now or later
                    continue
                if state is None or in_state(waits, state):
                    yield alert, waits

        newest = heapq.nlargest(limit, chosen(), key=lambda item: (item[0].routed_at, item[0].alert_id))
        listed = []
        for alert, waits in newest:
            item: dict[str, Any] = msgspec.to_builtins(alert)
            item.update(
                awaiting=waits.awaiting,
                overdue=waits.overdue,
                escalation_level=waits.escalation_level,
                thread_id=self._root_of(alert.alert_id),
            )
            listed.append(item)
        return 200, {"alerts": listed}

    def _apply(self, record: Early) -> bool:
        alert = self.alerts.get(record.alert_id)
        if alert is None and record.alert_id in self.retired:
            self._late += 1
            return False
        if alert is None:
            self._early.add(record)  # nothing to see yet: counted when its alert's routing folds it in
            return True
        changed = self._fold(alert, record)
        self.version += changed
        return changed

    def _fold(self, alert: AlertState, record: Early) -> bool:
        recipient = alert.recipients.get(record.agency)
        if recipient is None:
            self._not_recipient += 1
            return False
        if isinstance(record, EscalationRaised):
            if any(e.kind == record.kind and e.level == record.level for e in recipient.escalations):
                return False
            view = EscalationView(
                kind=record.kind, level=record.level, reason=record.reason, raised_at=record.raised_at
            )
            recipient.escalations = (*recipient.escalations, view)  # a tuple: untracked by the collector
            if record.kind == "ack_deadline":
                recipient.escalation_level = max(recipient.escalation_level, record.level)
            return True
        if isinstance(record, AckSubmitted):
            if recipient.state == "acknowledged":
                return False
            recipient.state = "acknowledged"
            recipient.acknowledged_at = record.submitted_at
            recipient.response = record.response
            recipient.note = record.note
            recipient.ack_channel = record.channel
            return True
        hook = recipient.webhook or WebhookStatus()
        recipient.webhook = hook
        if hook.status == "delivered":
            return False  # a late duplicate of an earlier success
        before = hook.status
        hook.webhook_id = record.webhook_id
        hook.attempts = max(hook.attempts, record.attempt)
        hook.last_status_code = record.status_code
        hook.last_error = record.error
        if record.outcome == "delivered":
            hook.status = "delivered"
            hook.delivered_at = record.attempted_at
            if recipient.state == "routed":
                recipient.state = "delivered"
        elif record.outcome in ("retrying", "dead"):
            hook.status = record.outcome
        self.webhooks.moved(record.agency, before, hook.status, record)
        return True

    def webhook_tally(self) -> dict[str, Any]:
        """Each agency's webhook copies by status and its last failure class (the console's endpoints page)."""
        return {"agencies": self.webhooks.all()}

    def recipient(self, alert_id: str, agency: str) -> tuple[int, dict[str, Any]]:
        """`agency`'s row of the alert; for a non-recipient the answer for an unknown alert, so that the two
        also take the same time (the tracker reads up to the end of alerts.routed before it says 404)."""
        alert = self.alerts.get(alert_id)
        row = alert.recipients.get(agency) if alert is not None else None
        if row is not None:
            return 200, {
                "alert_id": alert_id,
                "agency": agency,
                "recipient": True,
                "state": row.state,
                "thread_id": self._root_of(alert_id),
            }
        summary = self.summary(alert_id)
        kept = next((r for r in summary.recipients if r.agency == agency), None) if summary is not None else None
        if summary is None or kept is None:
            return unknown(alert_id)
        return 200, {
            "alert_id": alert_id,
            "agency": agency,
            "recipient": True,
            "state": kept.state,
            "thread_id": summary.thread_id,
        }

    def status(self, alert_id: str, viewer: Viewer) -> tuple[int, dict[str, Any]]:
        alert = self.alerts.get(alert_id)
        if alert is None:
            summary = self.summary(alert_id)
            return self._refusal(alert_id, viewer) if summary is None else _retired_status(summary, viewer)
        if viewer.kind == "operator" or viewer.name == alert.origin:
            return 200, msgspec.to_builtins(alert)
        own = alert.recipients.get(viewer.name)
        if own is None:
            return unknown(alert_id)  # not "forbidden": that would tell a stranger the alert exists
        # An allow-list, so a field added to AlertState later never reaches a recipient unless put here: it
        # learns neither the originator's registry version nor anything about other recipients, and one
        # that was sent a notice (not this version) not even the version's severity and urgency.
        shown = _RECIPIENT_SEES if own.event in CONTENT_EVENTS else _NOTICE_RECIPIENT_SEES
        body = {name: value for name, value in msgspec.to_builtins(alert).items() if name in shown}
        body["recipients"] = {viewer.name: msgspec.to_builtins(own)}
        return 200, body

    def _refusal(self, alert_id: str, viewer: Viewer) -> tuple[int, dict[str, Any]]:
        """A refused version as `viewer` may see it: operators all, its originator only what it may be told."""
        refused = self.refused.get(alert_id)
        if refused is None:
            return unknown(alert_id)
        told = {"error": refused.error, "message": refused.message, "rejected_at": refused.rejected_at}
        if viewer.kind == "operator":
            told |= {"stage": refused.stage, "reason": refused.reason}
        elif viewer.name != refused.origin or refused.error is None:
            return unknown(alert_id)
        body = {"alert_id": alert_id, "origin": refused.origin, "recipients": {}, "rejected": told}
        return 200, msgspec.to_builtins(body)

    def routing_of(self, alert_id: str, viewer: Viewer) -> tuple[int, dict[str, Any]]:
        routed = self.routing.get(alert_id)
        if routed is None:
            return self._retired_routing(alert_id, viewer)
        if viewer.kind == "operator" or viewer.name == routed.origin:
            body: dict[str, Any] = msgspec.to_builtins(routed)
            if alert_id in self.resends:
                body["resends"] = msgspec.to_builtins(self.resends[alert_id])
            return 200, body
        alert = self.alerts.get(alert_id)
        if alert is None or viewer.name not in alert.recipients:
            return unknown(alert_id)
        # A recipient knows the alert exists (it holds a copy), so it may be told why it cannot see more.
        return 403, {"error": "forbidden", "message": "only the originator and operators see the routing decision"}

    def _retired_routing(self, alert_id: str, viewer: Viewer) -> tuple[int, dict[str, Any]]:
        """A retired alert's routing: its summary for the originator and operators (the decision itself, with
        the refusals, stays on alerts.routed); to a recipient the same 403 as before, to anyone else `unknown`."""
        summary = self.summary(alert_id)
        if summary is None:
            return unknown(alert_id)
        if viewer.kind == "operator" or viewer.name == summary.origin:
            return _retired_status(summary, viewer)
        if any(r.agency == viewer.name for r in summary.recipients):
            return 403, {"error": "forbidden", "message": "only the originator and operators see the routing decision"}
        return unknown(alert_id)

    def retire(self, now: datetime) -> list[AlertRetired]:
        """Remove every alert settled and routed a retention or more before `now` (retention.py) from every
        structure, with the onward requests of its thread once none of the thread's alerts is held and the
        request is over; return their summaries, in the order the alerts were folded in. Nothing without a
        retention."""
        if self.retention is None:
            return []
        cutoff = now - self.retention
        # Every alert is looked at (a time comparison for the young): alerts.routed is read partition by
        # partition, so the order alerts were folded in is not quite that of routed_at.
        leaving = [a for a in self.alerts.values() if retirable(a, cutoff, ENDED)]
        summaries = [summary_of(a, self._root_of(a.alert_id), now) for a in leaving]
        for summary in summaries:
            self._forget(summary.alert_id)
            self.retired[summary.alert_id] = pack(summary)
        self._retire_onward(cutoff)
        self.version += bool(summaries)
        return summaries

    def apply_retired(self, summary: AlertRetired) -> None:
        """A summary read from alerts.retired: kept, and the alert's state dropped if held (another replica, or
        this tracker before a restart, retired it)."""
        if summary.alert_id in self.alerts:
            self._forget(summary.alert_id)
        self._early.pop(summary.alert_id)  # records read before it, about an alert this tracker never held
        if summary.alert_id not in self.retired:
            self.retired[summary.alert_id] = pack(summary)
            self.version += 1

    def summary(self, alert_id: str) -> AlertRetired | None:
        """What is kept of a retired alert, or None if it was not retired."""
        held = self.retired.get(alert_id)
        return None if held is None else unpack(held)

    def _forget(self, alert_id: str) -> None:
        """Drop a held alert from every structure that names it."""
        root = self._root_of(alert_id)
        alert = self.alerts.pop(alert_id)
        del self.routing[alert_id]
        self.resends.pop(alert_id, None)
        self.partition_of.pop(alert_id, None)
        self._open.pop(alert_id, None)
        for row in alert.recipients.values():
            if row.webhook is not None:
                self.webhooks.forgotten(row.agency, row.webhook.status)
        thread = self._waits.get(root, {})
        for agency in alert.recipients:
            waiting = thread.get(agency)
            if waiting is not None:
                waiting.pop(alert_id, None)
                if not waiting:
                    del thread[agency]
        if not thread:
            self._waits.pop(root, None)
        self._early.pop(alert_id)  # none should wait for a held alert; dropped all the same
        self._thread_held[root] -= 1
        if self._thread_held[root] <= 0:
            del self._thread_held[root]

    def _retire_onward(self, cutoff: datetime) -> None:
        """Onward requests that are over (refused, revoked, cancelled) and were decided before `cutoff`, of
        threads none of whose alerts is held any more. One still requested or approved is kept: it can move."""
        over = [
            v
            for v in self.onward.values()
            if v.state in ("refused", "revoked", "cancelled")
            and v.decided_at is not None
            and v.decided_at <= cutoff
            and v.thread_id not in self._thread_held
        ]
        for view in over:
            del self.onward[view.request_id]
            for party in (view.origin, view.requester):
                mine = self._onward_of.get(party)
                if mine is not None:
                    mine.pop(view.request_id, None)
                    if not mine:
                        del self._onward_of[party]
            requests = self._onward_thread.get(view.thread_id)
            if requests is not None and view.request_id in requests:
                requests.remove(view.request_id)
                if not requests:
                    del self._onward_thread[view.thread_id]


def _retired_status(summary: AlertRetired, viewer: Viewer) -> tuple[int, dict[str, Any]]:
    """A retired alert's status from its summary, by the rules of Ledger.status: the originator and operators see
    every recipient, a recipient its own row and what its copy let it see, anyone else `unknown`."""
    body: dict[str, Any] = msgspec.to_builtins(summary)
    # In the shape of a held alert's rows (docs/openapi.yaml, AlertStatus): the webhook is an object there, and
    # a client must not have to tell a retired alert's answer from a held one's to read it.
    rows = {
        r["agency"]: {**r, "webhook": {"status": r["webhook"]} if r["webhook"] else None}
        for r in body.pop("recipients")
    }
    if viewer.kind == "operator" or viewer.name == summary.origin:
        return 200, {**body, "recipients": rows}
    own = next((r for r in summary.recipients if r.agency == viewer.name), None)
    if own is None:
        return unknown(summary.alert_id)
    shown = _RECIPIENT_SEES if own.event in CONTENT_EVENTS else _NOTICE_RECIPIENT_SEES
    seen = {name: value for name, value in body.items() if name in shown or name == "retired_at"}
    return 200, {**seen, "recipients": {viewer.name: rows[viewer.name]}}


def _row(routed: AlertRouted, d: RoutingDecision) -> RecipientState:
    """A delivered decision's recipient row, as its copy was committed to the agency's topic."""
    return RecipientState(
        agency=d.agency,
        state="delivered" if "kafka" in d.channels else "routed",
        event=event_of(routed.msg_type, d),
        agreement_id=d.agreement_id,
        redacted_fields=d.redacted_fields,
        channels=d.channels,
        routed_at=routed.routed_at,
        webhook=WebhookStatus() if "webhook" in d.channels else None,
        ack_due=d.ack_due,
    )


_NOTICE_RECIPIENT_SEES = frozenset({"alert_id", "origin", "msg_type", "routed_at"})
_RECIPIENT_SEES = _NOTICE_RECIPIENT_SEES | {"severity", "urgency"}


def _desk_only() -> tuple[int, dict[str, Any]]:
    """The view names both originators and every agency told: an agency is told of a correlation only by its
    own alert.correlated notice (the gateway refuses it first, gateway/access.py)."""
    return 403, {"error": "forbidden", "message": "the duty desk's view of correlations is for operators"}


def unknown(alert_id: str) -> tuple[int, dict[str, Any]]:
    """The one answer for an alert that does not exist and for one the viewer may not know exists."""
    return 404, {"error": "not_found", "message": f"no alert {alert_id} has been routed"}
