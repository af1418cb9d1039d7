"""What an agency may submit, and every reason a submission is refused. Pure: no I/O.

    alert = parse_submission(body, now=utcnow())    # raises InvalidSubmission with every problem found

The JSON is decoded strictly (unknown fields are errors, so a caller cannot smuggle in an `origin`), then
checked against the rules a recipient relies on: a known category and TLP, Admiralty grades in range,
TLP:RED only with `releasable_to`, an Update or Cancel naming what it updates.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

import msgspec

from services.common import taxonomy
from services.common.records import (
    TLP_LEVELS,
    Alert,
    Certainty,
    Indicator,
    Location,
    MsgType,
    Severity,
    Subject,
    Urgency,
)

INDICATOR_TYPES = ("ip", "domain", "url", "hash", "email", "phone", "iban", "crypto_wallet", "file_name")
SUBJECT_KINDS = ("person", "organisation", "vehicle")
COUNTRY = re.compile(r"^[A-Z]{2}$")
RECIPIENT = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{2,16})?$")


class InvalidSubmission(Exception):
    """A submission was refused; `problems` lists (field, message) for the caller."""

    def __init__(self, problems: list[tuple[str, str]], *, malformed: bool = False) -> None:
        self.problems = problems
        self.malformed = malformed
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems))


class SubjectIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    kind: Literal["person", "organisation", "vehicle"]
    name: str
    identifiers: dict[str, str] = {}
    nationality: str | None = None


class AlertSubmission(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    msg_type: MsgType = "Alert"
    references: list[str] = []
    category: str
    severity: Severity
    urgency: Urgency
    certainty: Certainty
    tlp: str
    source_reliability: str = "F"
    information_credibility: int = 6
    title: str
    summary: str = ""
    sent: datetime | None = None
    expires: datetime | None = None
    affected_countries: list[str] = []
    locations: list[Location] = []
    indicators: list[Indicator] = []
    subjects: list[SubjectIn] = []
    releasable_to: list[str] = []
    originator_control: bool = False


def parse_submission(body: bytes, *, now: datetime) -> Alert:
    try:
        sub = msgspec.json.decode(body, type=AlertSubmission)
    except msgspec.DecodeError as exc:
        message, _, where = str(exc).partition(" - at ")
        if isinstance(exc, msgspec.ValidationError):
            raise InvalidSubmission([(where.strip("`") or "$", message)]) from None
        raise InvalidSubmission([("$", f"the body is not valid JSON: {message}")], malformed=True) from None
    problems = check_submission(sub, now=now)
    if problems:
        raise InvalidSubmission(problems)
    return Alert(
        msg_type=sub.msg_type,
        references=sub.references,
        category=sub.category,
        severity=sub.severity,
        urgency=sub.urgency,
        certainty=sub.certainty,
        tlp=sub.tlp.removeprefix("TLP:"),
        source_reliability=sub.source_reliability,
        information_credibility=sub.information_credibility,
        title=sub.title.strip(),
        summary=sub.summary.strip(),
        sent=_millis(sub.sent or now),
        expires=_millis(sub.expires) if sub.expires else None,
        affected_countries=sub.affected_countries,
        locations=sub.locations,
        indicators=sub.indicators,
        subjects=[
            Subject(kind=s.kind, name=s.name, identifiers=s.identifiers, nationality=s.nationality)
            for s in sub.subjects
        ],
        releasable_to=sub.releasable_to,
        originator_control=sub.originator_control,
    )


def check_submission(sub: AlertSubmission, *, now: datetime) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []

    def bad(field: str, message: str) -> None:
        problems.append((field, message))

    if sub.category not in taxonomy.CATEGORIES:
        bad("$.category", f"{sub.category!r} is not in the taxonomy: {', '.join(taxonomy.CATEGORIES)}")
    tlp = sub.tlp.removeprefix("TLP:")
    if tlp not in TLP_LEVELS:
        bad("$.tlp", f"{sub.tlp!r} is not a TLP 2.0 level: {', '.join(TLP_LEVELS)}")
    if sub.source_reliability not in ("A", "B", "C", "D", "E", "F"):
        bad("$.source_reliability", "Admiralty source reliability is a letter from A to F")
    if not 1 <= sub.information_credibility <= 6:
        bad("$.information_credibility", "Admiralty information credibility is a number from 1 to 6")
    if not sub.title.strip():
        bad("$.title", "a title is required")
    elif len(sub.title) > 200:
        bad("$.title", "a title has at most 200 characters")
    if len(sub.summary) > 20_000:
        bad("$.summary", "a summary has at most 20000 characters")
    if sub.sent is not None and sub.sent.tzinfo is None:
        bad("$.sent", "a time needs a timezone (e.g. 2026-11-28T09:00:00Z)")
    if sub.expires is not None:
        if sub.expires.tzinfo is None:
            bad("$.expires", "a time needs a timezone (e.g. 2026-11-28T09:00:00Z)")
        elif sub.expires <= (sub.sent if sub.sent and sub.sent.tzinfo else now):
            bad("$.expires", "an alert cannot expire before it is sent")
    if sub.msg_type in ("Update", "Cancel") and not sub.references:
        bad("$.references", f"an {sub.msg_type} names the alert id(s) it refers to")
    for i, country in enumerate(sub.affected_countries):
        if not COUNTRY.match(country):
            bad(f"$.affected_countries[{i}]", f"{country!r} is not an ISO 3166-1 alpha-2 code (e.g. IQ)")
    for i, loc in enumerate(sub.locations):
        if not (-90 <= loc.lat <= 90 and -180 <= loc.lon <= 180):
            bad(f"$.locations[{i}]", "latitude is -90..90 and longitude -180..180")
    for i, ind in enumerate(sub.indicators):
        if ind.type not in INDICATOR_TYPES:
            bad(f"$.indicators[{i}].type", f"{ind.type!r} is not one of {', '.join(INDICATOR_TYPES)}")
        if not ind.value.strip():
            bad(f"$.indicators[{i}].value", "an indicator needs a value")
    for i, subject in enumerate(sub.subjects):
        if not subject.name.strip():
            bad(f"$.subjects[{i}].name", "a subject needs a name")
    for i, code in enumerate(sub.releasable_to):
        if not RECIPIENT.match(code):
            bad(f"$.releasable_to[{i}]", f"{code!r} is neither an agency code (IQ-INSS) nor a country code (IQ)")
    if tlp == "RED" and not sub.releasable_to:
        bad("$.releasable_to", "TLP:RED is shared only with named recipients: list them in releasable_to")
    if sub.originator_control and not sub.releasable_to:
        bad("$.releasable_to", "originator_control restricts sharing to named recipients: list them")
    return problems


def _millis(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)
