"""Onward sharing of an originator-controlled thread: what one agency's step decides. Pure: no I/O.

A recipient of an alert marked `originator_control` may not pass it on; it may ask the originator to let the
system share it with an agency it names. The gateway writes each step (OnwardAction on requests.onward, keyed
by the thread, for the agency it authenticated); the router that owns the thread's partition decides it in
that partition's transaction, against what the thread's decisions left (threads.py):

    outcome = decide_step(action, thread, version, registry)

`version` is the thread's latest routed version. An outcome is the step to record on alerts.routed (None:
nothing is recorded) and the verdicts to send with it: notices (onward.requested to the originator,
onward.approved or onward.refused to the requester), the approved agency's copy, a revoked copy's withdrawal.

    ask      by a holder of the thread          -> requested: the originator is asked (onward.requested)
             anyone else, or a thread unknown   -> onward.refused `not_holder` to the asker, nothing recorded
                                                   (the same answer for both: asking probes nothing)
             a thread not under originator control -> onward.refused `not_originator_control`
             naming itself, or the originator   -> onward.refused `invalid_target`
             an originator no longer active     -> onward.refused `not_permitted` (never why: its standing)
             the same request again, or one for the same agency pending already -> ignored
             a thread with MAX_PENDING requests pending (MAX_PENDING_PER_REQUESTER of the asker's)
                                                -> onward.refused `too_many_requests`
    approve  by the originator, of a pending    -> the agency's copy as policy.granted_verdict decides it;
             request                               approved (onward.approved to the requester), or refused
                                                   with the rule that stopped it (onward.refused `not_permitted`
                                                   to the requester: it learns nothing of that agency's
                                                   standing); an agency that holds the thread already gets
                                                   no second copy, and the approval still stands
             once the requester holds nothing, or -> refused `requester_not_holder`
             would not be sent this version today
             while the latest version is under  -> approved, the copy recorded `embargoed` and not sent:
             embargo                               the release reaches the agency under the approval
    refuse   by the originator, of a pending    -> refused (onward.refused `refused_by_originator`)
    revoke   by the originator, of an approval  -> revoked: the grant ends, and every agency that held the
                                                   thread only through approvals that no longer cover it (its
                                                   own, or one further down a chain) is withdrawn
                                                   (alert.withdrawn `onward_revoked`)
    anything else (not the originator, no such request, a cancelled thread) is ignored with a reason the
    router logs: the gateway already answered the caller from the tracker's view, so only a race gets here.

An approval lasts for the thread, within bounds (policy._granted): a later version reaches the agency while
the requester is itself permitted that version (a narrowing that withdraws the requester withdraws the agency
too) and its TLP is not above the one approved, redacted at least as the requester's copy is now and was when
the originator approved (`floor`); until the originator revokes it or cancels the thread.
"""

from __future__ import annotations

import msgspec

from services.common.events import CONTENT_EVENTS, ONWARD_APPROVED, ONWARD_REFUSED, ONWARD_REQUESTED, WITHDRAWN
from services.common.records import AlertEnriched, OnwardAction, OnwardNotice, OnwardStep
from services.common.registry import Registry
from services.router.policy import Verdict, embargoed, entitled, granted_verdict, holder_verdict
from services.router.schedule import under_embargo
from services.router.threads import HELD_BY_APPROVAL, Thread

# Reason codes an agency is told; none names another agency or says anything about its standing.
NOT_HOLDER = "not_holder"
NOT_ORIGINATOR_CONTROL = "not_originator_control"
INVALID_TARGET = "invalid_target"
NOT_PERMITTED = "not_permitted"
REFUSED_BY_ORIGINATOR = "refused_by_originator"
TOO_MANY_REQUESTS = "too_many_requests"
# Requests awaiting the originator on one thread, at most: more is a flood, not a need.
MAX_PENDING = 16
# And at most this many of one requester, so that one holder cannot take every place (red team).
MAX_PENDING_PER_REQUESTER = 4
ONWARD_REVOKED = "onward_revoked"


