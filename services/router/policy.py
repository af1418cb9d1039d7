"""The sharing decision: which agencies receive an alert, under which agreement, and why. Pure: no I/O.

    verdicts = decide(enriched, registry)     # one Verdict per agency in the registry, origin included

An agency B receives alert X from originator A only when every rule holds (docs/architecture.md, Sharing rules);
the first rule that fails is the recorded reason, so an operator reading `alerts.routed` sees exactly why:

    originator           B submitted X
    agency_inactive      B is suspended in the registry
    origin_unknown       A is not an active agency of the registry
    not_releasable       X names releasable_to (or originator control) and B is not in it
    not_subscribed       no subscription of B matches X (category, place, minimum severity), and B's country
                         is not affected
    below_grading        the subscriptions of B that match X all ask for a better grading than X's, and B's
                         country is not affected
    no_agreement         no agreement lets A share with B at all
    agreement_not_in_force  agreements exist but none is in force (dates, suspension)
    category_not_covered the agreements in force do not cover X's category
    outside_agreement_area  those agreements cover other countries or regions than X affects
    tlp_exceeds_agreement the agreements covering the category allow a lower TLP than X's
    grading_below_agreement  the agreements that would permit X all require a better grading than X's
    shared               delivered, under the named agreement

Grading is the Admiralty's: source reliability A (best) to E and information credibility 1 (best) to 5, and
F and 6 for "cannot be judged", which is also what an alert submitted without a grading carries (the gateway's
default). A subscription may ask for a minimum of either or both, and an agreement may require one; F and 6
meet no minimum, since an analyst who asks for B sources wants a source someone vouched for, not one nobody
could judge. A subscription's minimum, like its minimum severity, only narrows what the subscription brings
in: an agency whose own country X affects is interested whatever its subscriptions ask, since it must hear of
threats to its own country. An agreement's minimum is a condition of sharing under it, on every path (onward
sharing too): it applies whatever makes B interested.

Every version of an alert is decided by these rules (`fan_out`); what an agency then receives depends on
what it holds of the thread (threads.py):

    permitted now, held before      alert.updated, redacted as the permitting agreement requires now
    permitted now, not held before  alert.created with this version (a TLP downgrade or a wider
                                    releasable_to re-disseminates this way)
    held before, not permitted now  alert.withdrawn (rule `withdrawn`): a notice with the thread id and the
                                    rule that failed, nothing of the content; the agency purges its copy
    otherwise                       nothing, and the rule that failed is recorded

A version under embargo (`embargo_until`) is decided at once and sends nothing with content before then
(`embargoed`: each copy it would send is recorded as not delivered, with the time); a withdrawal still goes,
since it reveals nothing. A release the system issues from a version's schedule (router/schedule.py) is
decided like any Update, and refused once the originator has sent a later version of the thread or while
the originator is suspended (nothing is issued in the name of an agency that may not use the exchange).

A Cancel reaches every holder (`alert.cancelled`, no content, rule `cancelled`) whatever the registry says
now, since it reveals nothing new; others get `not_holder`. A holder the registry no longer lists cannot be
written to (its topic and ACLs are gone) and is recorded as `agency_removed`. Only the thread's originator
may send a follow-up, and only to a thread routed here and not cancelled. A refused version is a `Refusal`:
the reason operators read, with the rule that refused it (router/refusals.py decides what the agency that
sent it is told).

A resend (an operator's request to send one agency again what today's registry lets it have) decides the
latest version of each thread for that agency by the same rules (`resend_verdict`); a cancelled thread is
`thread_cancelled`.

An agency the originator approved onward sharing to (router/onward.py) holds a grant on the thread: a version
the rules above refuse it for any reason but its own standing or the originator's is decided by
`granted_verdict` instead (rule `onward_approved`): releasable_to and subscriptions give way to the
originator's own approval, an agreement between the two, if one exists, still bounds the copy, and the copy
leaves out at least what the requester's did.

When several agreements permit the same share, the one that redacts the fewest fields applies (ties by
id), so a narrower agreement never hides what a broader one between the same parties allows.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from services.common import taxonomy
from services.common.events import CANCELLED, CONTENT_EVENTS, CREATED, EMBARGOED, UPDATED, WITHDRAWN
from services.common.records import (
    JUDGED_CREDIBILITY,
    JUDGED_RELIABILITY,
    SEVERITY_ORDER,
    TLP_LEVELS,
    Alert,
    AlertEnriched,
)
from services.common.registry import AgencyEntry, Registry
from services.common.registry.model import Agreement
from services.router import threads
from services.router.threads import Thread


class Refusal(str):
    """Why a version is refused: the reason itself (operators read it on alerts.rejected; it may name the
    thread's originator), with `rule`, its code. A str, so every caller that tells a refusal from verdicts by
    `isinstance(result, str)` goes on working.

        thread_unknown           the thread was not routed here (unknown, or older than the window)
        not_originator           the sender is not the thread's originator
        thread_cancelled         the thread was cancelled (only its originator gets this far)
        release_superseded       a scheduled release whose schedule a later version replaced
        release_origin_inactive  a scheduled release in the name of an agency not active now
    """

    rule: str

    def __new__(cls, rule: str, reason: str) -> Refusal:
        refusal = super().__new__(cls, reason)
        refusal.rule = rule
        return refusal


class Verdict(msgspec.Struct, frozen=True):
    # A Struct, not a frozen dataclass: eleven are made for every alert, and a frozen dataclass sets each
    # field through object.__setattr__ (a sixth of the policy's time; bench/).
    agency: str
    delivered: bool
    rule: str
    reason: str
    agreement_id: str | None = None
    # Fields removed from this recipient's copy.
    redact: frozenset[str] = frozenset()
    # What a delivered verdict sends (threads.py): alert.created or alert.updated with content,
    # alert.withdrawn or alert.cancelled as a notice without any.
    event: str = ""
    # Whether this copy starts a wait for the agency's acknowledgement.
    awaits_ack: bool = False
    # A withdrawal notice's reason code: the rule that no longer permits the agency (names no one).
    notice: str | None = None


def decide(enriched: AlertEnriched, registry: Registry) -> list[Verdict]:
    """The verdict for every agency of the registry, in code order."""
    return [verdict_for(enriched, registry, agency) for agency in registry.agencies_by_code]


def verdict_for(enriched: AlertEnriched, registry: Registry, agency: AgencyEntry) -> Verdict:
    alert = enriched.alert
    origin = registry.agencies.get(enriched.origin)
    code = agency.code

    if agency.code == enriched.origin:
        return Verdict(code, False, "originator", "submitted the alert")
    if not agency.active:
        return Verdict(code, False, "agency_inactive", f"{code} is suspended in the registry")
    if origin is None or not origin.active:
        return Verdict(code, False, "origin_unknown", f"originator {enriched.origin} is not an active agency")
    if alert.releasable_to and code not in alert.releasable_to and agency.country not in alert.releasable_to:
        why = "originator control names" if alert.originator_control else "releasable_to names"
        return Verdict(code, False, "not_releasable", f"{why} only {', '.join(alert.releasable_to)}")
    refusal = not_interested(agency, enriched, registry)
    if refusal is not None:
        matching = f"{alert.category}/{alert.severity}"
        not_affected = f"{agency.country} is not an affected country"
        if refusal == "below_grading":
            why = f"graded {_grade(alert)}: below the minimum of every subscription matching {matching}"
            return Verdict(code, False, refusal, f"{why}, and {not_affected}")
        return Verdict(code, False, refusal, f"no subscription matches {matching} and {not_affected}")

    between = registry.agreements_between(enriched.origin, code)
    if not between:
        return Verdict(code, False, "no_agreement", f"no agreement lets {enriched.origin} share with {code}")
    chosen = _permitting(enriched, registry, code, between)
    if isinstance(chosen, Verdict):
        return chosen
    return Verdict(
        code, True, "shared", f"shared under {chosen.id}", chosen.id, frozenset(chosen.redact), CREATED, True
    )


def granted_verdict(enriched: AlertEnriched, registry: Registry, agency: AgencyEntry, floor: frozenset[str]) -> Verdict:
    """A version for an agency the originator approved onward sharing to (router/onward.py): releasable_to and
    subscriptions no longer matter, the originator having named the agency itself, and no agreement is needed
    between them; but an agreement between them that exists still bounds the copy (its TLP, categories, area
    and grading), and the copy is redacted at least as the requester's was (`floor`) and as that agreement says."""
    code = agency.code
    origin = registry.agencies.get(enriched.origin)
    if code == enriched.origin:
        return Verdict(code, False, "originator", "submitted the alert")
    if not agency.active:
        return Verdict(code, False, "agency_inactive", f"{code} is suspended in the registry")
    if origin is None or not origin.active:
        return Verdict(code, False, "origin_unknown", f"originator {enriched.origin} is not an active agency")
    why = f"shared with {enriched.origin}'s approval (onward sharing)"
    between = registry.agreements_between(enriched.origin, code)
    if not between:
        return Verdict(code, True, ONWARD_APPROVED_RULE, why, None, floor, CREATED, True)
    chosen = _permitting(enriched, registry, code, between)
    if isinstance(chosen, Verdict):
        return chosen
    redact = floor | frozenset(chosen.redact)
    return Verdict(code, True, ONWARD_APPROVED_RULE, f"{why} under {chosen.id}", chosen.id, redact, CREATED, True)


def _permitting(
    enriched: AlertEnriched, registry: Registry, code: str, between: list[Agreement]
) -> Agreement | Verdict:
    """The agreement of `between` (origin to `code`) that permits the version and redacts the fewest fields,
    or the verdict naming the first rule they all fail."""
    alert = enriched.alert
    in_force = [a for a in between if a.in_force(enriched.submitted_at)]
    if not in_force:
        return Verdict(
            code, False, "agreement_not_in_force", f"agreements {', '.join(a.id for a in between)} are not in force"
        )
    covering = [a for a in in_force if any(taxonomy.matches(p, alert.category) for p in a.categories)]
    if not covering:
        return Verdict(code, False, "category_not_covered", f"agreements in force do not cover {alert.category}")
    affected = set(alert.affected_countries)
    in_area = [a for a in covering if not a.countries or any(registry.countries_of(c) & affected for c in a.countries)]
    if not in_area:
        where = ", ".join(sorted(affected)) or "no country"
        return Verdict(
            code,
            False,
            "outside_agreement_area",
            f"{', '.join(a.id for a in covering)} cover other countries than {where}",
        )
    tlp = TLP_LEVELS.index(alert.tlp)
    permitting = [a for a in in_area if TLP_LEVELS.index(a.max_tlp) >= tlp]
    if not permitting:
        return Verdict(
            code,
            False,
            "tlp_exceeds_agreement",
            f"TLP:{alert.tlp} is above what {', '.join(a.id for a in in_area)} allow",
        )
    # Looked at only when an agreement of the registry requires a grading: most require none.
    if registry.agreements_require_grading:
        graded = [
            a for a in permitting if _graded_at_least(alert, a.min_source_reliability, a.min_information_credibility)
        ]
        if not graded:
            minimums = ", ".join(
                f"{a.id} ({_minimum(a.min_source_reliability, a.min_information_credibility)})" for a in permitting
            )
            return Verdict(
                code, False, "grading_below_agreement", f"graded {_grade(alert)}: below the minimum of {minimums}"
            )
        permitting = graded
    return min(permitting, key=lambda a: (len(set(a.redact)), a.id))


def fan_out(enriched: AlertEnriched, thread: Thread | None, registry: Registry) -> list[Verdict] | Refusal:
    """The verdict for every agency of the registry (and every holder it no longer lists) on one version of an
    alert, or why the version is refused. `thread`: what the thread's earlier versions left (None for an
    original, or for a follow-up whose thread was not routed here)."""
    alert = enriched.alert
    if alert.msg_type == "Alert":
        return decide(enriched, registry)
    root = alert.references[0]
    if thread is None:
        return Refusal(
            "thread_unknown",
            f"{alert.msg_type} refers to {root}, which was not routed here "
            "(unknown, or older than the router's de-duplication window)",
        )
    # Before the cancellation: only the originator may learn (router/refusals.py) that its thread was cancelled.
    if thread.origin != enriched.origin:
        return Refusal("not_originator", f"only {thread.origin}, the originator of {root}, may update or cancel it")
    if thread.cancelled:
        return Refusal("thread_cancelled", f"{root} was cancelled: it takes no more versions")
    if enriched.scheduled_by is not None:
        if enriched.scheduled_by != thread.latest:
            return Refusal(
                "release_superseded",
                f"a release scheduled by {enriched.scheduled_by}, which {thread.latest} has replaced with its own",
            )
        origin = registry.agencies.get(enriched.origin)
        if origin is None or not origin.active:
            # Issued in the originator's name, which a suspended agency may not use (the gateway refuses it).
            why = f"a release in the name of {enriched.origin}, which is not an active agency now"
            return Refusal("release_origin_inactive", why)
    codes = sorted(set(registry.agencies) | set(thread.holders))
    if alert.msg_type == "Cancel":
        return [_cancel(code, enriched, thread, registry) for code in codes]
    rises = SEVERITY_ORDER.index(alert.severity) > SEVERITY_ORDER.index(thread.severity)
    return [_update(code, enriched, thread, registry, rises) for code in codes]


def resend_verdict(enriched: AlertEnriched, thread: Thread, registry: Registry, code: str) -> Verdict:
    """One agency's verdict when an operator asks that it be sent a thread again (`rctc deliveries resend`):
    the thread's latest version `enriched`, decided for that agency by the same rules as a new version of the
    thread (`fan_out`), against what the agency holds of it now. A resend raises no severity, so a holder owes
    no new acknowledgement; an agency that held nothing owes one for its first copy."""
    if thread.cancelled:
        return Verdict(code, False, "thread_cancelled", f"{thread.root} was cancelled: nothing to resend")
    if code == thread.origin:
        return Verdict(code, False, "originator", "submitted the alert")
    return _update(code, enriched, thread, registry, rises=False)


def embargoed(verdicts: list[Verdict], until: datetime) -> list[Verdict]:
    """`verdicts` of a version under embargo until `until`: every copy with content is recorded and not sent;
    notices (a withdrawal) go at once."""
    return [
        Verdict(v.agency, False, EMBARGOED, f"embargoed until {until.isoformat()}: {v.reason}", v.agreement_id)
        if v.delivered and v.event in CONTENT_EVENTS
        else v
        for v in verdicts
    ]


def _granted(
    code: str,
    agency: AgencyEntry,
    enriched: AlertEnriched,
    thread: Thread,
    registry: Registry,
    seen: frozenset[str],
    memo: dict[str, Verdict],
) -> Verdict | None:
    """The version for an agency holding approvals of onward sharing on the thread, or None if none covers it.

    An approval covers a version while its requester is permitted that version itself (an approval shares
    what the requester may hold, so a narrowing that withdraws the requester withdraws the agency too) and
    the version's TLP is not above the one approved. The copy leaves out what every covering approval's
    requester's copy leaves out, now and when it was approved. `memo`: each requester's verdict, decided once
    per version (chains of approvals would otherwise be walked once per path: red team, exponential)."""
    tlp = TLP_LEVELS.index(enriched.alert.tlp)
    floor: set[str] = set()
    covered = False
    for grant in thread.grants.values():
        if grant.target != code or tlp > TLP_LEVELS.index(grant.tlp):
            continue
        requester = memo.get(grant.requester)
        if requester is None:
            requester = memo[grant.requester] = _update(grant.requester, enriched, thread, registry, False, seen, memo)
        if requester.delivered and requester.event in CONTENT_EVENTS:
            covered = True
            floor |= grant.floor | requester.redact
    return granted_verdict(enriched, registry, agency, frozenset(floor)) if covered else None


def entitled(code: str, enriched: AlertEnriched, thread: Thread, registry: Registry) -> bool:
    """Whether the thread's version `enriched` may be sent to `code` by the rules and the approvals in force."""
    return holder_verdict(code, enriched, thread, registry).event in CONTENT_EVENTS


def holder_verdict(code: str, enriched: AlertEnriched, thread: Thread, registry: Registry) -> Verdict:
    """The verdict on the thread's version `enriched` for `code`, as a new version would decide it (no rise)."""
    return _update(code, enriched, thread, registry, False)


def _update(
    code: str,
    enriched: AlertEnriched,
    thread: Thread,
    registry: Registry,
    rises: bool,
    seen: frozenset[str] = frozenset(),
    memo: dict[str, Verdict] | None = None,
) -> Verdict:
    agency = registry.agencies.get(code)
    held = code in thread.holders
    if agency is None:
        return Verdict(code, False, "agency_removed", f"{code} is no longer in the registry")
    verdict = verdict_for(enriched, registry, agency)
    if thread.grants and not verdict.delivered and verdict.rule not in _GRANT_KEEPS and code not in seen:
        memo = {} if memo is None else memo
        verdict = _granted(code, agency, enriched, thread, registry, seen | {code}, memo) or verdict
    if verdict.delivered:
        # A new holder owes an acknowledgement; a holder owes another only if the threat grew.
        event, awaits = (UPDATED, rises) if held else (CREATED, True)
        return msgspec.structs.replace(verdict, event=event, awaits_ack=awaits)
    if held:
        return Verdict(code, True, "withdrawn", f"withdrawn: {verdict.reason}", event=WITHDRAWN, notice=verdict.rule)
    return verdict


# Refusals an originator's approval of onward sharing does not lift: they are about the agencies, not the
# sharing (a suspended agency, an originator no longer active, the originator itself).
_GRANT_KEEPS = frozenset({"originator", "agency_inactive", "origin_unknown"})
# The rule of a copy sent under an approval of onward sharing (threads.py folds grants from it).
ONWARD_APPROVED_RULE = threads.ONWARD_APPROVED_RULE


def _cancel(code: str, enriched: AlertEnriched, thread: Thread, registry: Registry) -> Verdict:
    if code == enriched.origin:
        return Verdict(code, False, "originator", "submitted the alert")
    if code not in thread.holders:
        return Verdict(code, False, "not_holder", f"holds no version of {thread.root}")
    if code not in registry.agencies:
        return Verdict(code, False, "agency_removed", f"{code} is no longer in the registry")
    return Verdict(code, True, "cancelled", f"holds a version of {thread.root}", event=CANCELLED)


def interested(agency: AgencyEntry, enriched: AlertEnriched, registry: Registry) -> bool:
    """A subscription matches (category, place, minimum severity and grading), or the agency's country is affected."""
    return not_interested(agency, enriched, registry) is None


def not_interested(agency: AgencyEntry, enriched: AlertEnriched, registry: Registry) -> str | None:
    """Why the agency does not want the alert: `not_subscribed` when none of its subscriptions matches the alert's
    category, place and severity, `below_grading` when those that do all ask for a better grading; None when one
    matches, grading included, or when the agency's own country is affected (whatever its subscriptions ask)."""
    alert = enriched.alert
    if agency.country in alert.affected_countries:
        return None
    severity = SEVERITY_ORDER.index(alert.severity)
    affected = set(alert.affected_countries)
    refusal = "not_subscribed"
    for sub in agency.subscriptions:
        if severity < SEVERITY_ORDER.index(sub.min_severity):
            continue
        if not any(taxonomy.matches(p, alert.category) for p in sub.categories):
            continue
        if sub.countries and not any(registry.countries_of(c) & affected for c in sub.countries):
            continue
        reliability, credibility = sub.min_source_reliability, sub.min_information_credibility
        if (reliability is None and credibility is None) or _graded_at_least(alert, reliability, credibility):
            return None
        refusal = "below_grading"
    return refusal


def _graded_at_least(alert: Alert, reliability: str | None, credibility: int | None) -> bool:
    """Whether the alert's grading meets a minimum (None: none asked). F and 6 ("cannot be judged") meet none."""
    if reliability is not None and not (
        alert.source_reliability in JUDGED_RELIABILITY and alert.source_reliability <= reliability
    ):
        return False
    return credibility is None or (
        alert.information_credibility in JUDGED_CREDIBILITY and alert.information_credibility <= credibility
    )


def _grade(alert: Alert) -> str:
    """The alert's grading as analysts write it (B2), saying what of it cannot be judged (F, 6)."""
    unjudged = []
    if alert.source_reliability not in JUDGED_RELIABILITY:
        unjudged.append(alert.source_reliability)
    if alert.information_credibility not in JUDGED_CREDIBILITY:
        unjudged.append(str(alert.information_credibility))
    grade = f"{alert.source_reliability}{alert.information_credibility}"
    return f"{grade} ({' and '.join(unjudged)}: cannot be judged)" if unjudged else grade


def _minimum(reliability: str | None, credibility: int | None) -> str:
    """A minimum grading as a reason states it: `source B, information 3`."""
    parts = []
    if reliability is not None:
        parts.append(f"source {reliability}")
    if credibility is not None:
        parts.append(f"information {credibility}")
    return ", ".join(parts)
