"""Who is told of a correlation (router/correlation.py): exactly the agencies that could read the shared value in
both alerts themselves, tried against random registries and alerts with the sharing tests' independent
statement of the rules (tests/unit/test_sharing_properties.py), and the attacks one at a time.

The oracle, stated without the router's thread bookkeeping: an agency may be told that two alerts carry a
value when, for each of them, it is the originator, or the rules entitle it to the alert both when it was routed
and today, and its copy (then and now) shows the value in every field of the alert that carries it.
"""

from __future__ import annotations

from datetime import timedelta

import msgspec
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from services.common.events import CORRELATED
from services.common.records import (
    Alert,
    AlertCorrelated,
    AlertEnriched,
    CorrelatedAlert,
    Indicator,
    SharedAlert,
)
from services.common.registry import AgencyEntry, Agreement, Registry, Subscription
from services.common.sightings import indicator_value
from services.router import correlation
from services.router.policy import decide, embargoed, fan_out
from services.router.redaction import shared_copy
from services.router.threads import Thread, advanced
from tests.unit.samples import enriched, sample_alert
from tests.unit.test_alert_life import evolved, routed_of
from tests.unit.test_sharing_properties import (
    NAMES,
    NOW,
    alerts,
    entitled,
    open_registries,
    registries,
    registry_of,
)


def with_value(alert: Alert, value: str, in_summary: bool) -> Alert:
    """`alert` carrying the domain `value` among its indicators, and quoting it in its summary if asked."""
    summary = f"{alert.summary or ''} seen at {value}" if in_summary else alert.summary
    return msgspec.structs.replace(
        alert, indicators=[*alert.indicators, Indicator(type="domain", value=value)], summary=summary
    )


def shows(copy: SharedAlert, alert: Alert, value: str) -> bool:
    """Whether the copy lets its reader read `value` in every field of `alert` that carries it (a subject named
    by part of the domain, as the random alerts may have, withholds it with the subjects)."""
    if value in {i.value for i in alert.indicators} and value not in {i.value for i in copy.indicators or ()}:
        return False
    return value not in (alert.summary or "") or value in (copy.summary or "")


def readers(then: Registry, now: Registry, origin: str, alert: Alert, value: str) -> set[str]:
    """The oracle for one alert: its originator, and each agency entitled to it then and now whose copies both
    show the value (module docstring)."""
    found = {origin}
    for code in set(entitled(then, origin, alert)) & set(entitled(now, origin, alert)):
        copies = [
            shared_copy(alert, next(v for v in decide(enriched(alert, origin=origin), r) if v.agency == code).redact)
            for r in (then, now)
        ]
        if all(shows(copy, alert, value) for copy, _ in copies):
            found.add(code)
    return found


def routed_thread(record: AlertEnriched, registry: Registry, thread: Thread | None = None) -> Thread:
    verdicts = fan_out(record, thread, registry)
    assert not isinstance(verdicts, str)
    after = advanced(thread, routed_of(record, verdicts))
    assert after is not None
    return after


def side(record: AlertEnriched, thread: str | None = None) -> CorrelatedAlert:
    return CorrelatedAlert(
        alert_id=record.alert_id, thread_id=thread or record.alert_id, origin=record.origin, fields=["indicators"]
    )


def found(a: AlertEnriched, b: AlertEnriched, value: str, a_thread: str | None = None) -> AlertCorrelated:
    return AlertCorrelated(
        correlation_id="corr-1",
        kind="domain",
        value=indicator_value("domain", value),
        a=side(a, a_thread),
        b=side(b),
        found_at=NOW,
    )


def told(
    c: AlertCorrelated,
    threads: tuple[Thread | None, Thread | None],
    versions: tuple[AlertEnriched | None, AlertEnriched | None],
    registry: Registry,
) -> list[str]:
    """Both phases, as the owners of a's and b's partitions run them."""
    second = correlation.first_phase(c, threads[0], versions[0], registry)
    return correlation.told(second, threads[1], versions[1], registry)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_told_exactly_the_agencies_that_read_the_value_in_both_alerts(data: st.DataObject) -> None:
    # Mostly registries in which everyone may share with everyone (random ones refuse most agencies early).
    then = data.draw(st.one_of(open_registries(), open_registries(), open_registries(), registries()))
    value = data.draw(NAMES) + ".example"
    records: list[AlertEnriched] = []
    for n in range(2):
        origin, alert = data.draw(alerts(then))
        if records and origin == records[0].origin:  # the correlator pairs alerts of different originators
            codes = sorted(then.agencies)
            origin = codes[(codes.index(origin) + 1) % len(codes)]
        alert = with_value(alert, value, data.draw(st.booleans()))
        records.append(enriched(alert, origin=origin, alert_id=f"alert-{n}"))
    a, b = records
    now = evolved(data.draw, then, a.origin) if data.draw(st.booleans()) else then  # type: ignore[arg-type]
    assume(a.origin in now.agencies and b.origin in now.agencies)
    threads = (routed_thread(a, then), routed_thread(b, then))

    result = told(found(a, b, value), threads, (a, b), now)

    expected = readers(then, now, a.origin, a.alert, value) & readers(then, now, b.origin, b.alert, value)
    assert set(result) == {code for code in expected if now.agencies[code].active}
    assert result == sorted(result)
    event(f"told {min(len(result), 3)}")


