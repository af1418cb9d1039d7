"""The life of an alert after its first routing, against a model (hypothesis).

A thread is an original, up to five Updates that change TLP, releasable_to, category, countries, severity and
grading, and perhaps a Cancel; between versions the registry changes (agencies suspended, reinstated or
removed, agreements replaced). After each version, what every agency is sent must equal what an independent
statement of the rules gives (README, "Every version of an alert"), field by field; no agency ever holds a
version or a field it was not permitted at that version; and the tracker awaits exactly the acknowledgements
the rules say.

The oracle of who is permitted one version is `entitled` (test_sharing_properties.py), itself written
independently of services/router/policy.py. `make test` runs 2,000 threads; more with, for example,
`RCTC_LIFE_EXAMPLES=10000 .venv/bin/python -m pytest tests/unit/test_alert_life.py` (in four shards,
each a quarter).
"""

from __future__ import annotations

import os
from datetime import timedelta

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.records import (
    SEVERITY_ORDER,
    TLP_LEVELS,
    Alert,
    AlertEnriched,
    AlertRouted,
    ReleaseScheduled,
    ReleaseStep,
    RoutingDecision,
)
from services.common.registry import REDACTABLE_FIELDS, Registry, RegistryPublished
from services.common.taxonomy import CATEGORIES
from services.router.payload import notice, recipient_copy
from services.router.policy import Verdict, embargoed, fan_out
from services.router.schedule import releases_of, under_embargo
from services.router.threads import Thread, advanced
from services.tracker.releases import submission_of
from services.tracker.state import Ledger
from tests.unit.samples import enriched
from tests.unit.test_sharing_properties import COUNTRIES, CREDIBILITY, NOW, RELIABILITY, alerts, entitled, registries

EXAMPLES = int(os.environ.get("RCTC_LIFE_EXAMPLES", "2000"))
# In shards, each a test of its own: one test of 2,000 threads is over a minute of CPU, near the per-test limit
# on a loaded machine.
SHARDS = 4


# Strategies built once: building one per draw (over the registry's own codes) was most of the test's time.
CHANGES = st.lists(
    st.sampled_from(["toggle", "remove", "drop_agreement", "suspend_agreement", "tlp", "redact"]), max_size=3
)
PICKS = st.lists(st.integers(0, 63), max_size=3, unique=True)
PICK = st.integers(0, 63)
TLPS = st.sampled_from(TLP_LEVELS)
REDACTIONS = st.lists(st.sampled_from(REDACTABLE_FIELDS), unique=True)
COUNTRY_SETS = st.lists(st.sampled_from(COUNTRIES), max_size=3, unique=True)
SEVERITIES = st.sampled_from(SEVERITY_ORDER)
CATEGORY = st.one_of(st.none(), st.sampled_from(CATEGORIES))


def evolved(draw: st.DrawFn, registry: Registry, origin: str) -> Registry:
    """The registry after an operator's changes: suspensions and reinstatements, an agency removed, agreements
    ended, suspended, or changed in TLP or redaction."""
    doc = registry.published
    agencies = list(doc.agencies)
    agreements = list(doc.agreements)
    for change in draw(CHANGES):
        i = draw(PICK)
        if change == "toggle":
            k = i % len(agencies)
            agencies[k] = msgspec.structs.replace(agencies[k], active=not agencies[k].active)
        elif change == "remove" and len(agencies) > 1:
            gone = [a for a in agencies if a.code != origin][i % (len(agencies) - 1)].code
            agencies = [a for a in agencies if a.code != gone]
            agreements = [a for a in agreements if gone not in (*a.parties, *a.from_, *a.to)]
        elif agreements:
            k = i % len(agreements)
            if change == "drop_agreement":
                del agreements[k]
            elif change == "suspend_agreement":
                agreements[k] = msgspec.structs.replace(agreements[k], suspended=not agreements[k].suspended)
            elif change == "tlp":
                agreements[k] = msgspec.structs.replace(agreements[k], max_tlp=draw(TLPS))
            elif change == "redact":
                agreements[k] = msgspec.structs.replace(agreements[k], redact=draw(REDACTIONS))
    return Registry(msgspec.structs.replace(doc, version=doc.version + 1, agencies=agencies, agreements=agreements))


