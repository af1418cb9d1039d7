"""Indicator extraction from analysts' free text, and enrichment. No I/O."""

from __future__ import annotations

import gc
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.priority import priority
from services.common.records import AlertEnriched, AlertRejected, AlertSubmitted, Indicator
from services.common.watchlist import Watchlist
from services.enricher.enrich import enrich
from services.enricher.indicators import _domains, _emails, extract
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
        AlertSubmitted(alert_id="a", origin="IQ-A", submitted_at=now, alert=alert), now=now, watchlist=Watchlist()
    )
    assert isinstance(result, AlertEnriched)
    assert result.alert.affected_countries == ["IQ", "JO"]
    assert [(i.type, i.value) for i in result.alert.indicators] == [("domain", "evil.example"), ("ip", "10.0.0.1")]
    assert result.extracted_indicators == 1
    assert result.watchlist_hits == []
    assert result.priority == 1


def test_expired_alert_is_rejected() -> None:
    """An alert that expired before enrichment is rejected with the reason, not shared."""
    now = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    alert = sample_alert(expires=now - timedelta(minutes=1))
    result = enrich(
        AlertSubmitted(alert_id="a", origin="IQ-A", submitted_at=now, alert=alert), now=now, watchlist=Watchlist()
    )
    assert isinstance(result, AlertRejected) and "expired" in result.reason


def test_priority_table() -> None:
    """Severity sets the base; Immediate raises it, an unlikely alert lowers it; bounded to 1..4."""
    assert priority(sample_alert(severity="Extreme", urgency="Immediate")) == 1
    assert priority(sample_alert(severity="Moderate", urgency="Expected", certainty="Likely")) == 3
    assert priority(sample_alert(severity="Minor", urgency="Future", certainty="Unlikely")) == 4


# The regexes that `_domains` and `_emails` replace: the scanners must find exactly what these find.
REFERENCE_DOMAIN = re.compile(r"\b(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}\b", re.IGNORECASE)
REFERENCE_EMAIL = re.compile(r"\b[\w.+-]+@(?:[a-z0-9-]+\.)+[a-z]{2,24}\b", re.IGNORECASE)
# Few characters, so that random texts are dense in labels, dots, dashes, at signs and word edges.
TRICKY = st.text(alphabet="aZk9-._+@ é\u212a", max_size=60)


@settings(max_examples=2000, deadline=None)
@given(text=TRICKY)
def test_domain_scanner_finds_what_the_regex_found(text: str) -> None:
    """The linear domain scanner yields the same spans as the backtracking regex it replaces."""
    assert [m.span() for m in REFERENCE_DOMAIN.finditer(text)] == list(_domains(text))


@settings(max_examples=2000, deadline=None)
@given(text=TRICKY)
def test_email_scanner_finds_what_the_regex_found(text: str) -> None:
    """The linear e-mail scanner yields the same spans as the backtracking regex it replaces."""
    assert [m.span() for m in REFERENCE_EMAIL.finditer(text)] == list(_emails(text))


def test_long_labels_and_runs_match_the_regex() -> None:
    """Labels at and past 63 characters, and TLDs at and past 24 letters, are judged as the regex judges them."""
    for text in (
        "x" * 63 + ".example " + "x" * 64 + ".example",
        "a-" * 40 + "b.example",
        "mail." + "q" * 24 + " mail." + "q" * 25,
        "u@" + "a." * 30 + "example.c0m",
        "a.a@b.example.x@y.com",
    ):
        assert [m.span() for m in REFERENCE_DOMAIN.finditer(text)] == list(_domains(text))
        assert [m.span() for m in REFERENCE_EMAIL.finditer(text)] == list(_emails(text))


ADVERSARIAL = {
    "dots": "a.",
    "ats": "a@",
    "dashes": "a-",
    "digits": "1.",
    "mail_chain": "a.a@",
    "word": "w",
    "urls": "http://",
    "mixed": "a.b-c@1.2.3+x_ y. ",
    "defanged": "a[.]b[@]",
    "hex": "0f",
    "phone": "+9 ",
}


def _cost(text: str) -> float:
    """CPU seconds of one extraction: the least of a few repeats, so a busy machine only adds noise upward."""
    best = float("inf")
    gc.collect()
    gc.disable()  # a collection that happens to fall in one measurement is not the extraction's cost
    try:
        for _ in range(7):
            start = time.process_time()
            extract(text)
            best = min(best, time.process_time() - start)
    finally:
        gc.enable()
    return best


@pytest.mark.parametrize("unit", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_extraction_cost_grows_linearly(unit: str) -> None:
    """The same adversarial text at n and 16n characters costs under 32 times as much: linear (16x) with room
    for a loaded machine's cache effects (up to 13.6x was seen for 8x the text), far from quadratic (256x)."""
    small = unit * (8192 // len(unit))
    large = unit * (16 * 8192 // len(unit))
    # Floor the small cost at 50 microseconds so timer resolution cannot make a tiny denominator.
    ratio = _cost(large) / max(_cost(small), 50e-6)
    assert ratio < 32, f"{ratio:.1f}x for 16x the text"


@pytest.mark.parametrize("unit", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_quarter_megabyte_of_adversarial_text_completes(unit: str) -> None:
    """256 KiB of adversarial text is extracted (within the test's timeout), whatever it is made of."""
    text = unit * (256 * 1024 // len(unit))
    assert isinstance(extract(text), list)