class Outcome(msgspec.Struct, frozen=True):
    """What a step decides: the step to record (None: nothing), the verdicts to send with it, each notice's
    `onward` body by agency, and the reason a step was ignored (logged only)."""

    step: OnwardStep | None = None
    verdicts: tuple[Verdict, ...] = ()
    notices: dict[str, OnwardNotice] = {}
    ignored: str | None = None


def decide_step(
    action: OnwardAction, thread: Thread | None, version: AlertEnriched | None, registry: Registry
) -> Outcome:
    """The outcome of one step. `thread` and `version`: the thread's state and latest routed version (None when
    the thread is not known on this partition)."""
    if action.action == "ask":
        return _ask(action, thread, version, registry)
    if thread is None or version is None:
        return Outcome(ignored=f"{action.thread_id} is not a thread routed here")
    if action.agency != thread.origin:
        return Outcome(ignored=f"{action.agency} is not the originator of {thread.root}")
    if thread.cancelled:
        return Outcome(ignored=f"{thread.root} was cancelled")
    if action.action == "revoke":
        return _revoke(action, thread, version, registry)
    pending = thread.pending.get(action.request_id)
    if pending is None:
        return Outcome(ignored=f"request {action.request_id} is not awaiting {thread.origin}'s answer")
    step = OnwardStep(
        request_id=action.request_id,
        action_id=action.action_id,
        requester=pending.requester,
        target=pending.target,
        state="refused",
    )
    notice = OnwardNotice(
        request_id=action.request_id, requester=pending.requester, target=pending.target, text=action.text
    )
    if action.action == "refuse":
        step = msgspec.structs.replace(step, note=action.text)
        return _answer(step, notice, REFUSED_BY_ORIGINATOR)
    return _approve(action, step, notice, thread, version, registry)


def _ask(action: OnwardAction, thread: Thread | None, version: AlertEnriched | None, registry: Registry) -> Outcome:
    requester, target = action.agency, action.target or ""
    notice = OnwardNotice(request_id=action.request_id, requester=requester, target=target, text=action.text)
    if thread is None or version is None or thread.cancelled or requester not in thread.holders:
        return _told(requester, NOT_HOLDER, notice)
    if not version.alert.originator_control:
        return _told(requester, NOT_ORIGINATOR_CONTROL, notice)
    if target in (requester, thread.origin):
        return _told(requester, INVALID_TARGET, notice)
    origin = registry.agencies.get(thread.origin)
    if origin is None or not origin.active:
        # Not `originator_unavailable`: that would tell the asker the originator is suspended.
        return _told(requester, NOT_PERMITTED, notice)
    if action.request_id in thread.pending or action.request_id in thread.grants:
        return Outcome(ignored=f"request {action.request_id} was asked already")
    if any(p.requester == requester and p.target == target for p in thread.pending.values()):
        return Outcome(ignored=f"{requester} has a request for {target} on {thread.root} pending already")
    mine = sum(1 for p in thread.pending.values() if p.requester == requester)
    if len(thread.pending) >= MAX_PENDING or mine >= MAX_PENDING_PER_REQUESTER:
        return _told(requester, TOO_MANY_REQUESTS, notice)
    step = OnwardStep(
        request_id=action.request_id,
        action_id=action.action_id,
        requester=requester,
        target=target,
        state="requested",
        reason=action.text,
    )
    asked = Verdict(
        thread.origin,
        True,
        "onward_requested",
        f"{requester} asks to share {thread.root} with {target}",
        event=ONWARD_REQUESTED,
    )
    return Outcome(step=step, verdicts=(asked,), notices={thread.origin: notice})


