"""The sharing rules, tried against random registries and alerts (hypothesis).

The router must never give an agency an alert or a field its agreements do not allow, and must give
every entitled agency its copy. These tests state the sharing rules (docs/architecture.md, Sharing rules) a
second time, independently of services/router/policy.py, as a set-based oracle, and require the router's
decision to equal it exactly.
"""

from __future__ import annotations

import fnmatch
from datetime import UTC, datetime, timedelta

import msgspec
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from services.common.codec import Codec
from services.common.records import SEVERITY_ORDER, TLP_LEVELS, Alert, AlertShared, Indicator, Subject
from services.common.registry import (
    REDACTABLE_FIELDS,
    AgencyEntry,
    Agreement,
    Registry,
    RegistryPublished,
    Subscription,
)
from services.common.taxonomy import CATEGORIES
from services.router.payload import RecipientCopies, recipient_copy
from services.router.policy import decide, fan_out
from services.router.redaction import MASK, shared_copy
from services.router.threads import Holding, Thread
from tests.unit.samples import enriched

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
COUNTRIES = ["IQ", "JO", "SA", "AE", "EG", "KW"]
REGIONS = {"LEVANT": ["IQ", "JO"], "GULF": ["SA", "AE", "KW"]}
PATTERNS = ["*", "terrorism.*", "cyber.*", "cbrn", "terrorism.financing", "cyber.ransomware"]
SEVERITIES = list(SEVERITY_ORDER)
# A minimum grading a subscription may ask for or an agreement require (None: none), and an alert's grading
# (F and 6: "cannot be judged", which is also what an alert submitted without a grading carries).
MIN_RELIABILITY = st.one_of(st.none(), st.sampled_from("ABCDE"))
MIN_CREDIBILITY = st.one_of(st.none(), st.integers(1, 5))
RELIABILITY = st.sampled_from("ABCDEF")
CREDIBILITY = st.integers(1, 6)
# Lower-case prose cannot spell an agency code (upper case and a dash), so any code found in a copy leaked.
PROSE = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ", min_size=0, max_size=40)
NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=3, max_size=10)


def registry_of(agencies: list[AgencyEntry], agreements: list[Agreement]) -> Registry:
    return Registry(
        RegistryPublished(
            version=1,
            sha256="x",
            published_at=NOW,
            published_by="t",
            source="t",
            regions=REGIONS,
            agencies=agencies,
            agreements=agreements,
        )
    )


@st.composite
def registries(draw: st.DrawFn) -> Registry:
    n = draw(st.integers(2, 7))
    agencies = []
    for i in range(n):
        country = draw(st.sampled_from(COUNTRIES))
        subs = draw(
            st.lists(
                st.builds(
                    Subscription,
                    categories=st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=2),
                    countries=st.lists(st.sampled_from([*COUNTRIES, *REGIONS]), max_size=2),
                    min_severity=st.sampled_from(SEVERITIES),
                    min_source_reliability=MIN_RELIABILITY,
                    min_information_credibility=MIN_CREDIBILITY,
                ),
                max_size=2,
            )
        )
        agencies.append(
            AgencyEntry(
                code=f"{country}-A{i}",
                name=f"agency {i}",
                country=country,
                active=draw(st.booleans()) or draw(st.booleans()),
                subscriptions=subs,
            )
        )
    codes = [a.code for a in agencies]
    agreements = []
    for j in range(draw(st.integers(0, 4))):
        directed = draw(st.booleans())
        start = NOW + timedelta(days=draw(st.integers(-400, 30)))
        agreements.append(
            Agreement(
                id=f"AG-{j}",
                kind="directed" if directed else "multilateral",
                parties=[] if directed else draw(st.lists(st.sampled_from(codes), min_size=2, unique=True)),
                from_=draw(st.lists(st.sampled_from(codes), min_size=1, unique=True)) if directed else [],
                to=draw(st.lists(st.sampled_from(codes), min_size=1, unique=True)) if directed else [],
                categories=draw(st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=2)),
                countries=draw(st.lists(st.sampled_from([*COUNTRIES, *REGIONS]), max_size=2)),
                max_tlp=draw(st.sampled_from(TLP_LEVELS)),
                redact=draw(st.lists(st.sampled_from(REDACTABLE_FIELDS), unique=True)),
                valid_from=start,
                valid_until=draw(st.one_of(st.none(), st.just(start + timedelta(days=draw(st.integers(1, 800)))))),
                suspended=draw(st.integers(0, 9)) == 0,
                min_source_reliability=draw(MIN_RELIABILITY),
                min_information_credibility=draw(MIN_CREDIBILITY),
            )
        )
    return registry_of(agencies, agreements)


