"""What the gateway accepts as an alert, and the reasons it refuses one. No I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from services.common.records import AckSubmitted
from services.common.topics import load_declarations
from services.gateway import submission
from services.gateway.settings import HttpSettings
from services.gateway.submission import InvalidSubmission, kafka_ack_problem, parse_ack, parse_submission
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
        ({"locations": [{"lat": 91, "lon": 0}]}, "$.locations[0].lat"),
        ({"expires": "2020-01-01T00:00:00Z"}, "$.expires"),
        ({"sent": "2026-11-28T09:00:00"}, "$.sent"),
    ],
)
def test_semantic_refusals(fields: dict[str, Any], field: str) -> None:
    """Each rule that protects recipients refuses the alert and names the field."""
    assert field in [f for f, _ in refusal(**fields)]


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"origin": "JO-TAC"}, "$.origin"), ({"severity": "Catastrophic"}, "$.severity"), ({"title": 3}, "$.title")],
)
def test_structural_refusals(fields: dict[str, Any], field: str) -> None:
    """Unknown fields (an `origin` above all) and wrong types are refused with their path."""
    [(where, message)] = refusal(**fields)
    assert where == field and message


def test_red_with_named_recipients_is_accepted() -> None:
    """TLP:RED goes through when its recipients are named."""
    alert = parse_submission(json.dumps(alert_json(tlp="RED", releasable_to=["JO-TAC"])).encode(), now=NOW)
    assert alert.releasable_to == ["JO-TAC"]


def test_every_invalid_field_is_reported_at_its_own_path() -> None:
    """Five invalid fields in one body: the refusal names all five, each at its JSON path."""
    problems = refusal(
        category="weather",
        tlp="PINK",
        information_credibility="two",
        indicators=[{"type": "ip", "value": "192.0.2.1"}, {"type": "colour", "value": "red"}],
        subjects=[{"kind": "person", "name": "A", "identifiers": {"passport": 7}}],
    )
    expected = {
        "$.category",
        "$.tlp",
        "$.information_credibility",
        "$.indicators[1].type",
        "$.subjects[0].identifiers.passport",
    }
    assert expected == {field for field, _ in problems}


def test_missing_required_fields_are_reported_at_their_paths() -> None:
    """A missing field is named at its own path, not at `$`; so is one missing inside an array item."""
    body = {k: v for k, v in alert_json(indicators=[{"type": "ip"}]).items() if k not in ("title", "severity")}
    with pytest.raises(InvalidSubmission) as caught:
        parse_submission(json.dumps(body).encode(), now=NOW)
    expected = {"$.title", "$.severity", "$.indicators[0].value"}
    assert expected == {field for field, _ in caught.value.problems}


def test_every_unknown_field_is_refused_at_its_path() -> None:
    """Unknown fields stay refused, each reported where it stands, at the top and inside items."""
    problems = refusal(origin="JO-TAC", indicators=[{"type": "ip", "value": "192.0.2.1", "confidence": 9}])
    assert {"$.origin", "$.indicators[0].confidence"} == {field for field, _ in problems}


def _over(limit: int) -> str:
    return "x" * (limit + 1)


LIMITS: list[tuple[str, dict[str, Any], str]] = [
    ("title", {"title": _over(submission.MAX_TITLE)}, "$.title"),
    ("summary", {"summary": _over(submission.MAX_SUMMARY)}, "$.summary"),
    ("references", {"references": ["a"] * (submission.MAX_REFERENCES + 1)}, "$.references"),
    ("a reference", {"references": [_over(submission.MAX_REFERENCE)]}, "$.references[0]"),
    ("countries", {"affected_countries": ["IQ"] * (submission.MAX_COUNTRIES + 1)}, "$.affected_countries"),
    ("locations", {"locations": [{"lat": 0, "lon": 0}] * (submission.MAX_LOCATIONS + 1)}, "$.locations"),
    ("radius", {"locations": [{"lat": 0, "lon": 0, "radius_km": 1e9}]}, "$.locations[0].radius_km"),
    (
        "indicators",
        {"indicators": [{"type": "ip", "value": "192.0.2.1"}] * (submission.MAX_INDICATORS + 1)},
        "$.indicators",
    ),
    ("subjects", {"subjects": [{"kind": "person", "name": "A"}] * (submission.MAX_SUBJECTS + 1)}, "$.subjects"),
    ("subject name", {"subjects": [{"kind": "person", "name": _over(200)}]}, "$.subjects[0].name"),
    (
        "nationality",
        {"subjects": [{"kind": "person", "name": "A", "nationality": _over(64)}]},
        "$.subjects[0].nationality",
    ),
    (
        "identifiers",
        {"subjects": [{"kind": "person", "name": "A", "identifiers": {f"k{i}": "v" for i in range(21)}}]},
        "$.subjects[0].identifiers",
    ),
    (
        "identifier key",
        {"subjects": [{"kind": "person", "name": "A", "identifiers": {_over(64): "v"}}]},
        f'$.subjects[0].identifiers["{"x" * 64}…"]',
    ),
    (
        "identifier value",
        {"subjects": [{"kind": "person", "name": "A", "identifiers": {"passport": _over(256)}}]},
        "$.subjects[0].identifiers.passport",
    ),
    ("releasable_to", {"releasable_to": ["IQ"] * (submission.MAX_RELEASABLE_TO + 1)}, "$.releasable_to"),
    ("sent", {"sent": "2026-11-28T09:00:00Z" + " " * 64}, "$.sent"),
]


@pytest.mark.parametrize(("fields", "field"), [c[1:] for c in LIMITS], ids=[c[0] for c in LIMITS])
def test_every_string_and_array_has_a_maximum(fields: dict[str, Any], field: str) -> None:
    """One past each documented maximum is refused at that field's path."""
    assert field in [f for f, _ in refusal(**fields)]


