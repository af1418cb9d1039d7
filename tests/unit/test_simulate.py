"""`rctc simulate`: the differences a draft registry makes to past alerts."""

from __future__ import annotations

from datetime import UTC, datetime

from services.common.registry import AgencyEntry, Agreement, Registry, RegistryPublished
from services.router.simulate import compare
from tests.unit.samples import enriched, sample_alert

AT = datetime(2026, 11, 28, tzinfo=UTC)


def registry(agreements: list[Agreement]) -> Registry:
    agencies = [AgencyEntry(code=c, name=c, country=c[:2]) for c in ("IQ-A", "JO-B", "SA-C")]
    return Registry(
        RegistryPublished(
            version=1,
            sha256="x",
            published_at=AT,
            published_by="t",
            source="t",
            agencies=agencies,
            agreements=agreements,
        )
    )


def test_added_and_tightened_agreements_show_as_changes() -> None:
    """A new agreement adds a recipient; more redaction for an existing one shows as a change too."""
    affected_all = enriched(sample_alert(affected_countries=["IQ", "JO", "SA"]), origin="IQ-A")
    before = registry(
        [Agreement(id="AB", kind="multilateral", parties=["IQ-A", "JO-B"], categories=["*"], max_tlp="AMBER")]
    )
    after = registry(
        [
            Agreement(
                id="AB",
                kind="multilateral",
                parties=["IQ-A", "JO-B"],
                categories=["*"],
                max_tlp="AMBER",
                redact=["subjects"],
            ),
            Agreement(id="AC", kind="directed", from_=["IQ-A"], to=["SA-C"], categories=["*"], max_tlp="AMBER"),
        ]
    )
    changes = {c.agency: c.describe() for c in compare([affected_all], before, after)}
    assert changes == {
        "JO-B": "alert-1 JO-B: receives under AB -> receives under AB, redacting subjects",
        "SA-C": "alert-1 SA-C: withheld (no_agreement) -> receives under AC",
    }


def test_identical_registries_change_nothing() -> None:
    """The same registry twice yields no change."""
    reg = registry(
        [Agreement(id="AB", kind="multilateral", parties=["IQ-A", "JO-B"], categories=["*"], max_tlp="AMBER")]
    )
    assert compare([enriched(sample_alert(), origin="IQ-A")], reg, reg) == []