@st.composite
def alerts(draw: st.DrawFn, registry: Registry) -> tuple[str, Alert]:
    origin = draw(st.sampled_from(sorted(registry.agencies)))
    releasable = draw(st.lists(st.sampled_from([*registry.agencies, *COUNTRIES]), max_size=3, unique=True))
    tlp = draw(st.sampled_from(TLP_LEVELS if releasable else TLP_LEVELS[:-1]))
    subjects = draw(st.lists(st.builds(Subject, kind=st.just("person"), name=NAMES), max_size=2))
    indicators = draw(
        st.lists(st.builds(Indicator, type=st.just("domain"), value=NAMES.map(lambda n: f"{n}.example")), max_size=2)
    )
    # Free text that sometimes quotes the subjects and indicators, as analysts' summaries do.
    quoted = " ".join(
        draw(
            st.lists(
                st.sampled_from([s.name for s in subjects] + [i.value for i in indicators] or ["nothing"]), max_size=3
            )
        )
    )
    alert = Alert(
        msg_type="Alert",
        category=draw(st.sampled_from(CATEGORIES)),
        severity=draw(st.sampled_from(SEVERITIES)),
        urgency="Expected",
        certainty="Likely",
        tlp=tlp,
        title=draw(PROSE) + " " + quoted,
        summary=quoted + " " + draw(PROSE),
        sent=NOW,
        affected_countries=draw(st.lists(st.sampled_from(COUNTRIES), max_size=3, unique=True)),
        subjects=subjects,
        indicators=indicators,
        releasable_to=releasable,
        originator_control=bool(releasable) and draw(st.booleans()),
        source_reliability=draw(RELIABILITY),
        information_credibility=draw(CREDIBILITY),
    )
    return origin, alert


# Which grades meet each minimum, best first: A meets every reliability minimum, E only E. F and 6 ("cannot be
# judged") meet none, since nobody vouched for the source or the information.
RELIABILITY_MEETING = {"A": "A", "B": "AB", "C": "ABC", "D": "ABCD", "E": "ABCDE"}
CREDIBILITY_MEETING = {minimum: set(range(1, minimum + 1)) for minimum in range(1, 6)}


def graded_enough(alert: Alert, asker: Subscription | Agreement) -> bool:
    """Whether the alert's grading meets every minimum the subscription or agreement asks for."""
    reliability, credibility = asker.min_source_reliability, asker.min_information_credibility
    return (reliability is None or alert.source_reliability in set(RELIABILITY_MEETING[reliability])) and (
        credibility is None or alert.information_credibility in CREDIBILITY_MEETING[credibility]
    )


def places(codes: list[str]) -> set[str]:
    return {c for place in codes for c in REGIONS.get(place, [place])}


def subscriptions_matching(b: AgencyEntry, alert: Alert) -> list[Subscription]:
    """B's subscriptions that match the alert's severity, category and place, whatever grading they ask for."""
    return [
        s
        for s in b.subscriptions
        if SEVERITY_ORDER.index(alert.severity) >= SEVERITY_ORDER.index(s.min_severity)
        and any(fnmatch.fnmatchcase(alert.category, p) for p in s.categories)
        and (not s.countries or set(alert.affected_countries) & places(s.countries))
    ]


def agreements_allowing(registry: Registry, origin: str, b: AgencyEntry, alert: Alert) -> list[Agreement]:
    """The agreements letting the origin share the alert with B at its time, category, place and TLP, whatever
    grading they require."""
    return [
        a
        for a in registry.agreements
        if (
            ({origin, b.code} <= set(a.parties)) if a.kind == "multilateral" else (origin in a.from_ and b.code in a.to)
        )
        and not a.suspended
        and (a.valid_from is None or a.valid_from <= NOW)
        and (a.valid_until is None or a.valid_until > NOW)
        and any(fnmatch.fnmatchcase(alert.category, p) for p in a.categories)
        and (not a.countries or set(alert.affected_countries) & places(a.countries))
        and TLP_LEVELS.index(a.max_tlp) >= TLP_LEVELS.index(alert.tlp)
    ]