def _approve(
    action: OnwardAction,
    step: OnwardStep,
    notice: OnwardNotice,
    thread: Thread,
    version: AlertEnriched,
    registry: Registry,
) -> Outcome:
    step = msgspec.structs.replace(step, note=action.text)
    held = thread.holders.get(step.requester)
    now = holder_verdict(step.requester, version, thread, registry)
    if held is None or now.event not in CONTENT_EVENTS:
        # It holds nothing, or would not be sent this version today (its agreement changed since): an
        # approval shares what the requester may hold now (red team: it shared the version regardless).
        return _answer(msgspec.structs.replace(step, reason="requester_not_holder"), notice, NOT_PERMITTED)
    # At least as the requester's copy was and is now: what its copy left out, what its agreement leaves out.
    floor = set(held.redact) | now.redact
    for agreement in registry.agreements:
        if agreement.id == held.agreement_id:
            floor.update(agreement.redact)
    target = registry.agencies.get(step.target)
    if target is None:
        return _answer(msgspec.structs.replace(step, reason="agency_removed"), notice, NOT_PERMITTED)
    approved = msgspec.structs.replace(step, state="approved", floor=tuple(sorted(floor)), tlp=version.alert.tlp)
    told = _notice_verdict(step.requester, ONWARD_APPROVED, None)
    if step.target in thread.holders:
        # Nothing new to send. The approval is a grant for the versions to come only if the agency holds the
        # thread through approvals alone: one that holds it by the rules must not be shielded by it from a
        # later narrowing (red team).
        by_rules = entitled(step.target, version, msgspec.structs.replace(thread, grants={}), registry)
        rule = "already_holder" if by_rules else HELD_BY_APPROVAL
        kept = Verdict(step.target, False, rule, f"{step.target} holds {thread.root} already")
        return Outcome(step=approved, verdicts=(kept, told), notices={step.requester: notice})
    copy = granted_verdict(version, registry, target, frozenset(floor))
    if copy.delivered and (until := under_embargo(version)) is not None and until > action.at:
        # The latest version is still under embargo: the approval stands, and its release reaches the agency.
        [copy] = embargoed([copy], until)
        return Outcome(step=approved, verdicts=(copy, told), notices={step.requester: notice})
    if not copy.delivered:
        refused = msgspec.structs.replace(step, reason=copy.rule)
        return Outcome(
            step=refused,
            verdicts=(copy, _notice_verdict(step.requester, ONWARD_REFUSED, NOT_PERMITTED)),
            notices={step.requester: notice},
        )
    return Outcome(step=approved, verdicts=(copy, told), notices={step.requester: notice})


def _revoke(action: OnwardAction, thread: Thread, version: AlertEnriched, registry: Registry) -> Outcome:
    grant = thread.grants.get(action.request_id)
    if grant is None:
        return Outcome(ignored=f"request {action.request_id} is no approval in force on {thread.root}")
    code = grant.target
    step = OnwardStep(
        request_id=action.request_id,
        action_id=action.action_id,
        requester=grant.requester,
        target=code,
        state="revoked",
        note=action.text,
    )
    # Without this approval: the rules, and the other approvals still in force. Every agency holding through
    # approvals is decided again, not only this one's: one that holds through an approval asked by this one's
    # agency (a chain) loses it too (red team: it kept its copy, untold, until the next version).
    rest = msgspec.structs.replace(thread, grants={r: g for r, g in thread.grants.items() if r != action.request_id})
    through = sorted({g.target for g in thread.grants.values()} & set(thread.holders))
    losing = [c for c in through if not entitled(c, version, rest, registry)]
    withdrawn = tuple(
        Verdict(
            c,
            True,
            "withdrawn",
            "withdrawn: the originator revoked an approval",
            event=WITHDRAWN,
            notice=ONWARD_REVOKED,
        )
        for c in losing
    )
    return Outcome(step=step, verdicts=withdrawn)


def _told(requester: str, code: str, notice: OnwardNotice) -> Outcome:
    """An ask refused before the originator sees it: a notice to the asker only, nothing recorded."""
    return Outcome(verdicts=(_notice_verdict(requester, ONWARD_REFUSED, code),), notices={requester: notice})


def _answer(step: OnwardStep, notice: OnwardNotice, code: str) -> Outcome:
    return Outcome(
        step=step, verdicts=(_notice_verdict(step.requester, ONWARD_REFUSED, code),), notices={step.requester: notice}
    )


def _notice_verdict(agency: str, event: str, code: str | None) -> Verdict:
    """A notice to the requester: rule `onward_answer` (not `onward_approved`, the rule of the copy an approval
    sends), the event and reason code as its reason."""
    return Verdict(agency, True, "onward_answer", f"{event} {code or ''}".strip(), event=event, notice=code)
