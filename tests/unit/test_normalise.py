# ruff: noqa: RUF001  (Arabic and look-alike letters are the point of some cases)
"""One spelling per indicator and subject value (services/common/normalise.py). No I/O."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.folding import fold, fold_text
from services.common.normalise import INDICATOR_KINDS, KINDS, comparable, comparable_values, tidy
from services.common.records import Indicator, Subject
from services.enricher.indicators import normalise
from services.gateway.submission import INDICATOR_MAX
from tests.unit.samples import sample_alert


def test_the_indicator_kinds_are_those_an_alert_may_carry() -> None:
    """The normaliser knows every indicator type the gateway accepts, and no other."""
    assert sorted(INDICATOR_MAX) == sorted(INDICATOR_KINDS)


@pytest.mark.parametrize(
    ("kind", "spellings", "expected"),
    [
        ("ip", ["10.0.0[.]1", " 10.0.0.1 "], "10.0.0.1"),
        ("ip", ["2001:DB8:0:0::1", "2001:db8::0:1"], "2001:db8::1"),
        ("domain", ["Evil[.]Example.", "evil(.)example", "EVIL[dot]example"], "evil.example"),
        ("email", ["Bad.Guy[@]Mail[.]Example", "bad.guy@mail.example"], "bad.guy@mail.example"),
        ("url", ["hxxp://Evil[.]Example", "http://evil.example/"], "http://evil.example/"),
        ("url", ["HTTPS://Relay.Example/K?a=1"], "https://relay.example/K?a=1"),
        ("hash", ["44D88612FEA8A8F36DE82E1278ABB02F"], "44d88612fea8a8f36de82e1278abb02f"),
        ("phone", ["+964 770 123 4567", "+964 (770) 123-4567", "00964 7701234567", "+9647701234567"], "+9647701234567"),
        ("iban", ["gb82 west 1234 5698 7654 32", "GB82-WEST-1234-5698-7654-32"], "GB82WEST12345698765432"),
        ("crypto_wallet", ["0xAbC0000000000000000000000000000000000dEf"], "0xabc0000000000000000000000000000000000def"),
        ("crypto_wallet", ["BC1QAR0SRRR7XFKVY5L643LYDNW9RE59GTZZWF5MDQ"], "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"),
        ("crypto_wallet", ["1BoatSLRHtKNngkdXEeobR76b53LETtpyT"], "1BoatSLRHtKNngkdXEeobR76b53LETtpyT"),
        ("file_name", ["Invoice.PDF.exe"], "invoice.pdf.exe"),
        ("name", ["Khalid Rahmani", "RAHMANI, Khalid", "  khalid   rahmani ", "Khálid Rаhmani"], "khalid rahmani"),
        # Harakat, tatweel and a hamza on the alef are how one Arabic name is written several ways.
        ("name", ["عبد الرحمن", "عَبْد الرَّحْمَن", "عبـــد الرحمن", "عبد ألرحمن"], "الرحمن عبد"),
        ("identifier", ["A 1234-567", "a1234567", "A.123.4567"], "a1234567"),
    ],
)
def test_every_spelling_of_a_value_compares_as_one(kind: str, spellings: list[str], expected: str) -> None:
    """The spellings the module's table names give the same comparable form."""
    assert [comparable(kind, s) for s in spellings] == [expected] * len(spellings)


def test_different_values_stay_different() -> None:
    """Normalising does not merge what differs: another phone, a URL's path case, a base58 wallet's case."""
    assert comparable("phone", "+964 770 123 4567") != comparable("phone", "+964 770 123 4568")
    assert comparable("url", "http://e.example/A") != comparable("url", "http://e.example/a")
    assert comparable("crypto_wallet", "1BoatSLRHt") != comparable("crypto_wallet", "1boatslrht")
    assert comparable("name", "Khalid Rahmani") != comparable("name", "Khalid Rahman")


def test_nothing_to_compare_is_empty() -> None:
    """A value of separators or punctuation alone leaves nothing: no entry or alert matches on it."""
    assert [comparable("phone", "()-"), comparable("name", " , . "), comparable("identifier", " - ")] == ["", "", ""]


# Any text but brackets, which nest defanged forms (`[[.].]`): those are refanged one level per pass.
VALUES = st.text(alphabet=st.characters(exclude_characters="[]()"), max_size=40) | st.sampled_from(
    ["00964 770", "+00 0012", "hxxp://Evil[.]Example", "a[at]b(.)c", "عبـد", "2001:DB8::1", "IQ98 NBIQ"]
)


@given(st.sampled_from(KINDS), VALUES)
def test_comparable_is_idempotent_and_sees_through_tidy(kind: str, value: str) -> None:
    """Comparing again what was compared, or what an alert carries (tidied), gives the same form."""
    once = comparable(kind, value)
    assert comparable(kind, once) == once
    if kind in INDICATOR_KINDS:
        assert comparable(kind, tidy(kind, value)) == once


@given(st.text(alphabet=st.characters(max_codepoint=0x7F)) | st.text())
def test_names_fold_as_redaction_folds_them(text: str) -> None:
    """`fold_text` is `fold`'s text (what redaction masks by), every run of spaces one space; ASCII alone too."""
    assert fold_text(text) == re.sub(" {2,}", " ", fold(text).text)


def test_the_enricher_tidies_indicators_with_this_module() -> None:
    """What an alert carries is `tidy`'s form: one normaliser, not two."""
    indicator = Indicator(type="domain", value=" Evil[.]Example. ")
    assert normalise(indicator) == Indicator(type="domain", value=tidy("domain", indicator.value))


def test_an_alert_s_comparable_values() -> None:
    """Indicators, subjects' names and identifiers; an identifier labelled as an indicator kind counts as both."""
    alert = sample_alert(
        indicators=[Indicator(type="domain", value="evil.example"), Indicator(type="phone", value="+9647701234567")],
        subjects=[
            Subject(kind="person", name="RAHMANI, Khalid", identifiers={"passport": "A 1234567", "Phone": "00964 770"}),
            Subject(kind="vehicle", name=" - "),
        ],
    )
    assert comparable_values(alert, kinds={"phone"}) == {("phone", "+9647701234567"), ("phone", "+964770")}
    assert comparable_values(alert) == {
        ("domain", "evil.example"),
        ("phone", "+9647701234567"),
        ("name", "khalid rahmani"),
        ("identifier", "a1234567"),
        ("identifier", "00964770"),
        ("phone", "+964770"),
    }