def may_be_asked(registry: Registry, origin: str, b: AgencyEntry, alert: Alert) -> bool:
    """B is an active agency other than the active origin, and the alert's handling lists (if any) name it."""
    if not b.active or b.code == origin or not registry.agencies[origin].active:
        return False
    return not alert.releasable_to or bool({b.code, b.country} & set(alert.releasable_to))


def entitled(registry: Registry, origin: str, alert: Alert) -> dict[str, set[str]]:
    """The oracle: every agency the sharing rules entitle to the alert, with the ids of the agreements permitting it."""
    result: dict[str, set[str]] = {}
    for b in registry.agencies.values():
        if not may_be_asked(registry, origin, b, alert):
            continue
        subscribed = any(graded_enough(alert, s) for s in subscriptions_matching(b, alert))
        if not (subscribed or b.country in alert.affected_countries):
            continue
        permitting = {a.id for a in agreements_allowing(registry, origin, b, alert) if graded_enough(alert, a)}
        if permitting:
            result[b.code] = permitting
    return result


def refused_for_grading(registry: Registry, origin: str, alert: Alert) -> dict[str, str]:
    """The oracle of the grading's reasons: an agency that would want the alert but for the grading its matching
    subscriptions ask (its own country not affected) is `below_grading`; one that wants it and that agreements
    would permit but for the grading they require is `grading_below_agreement`."""
    result: dict[str, str] = {}
    for b in registry.agencies.values():
        if not may_be_asked(registry, origin, b, alert):
            continue
        matching = subscriptions_matching(b, alert)
        if b.country not in alert.affected_countries and not any(graded_enough(alert, s) for s in matching):
            if matching:
                result[b.code] = "below_grading"
            continue
        allowing = agreements_allowing(registry, origin, b, alert)
        if allowing and not any(graded_enough(alert, a) for a in allowing):
            result[b.code] = "grading_below_agreement"
    return result


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_delivered_exactly_to_the_entitled(data: st.DataObject) -> None:
    """Delivered agencies equal the oracle's entitled set, each under an agreement that permits it."""
    registry = data.draw(registries())
    origin, alert = data.draw(alerts(registry))
    expected = entitled(registry, origin, alert)
    verdicts = decide(enriched(alert, origin=origin), registry)
    delivered = {v.agency: v for v in verdicts if v.delivered}
    assert set(delivered) == set(expected)
    for code, verdict in delivered.items():
        assert verdict.agreement_id in expected[code]
        permitting = next(a for a in registry.agreements if a.id == verdict.agreement_id)
        assert verdict.redact == frozenset(permitting.redact)
    assert {v.agency for v in verdicts} == set(registry.agencies)
    assert all(v.reason for v in verdicts)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_copies_hold_only_permitted_fields_and_no_other_recipient(data: st.DataObject) -> None:
    """A copy has no redacted field, no redacted value in its text, and names no agency but recipient and origin."""
    registry = data.draw(registries())
    origin, alert = data.draw(alerts(registry))
    for verdict in decide(enriched(alert, origin=origin), registry):
        if not verdict.delivered:
            continue
        copy, removed = shared_copy(alert, verdict.redact)
        assert removed == sorted(verdict.redact)
        for name in REDACTABLE_FIELDS:
            assert (getattr(copy, name) is None) == (name in verdict.redact)
        text = f"{copy.title}\n{copy.summary or ''}".casefold()
        if "subjects" in removed:
            for s in alert.subjects:
                assume(s.name.casefold() not in MASK.casefold())
                assert s.name.casefold() not in text
        if "indicators" in removed:
            for i in alert.indicators:
                assert i.value.casefold() not in text
        shared = AlertShared(
            alert_id="a",
            recipient=verdict.agency,
            origin=origin,
            event_type="alert.created",
            agreement_id=verdict.agreement_id or "",
            shared_at=NOW,
            priority=2,
            redacted_fields=removed,
            alert=copy,
        )
        wire = msgspec.json.encode(shared).decode()
        others = set(registry.agencies) - {verdict.agency, origin}
        assert not [code for code in others if code in wire]