@pytest.mark.parametrize(("kind", "limit"), list(submission.INDICATOR_MAX.items()))
def test_indicator_values_have_a_maximum_by_type(kind: str, limit: int) -> None:
    """An indicator value is accepted at its type's maximum and refused one character past it."""
    at_limit = parse_submission(
        json.dumps(alert_json(indicators=[{"type": kind, "value": "a" * limit}])).encode(), now=NOW
    )
    assert [limit] == [len(i.value) for i in at_limit.indicators]
    assert [f for f, _ in refusal(indicators=[{"type": kind, "value": _over(limit)}])] == ["$.indicators[0].value"]


def test_a_body_at_every_maximum_is_accepted() -> None:
    """The limits are not off by one: a body with every array and string at its maximum goes through."""
    body = alert_json(
        title="t" * submission.MAX_TITLE,
        references=["r" * submission.MAX_REFERENCE] * submission.MAX_REFERENCES,
        msg_type="Update",
        subjects=[
            {
                "kind": "person",
                "name": "n" * submission.MAX_SUBJECT_NAME,
                "nationality": "IQ",
                "identifiers": {f"{i:0>64}": "v" * submission.MAX_IDENTIFIER_VALUE for i in range(20)},
            }
        ],
        locations=[{"lat": 0, "lon": 0, "radius_km": submission.MAX_RADIUS_KM}] * submission.MAX_LOCATIONS,
    )
    alert = parse_submission(json.dumps(body).encode(), now=NOW)
    assert (len(alert.references), len(alert.locations)) == (submission.MAX_REFERENCES, submission.MAX_LOCATIONS)


def test_problems_listed_are_capped() -> None:
    """Thousands of unknown fields are answered with a bounded list that says how many it left out."""
    problems = refusal(**{f"f{i}": 1 for i in range(5000)})
    assert len(problems) == submission.MAX_PROBLEMS + 1
    assert "more problems" in problems[-1][1]


def test_deep_nesting_is_malformed_not_a_crash() -> None:
    """A body nested deeper than the decoder recurses is refused as malformed."""
    with pytest.raises(InvalidSubmission) as caught:
        parse_submission(b"[" * 100_000, now=NOW)
    assert caught.value.malformed


