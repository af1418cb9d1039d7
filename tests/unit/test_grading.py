"""Routing by the Admiralty grading (router/policy.py): a subscription's minimum narrows what it brings in
(`below_grading`), an agreement's is a condition of sharing under it (`grading_below_agreement`), and F or 6,
"cannot be judged", meets no minimum."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from services.common.records import Alert
from services.common.registry import Registry, RegistryPublished
from services.router.policy import fan_out, granted_verdict, verdict_for
from services.router.threads import Holding, Thread
from tests.unit.samples import enriched, sample_alert

AT = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def registry_of(subscriptions: list[dict[str, Any]], agreements: list[dict[str, Any]] | None = None) -> Registry:
    """IQ-A originates; JO-B subscribes with `subscriptions`; `agreements` (default: one letting IQ-A share
    everything with JO-B, asking no grading) decide the sharing."""
    agencies = [
        {"code": "IQ-A", "name": "a", "country": "IQ"},
        {"code": "JO-B", "name": "b", "country": "JO", "subscriptions": subscriptions},
    ]
    document = {
        "version": 1,
        "sha256": "x",
        "published_at": AT,
        "published_by": "t",
        "source": "t",
        "agencies": agencies,
        "agreements": agreements if agreements is not None else [agreement()],
    }
    return Registry(msgspec.convert(document, RegistryPublished))


def agreement(id: str = "AG", **fields: Any) -> dict[str, Any]:
    return {"id": id, "kind": "directed", "from": ["IQ-A"], "to": ["JO-B"], "categories": ["*"], "max_tlp": "RED"} | (
        fields
    )


def graded(reliability: str = "F", credibility: int = 6, **fields: Any) -> Alert:
    """An alert affecting IQ only (JO-B is interested through its subscriptions alone), graded as given: the
    defaults are what an alert submitted without a grading carries."""
    return sample_alert(source_reliability=reliability, information_credibility=credibility, **fields)


def rule_for(alert: Alert, registry: Registry) -> tuple[str, str]:
    verdict = verdict_for(enriched(alert, origin="IQ-A"), registry, registry.agencies["JO-B"])
    return verdict.rule, verdict.reason


@pytest.mark.parametrize(
    ("grade", "minimum", "rule"),
    [
        (("A", 1), {"min_source_reliability": "B", "min_information_credibility": 3}, "shared"),
        (("B", 3), {"min_source_reliability": "B", "min_information_credibility": 3}, "shared"),
        (("C", 1), {"min_source_reliability": "B"}, "below_grading"),
        (("A", 4), {"min_information_credibility": 3}, "below_grading"),
        (("C", 4), {"min_source_reliability": "C", "min_information_credibility": 3}, "below_grading"),
        (("E", 5), {"min_source_reliability": "E", "min_information_credibility": 5}, "shared"),
        (("F", 1), {"min_source_reliability": "E"}, "below_grading"),
        (("A", 6), {"min_information_credibility": 5}, "below_grading"),
        (("F", 6), {"min_source_reliability": "E", "min_information_credibility": 5}, "below_grading"),
        (("F", 6), {}, "shared"),
        (("F", 6), {"min_source_reliability": None, "min_information_credibility": None}, "shared"),
    ],
)
def test_a_subscription_matches_only_an_alert_graded_at_least_its_minimum(
    grade: tuple[str, int], minimum: dict[str, Any], rule: str
) -> None:
    """Each part of the grading meets the subscription's minimum for it, if it asks one; F and 6 ("cannot be
    judged", as an ungraded alert is) meet none, not even the lowest (E, 5); without a minimum all pass."""
    registry = registry_of([{"categories": ["*"], **minimum}])
    assert rule_for(graded(*grade), registry)[0] == rule


def test_below_grading_names_the_grading_and_what_cannot_be_judged() -> None:
    """The recorded reason says how the alert was graded, which part could not be judged, and that no
    affected country made the agency interested."""
    registry = registry_of([{"categories": ["*"], "min_source_reliability": "B"}])
    assert rule_for(graded("F", 2), registry) == (
        "below_grading",
        "graded F2 (F: cannot be judged): below the minimum of every subscription matching "
        "terrorism.attack_plot/Severe, and JO is not an affected country",
    )
    assert "graded C2: below" in rule_for(graded("C", 2), registry)[1]
    assert "graded F6 (F and 6: cannot be judged)" in rule_for(graded(), registry)[1]