@st.composite
def open_registries(draw: st.DrawFn) -> Registry:
    """Registries in which the grading decides: every agency active and subscribed to every category, place and
    severity, every agreement in force among all of them and covering every category and TLP; what differs is
    the grading each subscription asks for and each agreement requires (random registries refuse most agencies
    on an earlier rule)."""
    countries = draw(st.lists(st.sampled_from(COUNTRIES), min_size=2, max_size=6))
    codes = [f"{country}-A{i}" for i, country in enumerate(countries)]
    subscription = st.builds(
        Subscription,
        categories=st.just(["*"]),
        min_source_reliability=MIN_RELIABILITY,
        min_information_credibility=MIN_CREDIBILITY,
    )
    agencies = [
        AgencyEntry(
            code=code,
            name=code,
            country=country,
            subscriptions=draw(st.lists(subscription, min_size=1, max_size=2)),
        )
        for code, country in zip(codes, countries, strict=True)
    ]
    agreements = [
        Agreement(
            id=f"AG-{j}",
            kind="multilateral",
            parties=codes,
            categories=["*"],
            max_tlp="RED",
            redact=draw(st.lists(st.sampled_from(REDACTABLE_FIELDS), unique=True)),
            min_source_reliability=draw(MIN_RELIABILITY),
            min_information_credibility=draw(MIN_CREDIBILITY),
        )
        for j in range(draw(st.integers(1, 3)))
    ]
    return registry_of(agencies, agreements)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_an_alert_withheld_for_its_grading_says_so(data: st.DataObject) -> None:
    """Exactly the agencies the oracle finds refused for the grading alone are recorded with its rule, for the
    subscriptions' minimum (`below_grading`) or the agreements' (`grading_below_agreement`), and exactly the
    entitled receive the alert, under an agreement whose minimum it meets: in random registries, and in open
    ones where the grading decides nearly every agency."""
    is_open = data.draw(st.booleans(), label="open")
    registry = data.draw(open_registries() if is_open else registries())
    origin, alert = data.draw(alerts(registry))
    if is_open:  # and no handling list: TLP:RED comes with one only
        tlp = "AMBER+STRICT" if alert.tlp == "RED" else alert.tlp
        alert = msgspec.structs.replace(alert, releasable_to=[], originator_control=False, tlp=tlp)
    verdicts = decide(enriched(alert, origin=origin), registry)
    grading_rules = {"below_grading", "grading_below_agreement"}
    assert {v.agency: v.rule for v in verdicts if v.rule in grading_rules} == refused_for_grading(
        registry, origin, alert
    )
    expected = entitled(registry, origin, alert)
    delivered = {v.agency: v.agreement_id for v in verdicts if v.delivered}
    assert set(delivered) == set(expected)
    assert all(agreement in expected[code] for code, agreement in delivered.items())


CODEC = Codec.from_directory()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_each_recipient_gets_its_own_copy_when_bodies_are_shared(data: st.DataObject) -> None:
    """The router encodes each distinct redaction once per alert and reuses it: every recipient's record and
    bytes must still be exactly those of its own copy built alone, in whatever order recipients come."""
    registry = data.draw(registries())
    origin, alert = data.draw(alerts(registry))
    record = enriched(alert, origin=origin)
    delivered = [v for v in decide(record, registry) if v.delivered]
    copies = RecipientCopies(record, NOW, CODEC)
    for verdict in data.draw(st.permutations(delivered)):
        shared, wire = copies.copy_for(verdict)
        alone = recipient_copy(record, verdict, NOW)
        assert shared == alone
        assert wire == CODEC.encode(alone)
        assert CODEC.decode(wire, AlertShared) == alone


def test_updates_are_refused_for_unknown_originals_other_originators_and_cancelled_threads() -> None:
    """Only the originator may update an alert, only one that was routed, and not after its Cancel."""
    registry = Registry(
        RegistryPublished(
            version=1,
            sha256="x",
            published_at=NOW,
            published_by="t",
            source="t",
            agencies=[
                AgencyEntry(code="IQ-A0", name="a", country="IQ"),
                AgencyEntry(code="JO-A1", name="b", country="JO"),
            ],
        )
    )
    update = enriched(
        Alert(
            msg_type="Cancel",
            references=["alert-1"],
            category="cbrn",
            severity="Minor",
            urgency="Past",
            certainty="Unlikely",
            tlp="GREEN",
            title="withdrawn",
            sent=NOW,
        ),
        origin="JO-A1",
        alert_id="alert-2",
    )
    assert "was not routed here" in str(fan_out(update, None, registry))
    thread = Thread(root="alert-1", origin="IQ-A0", severity="Minor", holders={"JO-A1": Holding("AG", frozenset())})
    assert "only IQ-A0" in str(fan_out(update, thread, registry))
    cancelled = Thread(root="alert-1", origin="JO-A1", severity="Minor", holders={}, cancelled=True)
    assert "was cancelled" in str(fan_out(update, cancelled, registry))
