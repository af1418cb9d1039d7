"""A recipient's copy is built from an allow-list, and free text quoting a redacted value is masked."""

from __future__ import annotations

import msgspec

from services.common.records import Indicator, SharedAlert, Subject
from services.common.registry import REDACTABLE_FIELDS
from services.router.redaction import MASK, shared_copy
from tests.unit.samples import sample_alert


def test_nothing_redacted_keeps_every_field_but_handling() -> None:
    """Without redaction the copy carries every field, except the handling list of who may receive it."""
    alert = sample_alert(releasable_to=["JO-TAC", "SA"], originator_control=True)
    copy, removed = shared_copy(alert, [])
    assert removed == []
    assert copy.summary == alert.summary and copy.subjects == alert.subjects
    assert copy.originator_control is True
    assert "releasable_to" not in msgspec.structs.asdict(copy)


def test_redacted_subjects_are_masked_in_title_and_summary() -> None:
    """A redacted subject's name and identifiers disappear from the text too, whatever their case."""
    alert = sample_alert(
        title="ABU KARIM moves tonight",
        summary="abu karim (passport X1234567) meets at evil.example",
        subjects=[Subject(kind="person", name="Abu Karim", identifiers={"passport": "X1234567"})],
    )
    copy, removed = shared_copy(alert, ["subjects"])
    assert removed == ["subjects"] and copy.subjects is None
    assert copy.title == f"{MASK} moves tonight"
    assert copy.summary == f"{MASK} (passport {MASK}) meets at evil.example"


def test_redacted_indicators_are_masked_in_plain_and_defanged_forms() -> None:
    """Indicators are masked as written, defanged, or with separators (phones, IBANs)."""
    alert = sample_alert(
        summary="Go to hxxps://evil[.]example/x or evil.example; call +964 770 123 4567; IBAN IQ98 NBIQ 8501 2345",
        indicators=[
            Indicator(type="url", value="https://evil.example/x"),
            Indicator(type="domain", value="evil.example"),
            Indicator(type="phone", value="+9647701234567"),
            Indicator(type="iban", value="IQ98NBIQ85012345"),
        ],
    )
    copy, _ = shared_copy(alert, ["indicators"])
    assert copy.summary == f"Go to {MASK} or {MASK}; call {MASK}; IBAN {MASK}"
    assert copy.indicators is None


def test_every_redactable_field_can_be_removed() -> None:
    """Redacting all redactable fields leaves only what makes an alert actionable."""
    copy, removed = shared_copy(sample_alert(), REDACTABLE_FIELDS)
    assert removed == sorted(REDACTABLE_FIELDS)
    kept = {k for k, v in msgspec.structs.asdict(copy).items() if v not in (None, [], False)}
    assert kept == {"msg_type", "category", "severity", "urgency", "certainty", "tlp", "title", "sent"}


def test_copy_fields_are_an_allow_list() -> None:
    """A field added to SharedAlert must be classified: always sent, or redactable (this test names them)."""
    always = {
        "msg_type",
        "references",
        "category",
        "severity",
        "urgency",
        "certainty",
        "tlp",
        "title",
        "sent",
        "expires",
        "originator_control",
    }
    assert set(SharedAlert.__struct_fields__) == always | set(REDACTABLE_FIELDS)