def test_below_grading_only_when_every_subscription_that_matches_otherwise_asks_for_better() -> None:
    """The grading is judged against the subscriptions that match the category, place and severity: one of them
    without a minimum (or with one the alert meets) lets the alert in, and a minimum on a subscription that does
    not match anyway leaves the reason `not_subscribed`."""
    strict = {"categories": ["terrorism.*"], "min_source_reliability": "A"}
    assert rule_for(graded("C", 3), registry_of([strict]))[0] == "below_grading"
    assert rule_for(graded("C", 3), registry_of([strict, {"categories": ["terrorism.attack_plot"]}]))[0] == "shared"
    lenient = {"categories": ["*"], "min_source_reliability": "D"}
    assert rule_for(graded("C", 3), registry_of([strict, lenient]))[0] == "shared"
    assert rule_for(graded("C", 3, category="cbrn"), registry_of([strict]))[0] == "not_subscribed"
    severe = {"categories": ["*"], "min_severity": "Extreme", "min_source_reliability": "A"}
    assert rule_for(graded("C", 3), registry_of([severe]))[0] == "not_subscribed"
    elsewhere = {"categories": ["*"], "countries": ["SA"], "min_source_reliability": "A"}
    assert rule_for(graded("C", 3), registry_of([elsewhere]))[0] == "not_subscribed"


def test_an_agency_whose_country_is_affected_gets_the_alert_whatever_its_subscriptions_minimum() -> None:
    """Subscriptions, their minimum grading included, only narrow what they bring in: an agency hears of threats
    to its own country as it does below its minimum severity."""
    registry = registry_of([{"categories": ["*"], "min_source_reliability": "A", "min_information_credibility": 1}])
    assert rule_for(graded("F", 6, affected_countries=["JO"]), registry)[0] == "shared"
    assert rule_for(graded("F", 6, affected_countries=["IQ"]), registry)[0] == "below_grading"


def test_an_agreement_permits_only_an_alert_graded_at_least_its_minimum() -> None:
    """An agreement's minimum is a condition of sharing under it, whatever makes the agency interested (its own
    country affected included); the reason names each agreement and what it requires."""
    registry = registry_of(
        [{"categories": ["*"]}],
        [agreement(min_source_reliability="B", min_information_credibility=2)],
    )
    assert rule_for(graded("B", 2), registry)[0] == "shared"
    assert rule_for(graded("A", 3), registry) == (
        "grading_below_agreement",
        "graded A3: below the minimum of AG (source B, information 2)",
    )
    assert rule_for(graded("F", 1, affected_countries=["JO"]), registry)[0] == "grading_below_agreement"


def test_grading_below_agreement_only_when_every_agreement_that_would_permit_fails_on_grading() -> None:
    """An agreement failing an earlier rule keeps that rule's reason (the grading is the last condition), and of
    several agreements the one whose minimum the alert meets permits it, though it redacts more."""
    every = [{"categories": ["*"]}]
    strict = agreement("STRICT", min_source_reliability="A")
    low_tlp = agreement("GREEN", max_tlp="GREEN", min_source_reliability="A")
    assert rule_for(graded("C", 3, tlp="AMBER"), registry_of(every, [low_tlp]))[0] == "tlp_exceeds_agreement"
    assert rule_for(graded("C", 3, tlp="AMBER"), registry_of(every, [low_tlp, strict]))[0] == (
        "grading_below_agreement"
    )
    registry = registry_of(every, [strict, agreement("LOOSE", redact=["subjects"], min_information_credibility=5)])
    jo = registry.agencies["JO-B"]
    verdict = verdict_for(enriched(graded("C", 3), origin="IQ-A"), registry, jo)
    assert (verdict.rule, verdict.agreement_id, verdict.redact) == ("shared", "LOOSE", frozenset({"subjects"}))
    assert verdict_for(enriched(graded("A", 3), origin="IQ-A"), registry, jo).agreement_id == "STRICT"


def test_an_approved_onward_share_is_still_bound_by_the_agreements_minimum() -> None:
    """The originator's approval lifts subscriptions (their minimum too) but not an agreement between the two:
    its grading requirement still holds; without any agreement the approval alone permits the copy."""
    strict_sub = [{"categories": ["*"], "min_source_reliability": "A"}]
    record = enriched(graded("C", 3), origin="IQ-A")
    bound = registry_of(strict_sub, [agreement(min_source_reliability="B")])
    floor = frozenset({"subjects"})
    assert granted_verdict(record, bound, bound.agencies["JO-B"], floor).rule == "grading_below_agreement"
    unbound = registry_of(strict_sub, [])
    approved = granted_verdict(record, unbound, unbound.agencies["JO-B"], floor)
    assert (approved.rule, approved.delivered, approved.redact) == ("onward_approved", True, floor)


def test_an_update_graded_below_a_holders_minimum_is_withdrawn_from_it() -> None:
    """Every version is decided whole: a holder whose subscription asks for B is told the thread is withdrawn
    when the originator regrades it C, with the rule as the notice's reason code."""
    registry = registry_of([{"categories": ["*"], "min_source_reliability": "B"}])
    update = enriched(graded("C", 2, msg_type="Update", references=["alert-0"]), origin="IQ-A")
    thread = Thread(root="alert-0", origin="IQ-A", severity="Severe", holders={"JO-B": Holding("AG", frozenset())})
    verdicts = fan_out(update, thread, registry)
    assert not isinstance(verdicts, str)
    jo = next(v for v in verdicts if v.agency == "JO-B")
    assert (jo.delivered, jo.event, jo.notice) == (True, "alert.withdrawn", "below_grading")