def open_world() -> Registry:
    """Four agencies sharing everything with each other, except that KW's copies lose their indicators."""
    codes = {"IQ-A": "IQ", "JO-B": "JO", "KW-C": "KW", "SA-D": "SA"}
    agencies = [
        AgencyEntry(code=code, name=code, country=country, subscriptions=[Subscription(categories=["*"])])
        for code, country in codes.items()
    ]
    agreements = [
        Agreement(id="AG-OPEN", kind="multilateral", parties=["IQ-A", "JO-B", "SA-D"], categories=["*"], max_tlp="RED"),
        Agreement(
            id="AG-KW",
            kind="multilateral",
            parties=["IQ-A", "JO-B", "KW-C"],
            categories=["*"],
            max_tlp="RED",
            redact=["indicators"],
        ),
    ]
    return registry_of(agencies, agreements)


VALUE = "relay-exchange.example"


def carrying(origin: str, alert_id: str, *, value: str | None = VALUE, **overrides: object) -> AlertEnriched:
    indicators = [Indicator(type="domain", value=value)] if value else []
    alert = sample_alert(
        **{"summary": "A relay.", "indicators": indicators, "subjects": [], "tlp": "GREEN", **overrides}
    )
    return enriched(alert, origin=origin, alert_id=alert_id)


def test_both_originators_and_every_agency_reading_the_value_in_both_are_told() -> None:
    registry = open_world()
    a, b = carrying("IQ-A", "a-1"), carrying("JO-B", "b-1")
    threads = (routed_thread(a, registry), routed_thread(b, registry))
    # KW holds both, but its copies lose their indicators: it never read the value, and is not told of it.
    assert "KW-C" in threads[0].holders and "KW-C" in threads[1].holders
    assert told(found(a, b, VALUE), threads, (a, b), registry) == ["IQ-A", "JO-B", "SA-D"]


def test_an_agency_holding_only_one_of_the_alerts_is_not_told() -> None:
    registry = open_world()
    a, b = carrying("IQ-A", "a-1"), carrying("JO-B", "b-1", releasable_to=["IQ-A"], tlp="AMBER")
    threads = (routed_thread(a, registry), routed_thread(b, registry))
    assert "SA-D" in threads[0].holders and "SA-D" not in threads[1].holders
    assert told(found(a, b, VALUE), threads, (a, b), registry) == ["IQ-A", "JO-B"]


def test_a_holder_of_a_later_version_that_dropped_the_value_is_not_told_of_the_earlier_one() -> None:
    """SA is permitted the thread only from its second version on, which no longer carries the value: SA never
    read it in that thread. Nor is anybody else told of a thread whose latest version dropped the value."""
    registry = open_world()
    a1 = carrying("IQ-A", "a-1", releasable_to=["JO-B"], tlp="AMBER")
    a2 = carrying("IQ-A", "a-2", value=None, msg_type="Update", references=["a-1"])
    b = carrying("JO-B", "b-1")
    thread_a = routed_thread(a2, registry, routed_thread(a1, registry))
    assert thread_a.holders["SA-D"].version == "a-2"
    assert told(found(a1, b, VALUE), (thread_a, routed_thread(b, registry)), (a2, b), registry) == []


def test_a_holder_whose_copy_of_the_latest_version_is_under_embargo_is_not_told() -> None:
    """The thread's latest version is under embargo: its holders still hold the version before it, so what the
    latest carries is not theirs to learn yet; the originator is still told."""
    registry = open_world()
    a1 = carrying("IQ-A", "a-1", value=None)
    a2 = carrying("IQ-A", "a-2", msg_type="Update", references=["a-1"])
    b = carrying("JO-B", "b-1")
    thread_a = routed_thread(a1, registry)
    verdicts = fan_out(a2, thread_a, registry)
    assert not isinstance(verdicts, str)
    held = advanced(thread_a, routed_of(a2, embargoed(verdicts, NOW + timedelta(hours=1))))
    assert held is not None and held.holders["JO-B"].version == "a-1"
    assert told(found(a2, b, VALUE, a_thread="a-1"), (held, routed_thread(b, registry)), (a2, b), registry) == ["IQ-A"]


def test_an_update_sent_into_another_agencys_thread_learns_nothing() -> None:
    """The attack: SA knows (or guesses) IQ's thread id and sends an Update "into" it carrying a value it wants to
    test. The router refuses the Update, but the correlator files it under IQ's thread; if the correlation named
    SA as that side's originator, SA would learn whether IQ's alert carries the value. It is told nothing."""
    registry = open_world()
    victim = carrying("IQ-A", "a-1", releasable_to=["JO-B"], tlp="AMBER")
    probe = carrying("SA-D", "probe-1", msg_type="Update", references=["a-1"])
    own = carrying("SA-D", "s-1")
    thread_victim = routed_thread(victim, registry)
    assert "SA-D" not in thread_victim.holders
    # The probe's side names SA as originator of the victim's thread; the victim's latest version is read.
    c = found(probe, own, VALUE, a_thread="a-1")
    assert told(c, (thread_victim, routed_thread(own, registry)), (victim, own), registry) == []
    reversed_ = msgspec.structs.replace(c, a=c.b, b=c.a)
    assert told(reversed_, (routed_thread(own, registry), thread_victim), (own, victim), registry) == []


