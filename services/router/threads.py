"""What each agency holds of an alert's thread, folded from the router's own decisions. Pure: no I/O.

A thread is an original alert and the Updates and Cancel that name it first in `references`. Every version
is decided by the whole policy (policy.fan_out), and what an agency receives depends on what it holds:

    thread = None
    for decision in decisions_of_the_thread:       # alerts.routed, in order
        thread = advanced(thread, decision)
    thread.holders                                   # agency -> the agreement and redaction of its copy

An agency holds the thread from its first content copy (`alert.created`) until it is told to purge it
(`alert.withdrawn`) or the thread is cancelled; an Update under embargo (rule `embargoed`) leaves what it
held as it was until the release. The thread remembers its latest version from the originator (`latest`):
a release the system issues from an earlier version's schedule is refused (policy.fan_out). Decisions
written before versions were decided whole carry no `event`; theirs is read from the message type (a
Cancel) and `delivered` (a content copy), which is what those decisions meant.

A resend's decision (it carries a `request_id`) adds to the thread what its one agency was sent again, and
is not a version: the thread's severity, latest version and other holders stay as they were.

So does a step of onward sharing (it carries `onward`, router/onward.py): a request the originator was asked
about is `pending` until it approves or refuses it; an approval is a `grant`, by request id (the agency it
names may hold the thread while the requester may, up to the TLP approved, at least as redacted as the
requester's copy: policy._granted), until the originator revokes it, and adds the copy it sent to
`holders`; a revocation's withdrawal removes it.
"""

from __future__ import annotations

import functools

import msgspec

from services.common.events import CONTENT_EVENTS, EMBARGOED, WITHDRAWN, event_of
from services.common.records import AlertRouted

# The rule of a copy an approval of onward sharing sent (policy.ONWARD_APPROVED_RULE; policy imports this module).
ONWARD_APPROVED_RULE = "onward_approved"
# An approval for an agency that holds the thread already, only through other approvals: nothing is sent, and
# the approval is a grant of its own (revoking the other leaves it). One that holds it by the rules gets none.
HELD_BY_APPROVAL = "already_holder_by_approval"


class Holding(msgspec.Struct, frozen=True, gc=False):
    """An agency's copy of the thread: the agreement that permitted it, the fields removed from it, and the
    version it is (a notice of correlation names a value only to an agency whose copy of that very version
    showed it: router/correlation.py)."""

    agreement_id: str | None
    redact: frozenset[str]
    version: str = ""


class Grant(msgspec.Struct, frozen=True, gc=False):
    """The originator's approval that one more agency may hold the thread (onward sharing)."""

    target: str
    requester: str
    # Fields every copy of the thread to the agency leaves out at least: the requester's, when approved.
    floor: frozenset[str]
    # The TLP of the version approved: a later version above it needs an approval of its own.
    tlp: str


class Pending(msgspec.Struct, frozen=True, gc=False):
    """A request for onward sharing the originator has been asked about and has not answered."""

    requester: str
    target: str


class Thread(msgspec.Struct, frozen=True, gc=False):
    root: str
    origin: str
    # Of the latest version: an Update restarts a recipient's acknowledgement only when severity rises.
    severity: str
    holders: dict[str, Holding]
    cancelled: bool = False
    # The alert id of the latest version the originator sent (not one the system issued from a schedule):
    # a new version replaces the schedule of the versions before it.
    latest: str = ""
    # Onward sharing (router/onward.py): requests awaiting the originator, and approvals, by request id.
    pending: dict[str, Pending] = {}
    grants: dict[str, Grant] = {}


def root_of(routed: AlertRouted) -> str:
    return routed.references[0] if routed.msg_type != "Alert" and routed.references else routed.alert_id


def advanced(thread: Thread | None, routed: AlertRouted) -> Thread | None:
    """The thread after `routed`, one of its decisions in order (None: a follow-up of a thread not known)."""
    if routed.correlation_id is not None:
        return thread  # who was told of a correlation: nobody holds anything more or less (router/correlation.py)
    if routed.onward is not None:
        return _onward(thread, routed)
    if routed.request_id is not None:
        return _resent(thread, routed)
    if routed.msg_type == "Alert":
        thread = Thread(
            root=routed.alert_id, origin=routed.origin, severity=routed.severity, holders={}, latest=routed.alert_id
        )
    elif thread is None:
        return None  # its original is older than what was read: the thread is unknown, as its Updates will be
    holders = dict(thread.holders)
    for d in routed.decisions:
        event = event_of(routed.msg_type, d)
        if event in CONTENT_EVENTS:
            holders[d.agency] = Holding(d.agreement_id, _fields(tuple(d.redacted_fields)), routed.alert_id)
        elif routed.msg_type != "Alert" and d.rule != EMBARGOED:
            # Withdrawn, cancelled, or no longer in the registry (so nothing could be sent): holds nothing now.
            holders.pop(d.agency, None)
    cancelled = routed.msg_type == "Cancel"
    return Thread(
        root=thread.root,
        origin=thread.origin,
        severity=routed.severity,
        holders={} if cancelled else holders,
        cancelled=cancelled,
        latest=thread.latest if routed.scheduled_by is not None else routed.alert_id,
        pending={} if cancelled else thread.pending,
        grants={} if cancelled else thread.grants,
    )


def _resent(thread: Thread | None, routed: AlertRouted) -> Thread | None:
    """A resend's decision (router/resend.py) is not a new version: it changes only what its agency holds."""
    if thread is None or thread.cancelled:
        return thread
    holders = dict(thread.holders)
    for d in routed.decisions:
        event = event_of(routed.msg_type, d)
        if event in CONTENT_EVENTS:
            holders[d.agency] = Holding(d.agreement_id, _fields(tuple(d.redacted_fields)), routed.alert_id)
        elif event == WITHDRAWN:
            holders.pop(d.agency, None)
    return msgspec.structs.replace(thread, holders=holders)


def _onward(thread: Thread | None, routed: AlertRouted) -> Thread | None:
    """A step of onward sharing: what it sent changes the holders as a resend's does; the step itself the
    thread's pending requests and grants."""
    thread = _resent(thread, routed)
    step = routed.onward
    if thread is None or thread.cancelled or step is None:
        return thread
    pending = dict(thread.pending)
    grants = dict(thread.grants)
    if step.state == "requested":
        pending[step.request_id] = Pending(step.requester, step.target)
    else:
        pending.pop(step.request_id, None)
    # A grant only where the approval sent the agency its copy (or recorded it under embargo, for the release):
    # approving a request for an agency that held the thread already sends nothing, and must not leave it a
    # grant that a later narrowing would not reach (red team). A step written without `tlp` (before it was
    # recorded) covers only CLEAR: the originator approves again for more.
    if step.state == "approved" and any(
        d.agency == step.target and d.rule in (ONWARD_APPROVED_RULE, EMBARGOED, HELD_BY_APPROVAL)
        for d in routed.decisions
    ):
        grants[step.request_id] = Grant(step.target, step.requester, _fields(tuple(step.floor)), step.tlp or "CLEAR")
    elif step.state == "revoked":
        grants.pop(step.request_id, None)
    return msgspec.structs.replace(thread, pending=pending, grants=grants)


@functools.lru_cache(maxsize=1024)
def _fields(names: tuple[str, ...]) -> frozenset[str]:
    """One shared set per distinct list of redacted fields: a week of decisions holds millions of these."""
    return frozenset(names)
