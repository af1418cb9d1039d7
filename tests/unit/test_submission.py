"""What the gateway accepts as an alert, and the reasons it refuses one. No I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from services.gateway.submission import InvalidSubmission, parse_submission
from tests.support.world import alert_json

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def refusal(**fields: Any) -> list[tuple[str, str]]:
    with pytest.raises(InvalidSubmission) as caught:
        parse_submission(json.dumps(alert_json(**fields)).encode(), now=NOW)
    return caught.value.problems


def test_valid_submission_becomes_an_alert() -> None:
    """A valid body gives an Alert; `sent` defaults to the time of receipt and TLP: prefixes are dropped."""
    alert = parse_submission(json.dumps(alert_json(tlp="TLP:AMBER+STRICT")).encode(), now=NOW)
    assert (alert.tlp, alert.sent, alert.msg_type) == ("AMBER+STRICT", NOW, "Alert")


def test_malformed_json_is_flagged_as_such() -> None:
    """Bytes that are not JSON are refused as malformed, not as an invalid alert."""
    with pytest.raises(InvalidSubmission) as caught:
        parse_submission(b"{not json", now=NOW)
    assert caught.value.malformed


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"category": "weather"}, "$.category"),
        ({"tlp": "PINK"}, "$.tlp"),
        ({"source_reliability": "G"}, "$.source_reliability"),
        ({"information_credibility": 7}, "$.information_credibility"),
        ({"title": "   "}, "$.title"),
        ({"tlp": "RED"}, "$.releasable_to"),
        ({"originator_control": True}, "$.releasable_to"),
        ({"msg_type": "Update"}, "$.references"),
        ({"affected_countries": ["iq"]}, "$.affected_countries[0]"),
        ({"releasable_to": ["somebody"]}, "$.releasable_to[0]"),
        ({"indicators": [{"type": "colour", "value": "red"}]}, "$.indicators[0].type"),
        ({"locations": [{"lat": 91, "lon": 0}]}, "$.locations[0]"),
        ({"expires": "2020-01-01T00:00:00Z"}, "$.expires"),
        ({"sent": "2026-11-28T09:00:00"}, "$.sent"),
    ],
)
def test_semantic_refusals(fields: dict[str, Any], field: str) -> None:
    """Each rule that protects recipients refuses the alert and names the field."""
    assert field in [f for f, _ in refusal(**fields)]


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"origin": "JO-TAC"}, "$"), ({"severity": "Catastrophic"}, "$.severity"), ({"title": 3}, "$.title")],
)
def test_structural_refusals(fields: dict[str, Any], field: str) -> None:
    """Unknown fields (an `origin` above all) and wrong types are refused with their path."""
    [(where, message)] = refusal(**fields)
    assert where == field and message


def test_red_with_named_recipients_is_accepted() -> None:
    """TLP:RED goes through when its recipients are named."""
    alert = parse_submission(json.dumps(alert_json(tlp="RED", releasable_to=["JO-TAC"])).encode(), now=NOW)
    assert alert.releasable_to == ["JO-TAC"]