def test_nobody_is_told_of_a_cancelled_or_unknown_thread() -> None:
    registry = open_world()
    a, b = carrying("IQ-A", "a-1"), carrying("JO-B", "b-1")
    thread_a, thread_b = routed_thread(a, registry), routed_thread(b, registry)
    cancelled = msgspec.structs.replace(thread_a, cancelled=True, holders={})
    assert told(found(a, b, VALUE), (cancelled, thread_b), (a, b), registry) == []
    assert told(found(a, b, VALUE), (None, thread_b), (None, b), registry) == []
    assert told(found(a, b, VALUE), (thread_a, None), (a, None), registry) == []


def test_a_suspended_agency_is_not_told_and_a_narrowed_agreement_counts_today() -> None:
    registry = open_world()
    a, b = carrying("IQ-A", "a-1"), carrying("JO-B", "b-1")
    threads = (routed_thread(a, registry), routed_thread(b, registry))
    doc = registry.published
    suspended = Registry(
        msgspec.structs.replace(
            doc,
            agencies=[msgspec.structs.replace(x, active=x.code != "SA-D") for x in doc.agencies],
        )
    )
    assert told(found(a, b, VALUE), threads, (a, b), suspended) == ["IQ-A", "JO-B"]
    narrowed = Registry(
        msgspec.structs.replace(
            doc,
            agreements=[
                msgspec.structs.replace(x, redact=["indicators"]) if x.id == "AG-OPEN" else x for x in doc.agreements
            ],
        )
    )
    # Each originator would read the other's alert without its indicators today: nobody reads the value in both.
    assert told(found(a, b, VALUE), threads, (a, b), narrowed) == []


def test_the_notice_names_only_the_recipients_own_threads_versions_and_the_value() -> None:
    registry = open_world()
    a, b = carrying("IQ-A", "a-1"), carrying("JO-B", "b-1")
    second = correlation.first_phase(found(a, b, VALUE), routed_thread(a, registry), a, registry)
    shared = correlation.notice(second, b, "SA-D", NOW)
    assert shared.event_type == CORRELATED and shared.alert is None and shared.recipient == "SA-D"
    assert shared.correlation is not None
    assert shared.correlation.thread_ids == ["a-1", "b-1"] and shared.correlation.alert_ids == ["a-1", "b-1"]
    assert shared.correlation.value == VALUE
    wire = msgspec.json.encode(shared).decode()
    assert "KW-C" not in wire and "candidates" not in wire
    verdicts = correlation.verdicts(registry, ["IQ-A", "SA-D"])
    assert [(v.agency, v.delivered, v.rule) for v in verdicts] == [
        ("IQ-A", True, "correlated"),
        ("JO-B", False, "not_entitled"),
        ("KW-C", False, "not_entitled"),
        ("SA-D", True, "correlated"),
    ]
    assert len({v.reason for v in verdicts if not v.delivered}) == 1, "one reason for all not told"


CODES = ["IQ-A", "JO-B", "SA-C", "AE-D"]


@given(st.lists(st.frozensets(st.sampled_from(CODES), min_size=1), max_size=30))
def test_of_one_pair_each_agency_is_told_of_a_few_values_counted_by_its_own_notices_alone(
    entitled_per_value: list[frozenset[str]],
) -> None:
    """Two threads sharing many values (an agency copying 300 phones of an alert it was sent made 900 notices):
    each agency is told of at most PAIR_NOTICES of them, and whether it is told of the next one depends only on
    what it was told itself, never on what another agency was told (which would be an oracle)."""
    counts: dict[str, int] = {}
    told_to: dict[str, list[int]] = {code: [] for code in CODES}
    for n, recipients in enumerate(entitled_per_value):
        candidates = sorted(recipients)
        if correlation.spent(candidates, counts):
            continue
        for code in correlation.within_budget(candidates, counts):
            counts[code] = counts.get(code, 0) + 1
            told_to[code].append(n)
    for code in CODES:
        alone = [n for n, recipients in enumerate(entitled_per_value) if code in recipients][: correlation.PAIR_NOTICES]
        assert told_to[code] == alone, code


def test_a_pair_is_keyed_the_same_whichever_thread_is_the_earlier() -> None:
    a, b = (
        CorrelatedAlert(alert_id="x", thread_id="t1", origin="A", fields=[]),
        CorrelatedAlert(alert_id="y", thread_id="t2", origin="B", fields=[]),
    )
    found = AlertCorrelated(correlation_id="c", kind="domain", value="v", a=a, b=b, found_at=NOW)
    assert correlation.pair_of(found) == correlation.pair_of(msgspec.structs.replace(found, a=b, b=a)) == ("t1", "t2")
