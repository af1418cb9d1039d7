"""The sharing decision: which agencies receive an alert, under which agreement, and why. Pure: no I/O.

    verdicts = decide(enriched, registry)     # one Verdict per agency in the registry, origin included

An agency B receives alert X from originator A only when every rule holds (DESIGN.md, Sharing agreements);
the first rule that fails is the recorded reason, so an operator reading `alerts.routed` sees exactly why:

    agency_inactive      B is suspended in the registry
    originator           B submitted X
    origin_unknown       A is not an active agency of the registry
    not_releasable       X names releasable_to (or originator control) and B is not in it
    not_subscribed       no subscription of B matches X, and B's country is not affected
    no_agreement         no agreement lets A share with B at all
    agreement_not_in_force  agreements exist but none is in force (dates, suspension)
    category_not_covered the agreements in force do not cover X's category
    outside_agreement_area  those agreements cover other countries or regions than X affects
    tlp_exceeds_agreement the agreements covering the category allow a lower TLP than X's
    shared               delivered, under the named agreement

An Update or Cancel follows its original instead (`follow_up`): `follows_original` or
`not_original_recipient`.

When several agreements permit the same share, the one that redacts the fewest fields applies (ties by
id), so a narrower agreement never hides what a broader one between the same parties allows.
"""

from __future__ import annotations

import msgspec

from services.common import taxonomy
from services.common.records import SEVERITY_ORDER, TLP_LEVELS, AlertEnriched
from services.common.registry import AgencyEntry, Registry


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


class Original(msgspec.Struct, frozen=True):
    """What the router recorded when it routed an alert, as read back from alerts.routed."""

    origin: str
    # recipient -> (agreement id, fields redacted from its copy)
    recipients: dict[str, tuple[str | None, frozenset[str]]]


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
    if not interested(agency, enriched, registry):
        return Verdict(
            code,
            False,
            "not_subscribed",
            f"no subscription matches {alert.category}/{alert.severity} and {agency.country} "
            "is not an affected country",
        )

    between = registry.agreements_between(enriched.origin, code)
    if not between:
        return Verdict(code, False, "no_agreement", f"no agreement lets {enriched.origin} share with {code}")
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
    chosen = min(permitting, key=lambda a: (len(set(a.redact)), a.id))
    return Verdict(code, True, "shared", f"shared under {chosen.id}", chosen.id, frozenset(chosen.redact))


def follow_up(enriched: AlertEnriched, original: Original | None, registry: Registry) -> list[Verdict] | str:
    """Verdicts for an Update or Cancel, or the reason it is refused.

    It goes to exactly the recipients of the alert it refers to (`references[0]`, the thread's first alert),
    whatever the registry says now: a recipient must learn that what it holds changed or was withdrawn,
    and nobody else may learn of it. Each copy is redacted at least as the original was, and also as the
    same agreement redacts today if it was tightened since.
    """
    alert = enriched.alert
    root = alert.references[0]
    if original is None:
        return (
            f"{alert.msg_type} refers to {root}, which was not routed here "
            "(unknown, or older than the router's de-duplication window)"
        )
    if original.origin != enriched.origin:
        return f"only {original.origin}, the originator of {root}, may update or cancel it"
    current = {a.id: frozenset(a.redact) for a in registry.agreements}
    verdicts = []
    for code in sorted(set(registry.agencies) | set(original.recipients)):
        if code == enriched.origin:
            verdicts.append(Verdict(code, False, "originator", "submitted the alert"))
        elif code in original.recipients:
            agreement_id, redacted = original.recipients[code]
            redact = redacted | current.get(agreement_id or "", frozenset())
            verdicts.append(Verdict(code, True, "follows_original", f"received {root}", agreement_id, redact))
        else:
            verdicts.append(Verdict(code, False, "not_original_recipient", f"did not receive {root}"))
    return verdicts


def interested(agency: AgencyEntry, enriched: AlertEnriched, registry: Registry) -> bool:
    """A subscription matches (category, place, minimum severity), or the agency's country is affected."""
    alert = enriched.alert
    if agency.country in alert.affected_countries:
        return True
    severity = SEVERITY_ORDER.index(alert.severity)
    affected = set(alert.affected_countries)
    for sub in agency.subscriptions:
        if severity < SEVERITY_ORDER.index(sub.min_severity):
            continue
        if not any(taxonomy.matches(p, alert.category) for p in sub.categories):
            continue
        if sub.countries and not any(registry.countries_of(c) & affected for c in sub.countries):
            continue
        return True
    return False