def test_ack_body_is_bounded_and_strict() -> None:
    """An ack's note has a maximum, its response is one of four, and unknown fields are refused at their paths."""
    assert parse_ack(b"").response is None
    assert parse_ack(b'{"response": "actioned", "note": "done"}').response == "actioned"
    with pytest.raises(InvalidSubmission) as caught:
        parse_ack(json.dumps({"response": "maybe", "note": _over(submission.MAX_NOTE), "x": 1}).encode())
    assert {"$.response", "$.note", "$.x"} == {f for f, _ in caught.value.problems}


def test_ack_body_that_is_not_json_is_malformed() -> None:
    """Bytes that are not JSON are refused as malformed, not as an invalid ack."""
    with pytest.raises(InvalidSubmission) as caught:
        parse_ack(b"{")
    assert caught.value.malformed


def test_agency_writable_topics_have_the_record_cap() -> None:
    """The broker caps what an agency writes to its own acks and submissions topics at the size consumers accept."""
    caps = {t.name: t.config.get("max.message.bytes") for t in load_declarations().for_agency("JO-B")}
    assert int(caps["agency.JO-B.acks"] or 0) == submission.AGENCY_RECORD_MAX_BYTES
    assert int(caps["agency.JO-B.submissions"] or 0) == submission.AGENCY_SUBMISSION_MAX_BYTES


def test_a_submission_the_http_path_accepts_fits_its_kafka_topic() -> None:
    """Every body POST /v1/alerts takes fits a SubmitAlert record, key and header included, on the agency's topic."""
    header, key, batch_overhead = 10, 4 * 255, 1024  # single-object header; a 255-character key in UTF-8
    record = HttpSettings().max_body_bytes + 8 + header + key  # the body's Avro length prefix at most 8 bytes
    assert record + batch_overhead <= submission.AGENCY_SUBMISSION_MAX_BYTES


def test_a_key_given_twice_is_refused_not_read_one_way_or_the_other() -> None:
    """Parsers disagree on which of two equal keys wins: such a body would be one alert to the gateway and
    another to a proxy or an auditor that reads the first (red team, F5)."""
    body = json.dumps(alert_json()).encode()[:-1] + b', "tlp": "RED"}'
    with pytest.raises(InvalidSubmission) as refused:
        parse_submission(body, now=NOW)
    assert refused.value.malformed
    assert refused.value.problems == [("$", 'the body is not valid JSON here: the key "tlp" appears twice')]


def _kafka_ack(**fields: Any) -> AckSubmitted:
    values: dict[str, Any] = {
        "ack_id": "a-1",
        "alert_id": "5b0e7a52-9c1e-4a57-8d9e-2f7b1c3d4e5f",
        "agency": "JO-TAC",
        "channel": "kafka",
        "submitted_at": NOW,
        **fields,
    }
    return AckSubmitted(**values)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, None),
        ({"agency": "IQ-NAB"}, "an ack for 'IQ-NAB' written to agency.JO-TAC.acks"),
        ({"alert_id": "../outstanding"}, "alert_id is not an alert id (a canonical UUID)"),
        ({"ack_id": "x" * 5000}, "ack_id has 5000 characters; 1 to 128 are allowed"),
        ({"note": "n" * 60_000}, "note has 60000 characters; at most 2000 are allowed"),
    ],
)
def test_an_ack_produced_to_kafka_meets_the_http_acks_rules(fields: dict[str, Any], expected: str | None) -> None:
    """Over Kafka an agency gets no looser limits than over HTTP, and its topic is its identity (red team, F5)."""
    assert expected == kafka_ack_problem(_kafka_ack(**fields), "JO-TAC", "agency.JO-TAC.acks")


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59-23:00", "0001-01-01T00:00:00+23:00", "1800-01-01T00:00:00Z"])
def test_a_time_no_reader_could_hold_is_refused_at_its_path(moment: str) -> None:
    """Near year 1 or 9999 a time zone moves an instant out of what UTC can hold: accepted, the alert would be
    encoded and never decoded (quarantined after a 202). Refused instead, at its own path (review finding)."""
    with pytest.raises(InvalidSubmission) as refused:
        parse_submission(json.dumps(alert_json(sent=moment, expires=moment)).encode(), now=NOW)
    assert [field for field, _ in refused.value.problems] == ["$.sent", "$.expires"]