def next_version(draw: st.DrawFn, previous: Alert, registry: Registry, root: str) -> Alert:
    pool = [*registry.agencies, *COUNTRIES]
    releasable = list(dict.fromkeys(pool[i % len(pool)] for i in draw(PICKS)))
    tlp = draw(TLPS)
    if tlp == "RED" and not releasable:  # the gateway refuses TLP:RED without releasable_to
        tlp = "AMBER"
    return msgspec.structs.replace(
        previous,
        msg_type="Update",
        references=[root],
        tlp=tlp,
        releasable_to=releasable,
        originator_control=bool(releasable) and draw(st.booleans()),
        category=draw(CATEGORY) or previous.category,
        affected_countries=draw(COUNTRY_SETS),
        severity=draw(SEVERITIES),
        source_reliability=draw(RELIABILITY),
        information_credibility=draw(CREDIBILITY),
    )


def routed_of(record: AlertEnriched, verdicts: list[Verdict]) -> AlertRouted:
    """The decision as the router writes it (service.py _copies), without the I/O."""
    return AlertRouted(
        alert_id=record.alert_id,
        origin=record.origin,
        msg_type=record.alert.msg_type,
        references=tuple(record.alert.references),
        severity=record.alert.severity,
        urgency=record.alert.urgency,
        routed_at=NOW,
        registry_version=1,
        decisions=tuple(
            RoutingDecision(
                agency=v.agency,
                delivered=v.delivered,
                rule=v.rule,
                reason=v.reason,
                agreement_id=v.agreement_id,
                redacted_fields=tuple(sorted(v.redact)),
                channels=("kafka",) if v.delivered else (),
                ack_due=NOW + timedelta(hours=1) if v.awaits_ack else None,
                event=v.event or None,
            )
            for v in verdicts
        ),
    )


def expected_events(
    registry: Registry, origin: str, alert: Alert, held: set[str], previous_severity: str | None
) -> tuple[dict[str, str], dict[str, set[str]], set[str]]:
    """The rules, stated again: (agency -> event sent, agency -> agreements permitting it, agencies whose
    copy starts a wait for an acknowledgement)."""
    if alert.msg_type == "Cancel":
        return {a: "alert.cancelled" for a in held if a in registry.agencies}, {}, set()
    permitted = entitled(registry, origin, alert)
    events: dict[str, str] = {}
    waits: set[str] = set()
    rises = previous_severity is not None and SEVERITY_ORDER.index(alert.severity) > SEVERITY_ORDER.index(
        previous_severity
    )
    for code in registry.agencies:
        if code in permitted:
            events[code] = "alert.updated" if code in held else "alert.created"
            if code not in held or rises:
                waits.add(code)
        elif code in held:
            events[code] = "alert.withdrawn"
    return events, permitted, waits


