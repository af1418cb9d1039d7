"""Indicator extraction from analysts' free text, and enrichment. No I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.common.records import AlertEnriched, AlertRejected, AlertSubmitted, Indicator
from services.enricher.enrich import enrich, priority
from services.enricher.indicators import extract
from tests.unit.samples import sample_alert

TEXT = (
    "Payments via hxxp://evil-site[.]com/pay and wallet bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq; contact "
    "Bad.Guy@Mail.Example or +964 770 123 4567; C2 at 185.220.101[.]4 and badcdn.net; see report.pdf; hash "
    "44D88612FEA8A8F36DE82E1278ABB02F."
)


def test_extracts_refanged_normalised_indicators_in_order() -> None:
    """Defanged values are refanged, normalised, de-duplicated, and file names are not taken for domains."""
    assert extract(TEXT + " Again: badcdn.net") == [
        Indicator(type="url", value="http://evil-site.com/pay"),
        Indicator(type="crypto_wallet", value="bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"),
        Indicator(type="email", value="bad.guy@mail.example"),
        Indicator(type="phone", value="+9647701234567"),
        Indicator(type="ip", value="185.220.101.4"),
        Indicator(type="domain", value="badcdn.net"),
        Indicator(type="hash", value="44d88612fea8a8f36de82e1278abb02f"),
    ]


def test_plain_prose_has_no_indicators() -> None:
    """Ordinary sentences (abbreviations, versions, years) yield nothing."""
    assert extract("The meeting, e.g. in 2026, used version 1.2 of the plan.") == []


def test_enrich_merges_normalises_and_prioritises() -> None:
    """Submitted and extracted indicators merge without duplicates; codes are upper-cased."""
    now = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    alert = sample_alert(summary="Seen at EVIL.example and 10.0.0[.]1", affected_countries=["iq", "IQ", "jo"])
    result = enrich(
        AlertSubmitted(alert_id="a", origin="IQ-A", submitted_at=now, alert=alert),
        now=now,
        watchlist=frozenset({"abu karim"}),
    )
    assert isinstance(result, AlertEnriched)
    assert result.alert.affected_countries == ["IQ", "JO"]
    assert [(i.type, i.value) for i in result.alert.indicators] == [("domain", "evil.example"), ("ip", "10.0.0.1")]
    assert result.extracted_indicators == 1
    assert result.watchlist_hits == ["abu karim"]
    assert result.priority == 1


def test_expired_alert_is_rejected() -> None:
    """An alert that expired before enrichment is rejected with the reason, not shared."""
    now = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    alert = sample_alert(expires=now - timedelta(minutes=1))
    result = enrich(
        AlertSubmitted(alert_id="a", origin="IQ-A", submitted_at=now, alert=alert), now=now, watchlist=frozenset()
    )
    assert isinstance(result, AlertRejected) and "expired" in result.reason


def test_priority_table() -> None:
    """Severity sets the base; Immediate raises it, an unlikely alert lowers it; bounded to 1..4."""
    assert priority(sample_alert(severity="Extreme", urgency="Immediate")) == 1
    assert priority(sample_alert(severity="Moderate", urgency="Expected", certainty="Likely")) == 3
    assert priority(sample_alert(severity="Minor", urgency="Future", certainty="Unlikely")) == 4