@pytest.mark.parametrize("shard", range(SHARDS))
@settings(max_examples=-(-EXAMPLES // SHARDS), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_version_reaches_exactly_whom_the_rules_say(shard: int, data: st.DataObject) -> None:
    """Each version's events equal the model's, copies hold only permitted fields, notices hold nothing, and
    the tracker awaits exactly the acknowledgements the rules leave open."""
    registry = data.draw(registries())
    origin, alert = data.draw(alerts(registry))
    root = "alert-0"
    versions = data.draw(st.integers(0, 5))
    cancel = data.draw(st.booleans())
    thread: Thread | None = None
    ledger = Ledger()
    held: set[str] = set()
    awaiting: dict[str, str] = {}  # agency -> the version whose acknowledgement it owes
    previous_severity: str | None = None
    for step in range(versions + 1 + cancel):
        if step > 0:
            registry = evolved(data.draw, registry, origin)
            if step <= versions:
                alert = next_version(data.draw, alert, registry, root)
            else:
                alert = msgspec.structs.replace(alert, msg_type="Cancel", references=[root])
        record = enriched(alert, origin=origin, alert_id=f"alert-{step}")
        verdicts = fan_out(record, thread, registry)
        assert not isinstance(verdicts, str)

        events, permitted, waits = expected_events(registry, origin, alert, held, previous_severity)
        sent = {v.agency: v for v in verdicts if v.delivered}
        assert {a: v.event for a, v in sent.items()} == events
        assert {v.agency for v in verdicts} >= set(registry.agencies)
        assert {a for a, v in sent.items() if v.awaits_ack} == waits
        for code, verdict in sent.items():
            if verdict.event in ("alert.created", "alert.updated"):
                # Permitted at this version, under an agreement that permits it, redacted as that one says.
                assert verdict.agreement_id in permitted[code]
                agreement = next(a for a in registry.agreements if a.id == verdict.agreement_id)
                assert verdict.redact == frozenset(agreement.redact)
                copy = recipient_copy(record, verdict, NOW).alert
                assert copy is not None
                assert all(getattr(copy, f) is None for f in verdict.redact)
            else:
                assert notice(record, verdict, NOW).alert is None

        routed = routed_of(record, verdicts)
        thread = advanced(thread, routed)
        ledger.apply_routed(routed)
        if alert.msg_type == "Cancel":
            held, awaiting = set(), {}
        else:
            held = set(permitted)
            awaiting = {a: v for a, v in awaiting.items() if a in held and a not in waits}
            awaiting.update({a: record.alert_id for a in waits})
        previous_severity = alert.severity
        assert thread is not None and set(thread.holders) == held
        owed = {(row["agency"], row["alert_id"]) for row in ledger.outstanding(None)}
        assert owed == {(a, v) for a, v in awaiting.items()}


def test_a_red_update_is_withdrawn_from_agencies_whose_agreements_stop_at_amber() -> None:
    """The red team's case: AMBER to JO, SA and KW, then RED releasable to JO only: SA and KW are told to purge,
    not sent the RED content; JO gets the update."""
    agencies = [
        {"code": c, "name": c, "country": c.split("-")[0], "subscriptions": [{"categories": ["*"]}]}
        for c in ("IQ-NSA", "JO-GID", "SA-SSP", "KW-SSD")
    ]
    agreements = [
        {
            "id": "AG-JO",
            "kind": "directed",
            "from": ["IQ-NSA"],
            "to": ["JO-GID"],
            "categories": ["*"],
            "max_tlp": "RED",
        },
        {
            "id": "AG-GULF",
            "kind": "directed",
            "from": ["IQ-NSA"],
            "to": ["SA-SSP", "KW-SSD"],
            "categories": ["*"],
            "max_tlp": "AMBER",
        },
    ]
    registry = Registry(
        msgspec.convert(
            {
                "version": 1,
                "sha256": "x",
                "published_at": NOW,
                "published_by": "t",
                "source": "t",
                "agencies": agencies,
                "agreements": agreements,
            },
            RegistryPublished,
        )
    )
    from tests.unit.samples import sample_alert

    original = enriched(sample_alert(tlp="AMBER", affected_countries=["IQ"]), origin="IQ-NSA", alert_id="a-1")
    verdicts = fan_out(original, None, registry)
    assert not isinstance(verdicts, str)
    thread = advanced(None, routed_of(original, verdicts))
    assert thread is not None and set(thread.holders) == {"JO-GID", "SA-SSP", "KW-SSD"}
    red = sample_alert(msg_type="Update", references=["a-1"], tlp="RED", releasable_to=["JO-GID"])
    update = fan_out(enriched(red, origin="IQ-NSA", alert_id="a-2"), thread, registry)
    assert not isinstance(update, str)
    events = {v.agency: (v.event, v.notice) for v in update if v.delivered}
    assert events == {
        "JO-GID": ("alert.updated", None),
        "SA-SSP": ("alert.withdrawn", "not_releasable"),
        "KW-SSD": ("alert.withdrawn", "not_releasable"),
    }


def release_steps(draw: st.DrawFn, alert: Alert, registry: Registry) -> list[ReleaseStep]:
    """Up to two steps as the gateway accepts them: RED or originator control only with named recipients."""
    pool = [*registry.agencies, *COUNTRIES]
    steps = []
    for i in range(draw(st.integers(0, 2))):
        releasable = list(dict.fromkeys(pool[k % len(pool)] for k in draw(PICKS)))
        if not releasable and (alert.originator_control or draw(TLPS) == "RED"):
            releasable = list(alert.releasable_to)
        tlp = draw(TLPS)
        if tlp == "RED" and not releasable:
            tlp = "AMBER"
        steps.append(ReleaseStep(at=NOW + timedelta(hours=2 + i), tlp=tlp, releasable_to=releasable))
    return steps


@settings(max_examples=max(EXAMPLES // 4, 100), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_embargoes_and_scheduled_releases_reach_exactly_whom_the_rules_say(data: st.DataObject) -> None:
    """Versions that may be embargoed or carry release steps, and the releases the system issues between them
    (some after a later version replaced their schedule): an embargoed version sends only withdrawals and
    leaves what agencies hold; a release is decided like an Update at its TLP; a replaced one, or one whose
    originator is suspended, is refused."""
    registry = data.draw(registries())
    origin, alert = data.draw(alerts(registry))
    root = "alert-0"
    thread: Thread | None = None
    held: set[str] = set()
    previous_severity: str | None = None
    latest = root
    pending: list[ReleaseScheduled] = []
    for step in range(data.draw(st.integers(1, 7))):
        issue = step > 0 and bool(pending) and data.draw(st.booleans())
        if step > 0:
            registry = evolved(data.draw, registry, origin)
        if issue:
            release = pending.pop(0)
            submitted = submission_of(release, NOW)
            record = msgspec.structs.replace(
                enriched(submitted.alert, origin=origin, alert_id=submitted.alert_id), scheduled_by=release.scheduled_by
            )
        else:
            if step > 0:
                alert = next_version(data.draw, alert, registry, root)
            embargo = NOW + timedelta(hours=1) if data.draw(st.booleans()) else None
            alert = msgspec.structs.replace(
                alert, embargo_until=embargo, release=release_steps(data.draw, alert, registry)
            )
            record = enriched(alert, origin=origin, alert_id=f"alert-{step}")
            latest = record.alert_id
            # The earlier schedule's releases stay queued: the router refuses them when they come.
            pending += releases_of(record, root, NOW)
        verdicts = fan_out(record, thread, registry)
        if issue and record.scheduled_by != latest:
            assert isinstance(verdicts, str) and "replaced" in verdicts
            continue
        if issue and not (origin in registry.agencies and registry.agencies[origin].active):
            assert isinstance(verdicts, str) and "not an active agency" in verdicts
            continue
        assert not isinstance(verdicts, str)
        until = under_embargo(record)
        if until is not None:
            verdicts = embargoed(verdicts, until)

        events, permitted, _ = expected_events(registry, origin, record.alert, held, previous_severity)
        if until is not None:
            events = {a: e for a, e in events.items() if e == "alert.withdrawn"}
        sent = {v.agency: v for v in verdicts if v.delivered}
        assert {a: v.event for a, v in sent.items()} == events
        for code, verdict in sent.items():
            if verdict.event in ("alert.created", "alert.updated"):
                assert verdict.agreement_id in permitted[code]
                copy = recipient_copy(record, verdict, NOW).alert
                assert copy is not None and copy.tlp == record.alert.tlp
                assert all(getattr(copy, f) is None for f in verdict.redact)

        thread = advanced(
            thread, msgspec.structs.replace(routed_of(record, verdicts), scheduled_by=record.scheduled_by)
        )
        if until is None:
            held = set(permitted)
        else:
            held = {a for a in held if a in registry.agencies and events.get(a) != "alert.withdrawn"}
        previous_severity = record.alert.severity
        assert thread is not None and (set(thread.holders), thread.latest) == (held, latest)
