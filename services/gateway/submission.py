"""What an agency may submit or acknowledge, and every reason it is refused. Pure: no I/O.

    alert = parse_submission(body, now=utcnow())    # raises InvalidSubmission with every problem found
    ack = parse_ack(body)                            # the same, for POST /v1/alerts/{id}/ack
    ask = parse_onward_ask(body)                     # POST /v1/alerts/{id}/onward
    answer = parse_onward_answer(body)               # POST /v1/onward/{request_id}

Checked in two steps, so a caller learns every problem in one answer, each at its own JSON path
(`$.indicators[3].value`, `$.category`): the body is decoded to plain JSON values first (only bytes that
are not JSON stop there), then every field is checked here and every problem collected. Unknown fields
are refused, each at its path (a caller cannot smuggle in an `origin`); a missing required field is
reported at its own path. Then the rules a recipient relies on: a known category and TLP, Admiralty
grades in range, TLP:RED only with `releasable_to`, an Update or Cancel naming what it updates, and a
schedule (`embargo_until`, `release`) in the future, in order, before the alert expires, each release step
itself a valid TLP and `releasable_to` (a Cancel has none: it takes effect at once).

Limits. Every string and array has a maximum, chosen well above what an analyst writes in good faith and
far below what would cost the services downstream (the enricher scans the text, the router redacts each
copy, the tracker keeps acks in memory). The whole body is capped first (HttpSettings.max_body_bytes,
256 KiB). docs/openapi.yaml states the same numbers (maxLength, maxItems, maxProperties).

| field                              | maximum                 | why this number                                    |
|------------------------------------|-------------------------|----------------------------------------------------|
| title                              | 200 characters          | a headline                                         |
| summary                            | 20,000 characters       | about eight pages of text                          |
| references                         | 16 ids, 64 chars each   | an Update names the alert it updates (a UUID)      |
| affected_countries                 | 250 codes               | there are 249 ISO 3166-1 codes                     |
| locations                          | 100                     | points of one incident, not a map layer            |
| locations[].radius_km              | 0 to 20,000             | half the Earth's circumference                     |
| indicators                         | 500                     | an IOC list pasted into one alert; more is a feed  |
| indicators[].value                 | by type, INDICATOR_MAX  | url 2048 (what browsers and proxies keep), domain  |
|                                    |                         | 253 (DNS), email 254 (RFC 5321), file_name 255,    |
|                                    |                         | hash 256, crypto_wallet 128, ip 64, iban 64 (34    |
|                                    |                         | with spaces), phone 32                             |
| subjects                           | 100                     | people, organisations and vehicles of one case     |
| subjects[].name                    | 200 characters          | a full name with its transliterations              |
| subjects[].nationality             | 64 characters           | a code or a country's name                         |
| subjects[].identifiers             | 20 entries              | passport, national id, plate, phone, ...           |
|   key / value                      | 64 / 256 characters     | a document type / a document number or address     |
| releasable_to                      | 200 codes               | every member agency and country of the region      |
| sent, expires, embargo_until       | 64 characters           | an RFC 3339 date-time is 20 to 35                  |
| release                            | 8 steps                 | a downgrade in a few stages, not a feed            |
| embargo_until, release[].at        | 6 days ahead            | within the router's de-duplication window (7 days  |
|                                    |                         | by default), which is how far back it knows a      |
|                                    |                         | thread (records.MAX_SCHEDULE_AHEAD)                |
| ack note                           | 2,000 characters        | a paragraph; the tracker keeps every note          |
| onward reason, onward note         | 2,000 characters        | the same                                           |
| problems reported in one answer    | 200 (then one summary)  | the answer must stay smaller than a hostile body   |

Records agencies write to Kafka themselves have a size cap too: AGENCY_RECORD_MAX_BYTES (acks) and
AGENCY_SUBMISSION_MAX_BYTES (submissions), the `max.message.bytes` of their topics in services/common/topics.yaml.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any, Literal, get_args

import msgspec

from services.common import taxonomy
from services.common.internal import is_alert_id
from services.common.records import (
    MAX_SCHEDULE_AHEAD,
    TLP_LEVELS,
    AckResponse,
    AckSubmitted,
    Alert,
    Certainty,
    Indicator,
    Location,
    MsgType,
    ReleaseStep,
    Severity,
    Subject,
    Urgency,
)

INDICATOR_MAX: dict[str, int] = {
    "ip": 64,
    "domain": 253,
    "url": 2048,
    "hash": 256,
    "email": 254,
    "phone": 32,
    "iban": 64,
    "crypto_wallet": 128,
    "file_name": 255,
}
INDICATOR_TYPES = tuple(INDICATOR_MAX)
SUBJECT_KINDS = ("person", "organisation", "vehicle")
COUNTRY = re.compile(r"^[A-Z]{2}$")
RECIPIENT = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{2,16})?$")

MAX_TITLE = 200
MAX_SUMMARY = 20_000
MAX_REFERENCES = 16
MAX_REFERENCE = 64
MAX_COUNTRIES = 250
MAX_LOCATIONS = 100
MAX_RADIUS_KM = 20_000
MAX_INDICATORS = 500
MAX_SUBJECTS = 100
MAX_SUBJECT_NAME = 200
MAX_NATIONALITY = 64
MAX_IDENTIFIERS = 20
MAX_IDENTIFIER_KEY = 64
MAX_IDENTIFIER_VALUE = 256
MAX_RELEASABLE_TO = 200
MAX_TIME = 64
# Years a submitted time may have (sent, expires): every reader can hold any instant between them.
MIN_YEAR, MAX_YEAR = 1970, 9000
MAX_NOTE = 2_000
MAX_RELEASE_STEPS = 8
MAX_PROBLEMS = 200

# What an agency may write to its own topics (agency.<CODE>.acks): the broker refuses larger batches
# (`max.message.bytes` in services/common/topics.yaml, kept equal by a unit test) and a consumer treats a larger
# value as unusable. 64 KiB is twenty times the largest ack the gateway itself accepts.
AGENCY_RECORD_MAX_BYTES = 64 * 1024
# What an agency may write to its submissions topic (agency.<CODE>.submissions): room for every body the
# HTTP path takes (HttpSettings.max_body_bytes, 256 KiB) with its key and header, so the Kafka channel
# refuses nothing HTTP accepts; a larger body within it is refused as HTTP refuses it (intake.py, too_large).
AGENCY_SUBMISSION_MAX_BYTES = 260 * 1024

ALERT_FIELDS = (
    "msg_type",
    "references",
    "category",
    "severity",
    "urgency",
    "certainty",
    "tlp",
    "source_reliability",
    "information_credibility",
    "title",
    "summary",
    "sent",
    "expires",
    "affected_countries",
    "locations",
    "indicators",
    "subjects",
    "releasable_to",
    "originator_control",
    "embargo_until",
    "release",
)
ALERT_REQUIRED = ("category", "severity", "urgency", "certainty", "tlp", "title")


class InvalidSubmission(Exception):
    """A submission was refused; `problems` lists (field, message) for the caller."""

    def __init__(self, problems: list[tuple[str, str]], *, malformed: bool = False) -> None:
        self.problems = problems
        self.malformed = malformed
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems))


class AckBody(msgspec.Struct, kw_only=True):
    response: AckResponse | None = None
    note: str | None = None


class OnwardAsk(msgspec.Struct, kw_only=True):
    agency: str
    reason: str


OnwardDecision = Literal["approve", "refuse", "revoke"]


class OnwardAnswer(msgspec.Struct, kw_only=True):
    decision: OnwardDecision
    note: str | None = None


# An agency code as the registry spells them (services/common/registry/model.py).
_AGENCY_CODE = re.compile(r"[A-Z0-9][A-Z0-9-]{0,31}")


def parse_onward_ask(body: bytes) -> OnwardAsk:
    """The body of POST /v1/alerts/{id}/onward: the agency to share with, and why (both required)."""
    c = _Checker()
    top = c.object(_decode(body), "$", ("agency", "reason"), ("agency", "reason"))
    if top is None:
        raise InvalidSubmission(c.reported())
    agency = c.text(top, "$", "agency", 32, required=True)
    if agency is not None and not _AGENCY_CODE.fullmatch(agency):
        c.bad("$.agency", "an agency code: capital letters, digits and hyphens")
    reason = c.text(top, "$", "reason", MAX_NOTE, required=True)
    if c.problems or agency is None or reason is None:
        raise InvalidSubmission(c.reported())
    return OnwardAsk(agency=agency, reason=reason)


def parse_onward_answer(body: bytes) -> OnwardAnswer:
    """The body of POST /v1/onward/{request_id}: the originator's decision, and a note to the requester."""
    c = _Checker()
    top = c.object(_decode(body), "$", ("decision", "note"), ("decision",))
    if top is None:
        raise InvalidSubmission(c.reported())
    decision = c.choice(top, "$", "decision", get_args(OnwardDecision))
    note = c.text(top, "$", "note", MAX_NOTE) if top.get("note") is not None else None
    if c.problems or decision is None:
        raise InvalidSubmission(c.reported())
    return OnwardAnswer(decision=decision, note=note)


def parse_submission(body: bytes, *, now: datetime) -> Alert:
    c = _Checker()
    top = c.object(_decode(body), "$", ALERT_FIELDS, ALERT_REQUIRED)
    if top is None:
        raise InvalidSubmission(c.reported())
    msg_type: MsgType = c.choice(top, "$", "msg_type", get_args(MsgType), default="Alert") or "Alert"
    references = c.strings(top, "$", "references", MAX_REFERENCES, MAX_REFERENCE)
    category = c.choice(top, "$", "category", taxonomy.CATEGORIES, what="in the taxonomy")
    severity: Severity | None = c.choice(top, "$", "severity", get_args(Severity))
    urgency: Urgency | None = c.choice(top, "$", "urgency", get_args(Urgency))
    certainty: Certainty | None = c.choice(top, "$", "certainty", get_args(Certainty))
    tlp = c.tlp(top)
    reliability = c.choice(top, "$", "source_reliability", ("A", "B", "C", "D", "E", "F"), default="F")
    credibility = c.credibility(top)
    title = c.text(top, "$", "title", MAX_TITLE, required=True)
    summary = c.text(top, "$", "summary", MAX_SUMMARY) or ""
    sent = c.time(top, "sent")
    expires = c.time(top, "expires")
    starts = sent if sent is not None else now if top.get("sent") is None else None  # None: sent is invalid
    if expires is not None and starts is not None and expires <= starts:
        c.bad("$.expires", "an alert cannot expire before it is sent")
    countries = c.strings(top, "$", "affected_countries", MAX_COUNTRIES, 2)
    for i, country in _valid(countries):
        if not COUNTRY.match(country):
            c.bad(f"$.affected_countries[{i}]", f"{_show(country)} is not an ISO 3166-1 alpha-2 code (e.g. IQ)")
    locations = [c.location(item, f"$.locations[{i}]") for i, item in c.items(top, "$", "locations", MAX_LOCATIONS)]
    indicators = [
        c.indicator(item, f"$.indicators[{i}]") for i, item in c.items(top, "$", "indicators", MAX_INDICATORS)
    ]
    subjects = [c.subject(item, f"$.subjects[{i}]") for i, item in c.items(top, "$", "subjects", MAX_SUBJECTS)]
    releasable_to = c.recipients(top, "$")
    originator_control = c.boolean(top, "$", "originator_control")
    if msg_type in ("Update", "Cancel") and "references" not in c.failed and not references:
        c.bad("$.references", f"an {msg_type} names the alert id(s) it refers to")
    if "releasable_to" not in c.failed and not releasable_to:
        c.named_recipients("$", tlp, originator_control)
    embargo_until = c.time(top, "embargo_until")
    release = [
        c.release_step(item, f"$.release[{i}]", originator_control)
        for i, item in c.items(top, "$", "release", MAX_RELEASE_STEPS)
    ]
    if msg_type == "Cancel":
        for key in ("embargo_until", "release"):
            if top.get(key) not in (None, []):
                c.bad(f"$.{key}", "a Cancel takes effect at once: it has no embargo or release schedule")
    elif starts is not None:
        c.schedule(embargo_until, release, now=now, expires=expires)
    if c.problems:
        raise InvalidSubmission(c.reported())
    # Every field was checked above: none of these is None unless it was optional.
    assert category and severity and urgency and certainty and tlp and title and reliability and credibility
    return Alert(
        msg_type=msg_type,
        references=[r for r in references if r is not None],
        category=category,
        severity=severity,
        urgency=urgency,
        certainty=certainty,
        tlp=tlp,
        source_reliability=reliability,
        information_credibility=credibility,
        title=title.strip(),
        summary=summary.strip(),
        sent=_millis(sent or now),
        expires=_millis(expires) if expires else None,
        affected_countries=[x for x in countries if x is not None],
        locations=[x for x in locations if x is not None],
        indicators=[x for x in indicators if x is not None],
        subjects=[x for x in subjects if x is not None],
        releasable_to=[x for x in releasable_to if x is not None],
        originator_control=originator_control,
        embargo_until=_millis(embargo_until) if embargo_until else None,
        release=[x for x in release if x is not None],
    )


def parse_ack(body: bytes) -> AckBody:
    """The body of POST /v1/alerts/{id}/ack (empty means no response and no note)."""
    c = _Checker()
    top = c.object(_decode(body or b"{}"), "$", ("response", "note"), ())
    if top is None:
        raise InvalidSubmission(c.reported())
    response: AckResponse | None = None
    if top.get("response") is not None:
        response = c.choice(top, "$", "response", get_args(AckResponse))
    note = c.text(top, "$", "note", MAX_NOTE) if top.get("note") is not None else None
    if c.problems:
        raise InvalidSubmission(c.reported())
    return AckBody(response=response, note=note)


def _decode(body: bytes) -> Any:
    try:
        value = msgspec.json.decode(body)
        # msgspec keeps the last of two equal keys, as most parsers do; some keep the first. A body that two
        # readers (a proxy, a DLP filter, an auditor) would read as two different alerts is refused.
        json.loads(body, object_pairs_hook=_unique_keys)
    except msgspec.DecodeError as exc:  # a number out of range is a ValidationError, and not JSON we take
        raise InvalidSubmission([("$", f"the body is not valid JSON: {exc}")], malformed=True) from None
    except RecursionError:
        raise InvalidSubmission([("$", "the body is not valid JSON: nested too deeply")], malformed=True) from None
    except _DuplicateKey as exc:
        problem = ("$", f"the body is not valid JSON here: the key {exc} appears twice")
        raise InvalidSubmission([problem], malformed=True) from None
    return value


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _DuplicateKey(json.dumps(key)[:80])
        seen.add(key)
    return dict(pairs)


class _Checker:
    """Collects every problem; each method returns the checked value, or None (and records why)."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []
        self.failed: set[str] = set()  # top-level fields with a problem, so later rules do not pile on

    def bad(self, path: str, message: str) -> None:
        self.problems.append((path, message))
        self.failed.add(path.removeprefix("$.").partition("[")[0].partition(".")[0])

    def reported(self) -> list[tuple[str, str]]:
        if len(self.problems) <= MAX_PROBLEMS:
            return self.problems
        rest = len(self.problems) - MAX_PROBLEMS
        return [*self.problems[:MAX_PROBLEMS], ("$", f"and {rest} more problems not listed")]

    def object(
        self, value: Any, path: str, fields: tuple[str, ...], required: tuple[str, ...]
    ) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.bad(path, f"expected an object, got {_kind(value)}")
            return None
        for key in value:
            if key not in fields:
                self.bad(_member(path, key), "unknown field")
        for key in required:
            if key not in value:
                self.bad(_member(path, key), "a required field is missing")
        return value

    def choice(
        self,
        obj: dict[str, Any],
        path: str,
        key: str,
        allowed: tuple[Any, ...],
        *,
        default: Any = None,
        what: str = "",
    ) -> Any:
        if key not in obj:
            return default
        value = obj[key]
        if not isinstance(value, str):
            self.bad(_member(path, key), f"expected a string, got {_kind(value)}")
        elif value not in allowed:
            where = what or f"one of {', '.join(allowed)}"
            self.bad(_member(path, key), f"{_show(value)} is not {where}" + (f": {', '.join(allowed)}" if what else ""))
        else:
            return value
        return None

    def text(self, obj: dict[str, Any], path: str, key: str, limit: int, *, required: bool = False) -> str | None:
        if key not in obj:
            return None
        value = obj[key]
        if not isinstance(value, str):
            self.bad(_member(path, key), f"expected a string, got {_kind(value)}")
        elif len(value) > limit:
            self.bad(_member(path, key), f"at most {limit} characters (got {len(value)})")
        elif required and not value.strip():
            self.bad(_member(path, key), f"a {key} is required")
        else:
            return value
        return None

    def items(self, obj: dict[str, Any], path: str, key: str, limit: int) -> list[tuple[int, Any]]:
        if key not in obj:
            return []
        value = obj[key]
        if not isinstance(value, list):
            self.bad(_member(path, key), f"expected an array, got {_kind(value)}")
            return []
        if len(value) > limit:
            self.bad(_member(path, key), f"at most {limit} items (got {len(value)})")
            return []
        return list(enumerate(value))

    def strings(self, obj: dict[str, Any], path: str, key: str, limit: int, length: int) -> list[str | None]:
        """An array of strings; a bad item is reported and kept as None so indexes stay those of the body."""
        found: list[str | None] = []
        for i, item in self.items(obj, path, key, limit):
            where = f"{_member(path, key)}[{i}]"
            if not isinstance(item, str):
                self.bad(where, f"expected a string, got {_kind(item)}")
                found.append(None)
            elif len(item) > length:
                self.bad(where, f"at most {length} characters (got {len(item)})")
                found.append(None)
            else:
                found.append(item)
        return found

    def boolean(self, obj: dict[str, Any], path: str, key: str) -> bool:
        value = obj.get(key, False)
        if not isinstance(value, bool):
            self.bad(_member(path, key), f"expected true or false, got {_kind(value)}")
            return False
        return value

    def number(self, obj: dict[str, Any], path: str, key: str, low: float, high: float, message: str) -> float | None:
        if key not in obj:
            return None
        value = obj[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.bad(_member(path, key), f"expected a number, got {_kind(value)}")
        elif not (math.isfinite(value) and low <= value <= high):
            self.bad(_member(path, key), message)
        else:
            return float(value)
        return None

    def tlp(self, obj: dict[str, Any], path: str = "$") -> str | None:
        value = obj.get("tlp")
        if "tlp" in obj and not isinstance(value, str):
            self.bad(f"{path}.tlp", f"expected a string, got {_kind(value)}")
        elif isinstance(value, str):
            if value.removeprefix("TLP:") in TLP_LEVELS:
                return value.removeprefix("TLP:")
            self.bad(f"{path}.tlp", f"{_show(value)} is not a TLP 2.0 level: {', '.join(TLP_LEVELS)}")
        return None

    def recipients(self, obj: dict[str, Any], path: str) -> list[str | None]:
        codes = self.strings(obj, path, "releasable_to", MAX_RELEASABLE_TO, 19)
        for i, code in _valid(codes):
            if not RECIPIENT.match(code):
                where = f"{path}.releasable_to[{i}]"
                self.bad(where, f"{_show(code)} is neither an agency code (IQ-INSS) nor a country code (IQ)")
        return codes

    def named_recipients(self, path: str, tlp: str | None, originator_control: bool) -> None:
        """The rules that need an empty releasable_to named (the caller checked it is empty)."""
        where = f"{path}.releasable_to"
        if tlp == "RED":
            self.bad(where, "TLP:RED is shared only with named recipients: list them in releasable_to")
        if originator_control:
            self.bad(where, "originator_control restricts sharing to named recipients: list them")

    def release_step(self, value: Any, path: str, originator_control: bool) -> ReleaseStep | None:
        step = self.object(value, path, ("at", "tlp", "releasable_to"), ("at", "tlp"))
        if step is None:
            return None
        before = len(self.problems)
        at = self.time(step, "at", path)
        if "at" in step and step["at"] is None:
            self.bad(f"{path}.at", "expected a date-time, got null")
        tlp = self.tlp(step, path)
        codes = self.recipients(step, path)
        if len(self.problems) == before and not codes:
            self.named_recipients(path, tlp, originator_control)
        if len(self.problems) > before or at is None or tlp is None:
            return None
        return ReleaseStep(at=_millis(at), tlp=tlp, releasable_to=[x for x in codes if x is not None])

    def schedule(
        self, embargo: datetime | None, steps: list[ReleaseStep | None], *, now: datetime, expires: datetime | None
    ) -> None:
        """Every scheduled time in the future, within MAX_SCHEDULE_AHEAD, before the alert expires, and each
        after the one before it (the embargo's end first): the system issues them in this order."""
        moments = [("$.embargo_until", embargo)] if embargo is not None else []
        moments += [(f"$.release[{i}].at", s.at) for i, s in enumerate(steps) if s is not None]
        after, what = now, "now: a schedule is in the future"
        for path, moment in moments:
            if moment <= after:
                self.bad(path, f"must be after {what}")
            elif moment > now + MAX_SCHEDULE_AHEAD:
                self.bad(path, f"at most {MAX_SCHEDULE_AHEAD.days} days ahead")
            elif expires is not None and moment >= expires:
                self.bad(path, "must be before the alert expires")
            after = max(after, moment)
            what = "the embargo's end" if path == "$.embargo_until" else f"the step before ({path.split('.at')[0]})"

    def credibility(self, obj: dict[str, Any]) -> int | None:
        value = obj.get("information_credibility", 6)
        if isinstance(value, bool) or not isinstance(value, int):
            self.bad("$.information_credibility", f"expected an integer, got {_kind(value)}")
        elif not 1 <= value <= 6:
            self.bad("$.information_credibility", "Admiralty information credibility is a number from 1 to 6")
        else:
            return value
        return None

    def time(self, obj: dict[str, Any], key: str, path: str = "$") -> datetime | None:
        value = self.text(obj, path, key, MAX_TIME) if obj.get(key) is not None else None
        if value is None:
            return None
        where = f"{path}.{key}"
        try:
            moment = msgspec.convert(value, datetime)
        except msgspec.ValidationError:
            self.bad(where, "expected an RFC 3339 date-time (e.g. 2026-11-28T09:00:00Z)")
            return None
        if moment.tzinfo is None:
            self.bad(where, "a time needs a timezone (e.g. 2026-11-28T09:00:00Z)")
            return None
        if not MIN_YEAR <= moment.year <= MAX_YEAR:
            # Near year 1 or 9999 a time zone moves the instant out of what UTC (and so every reader) can hold:
            # accepted, the alert would be encoded and then never decoded.
            self.bad(where, f"the year must be between {MIN_YEAR} and {MAX_YEAR}")
            return None
        return moment

    def location(self, value: Any, path: str) -> Location | None:
        loc = self.object(value, path, ("lat", "lon", "radius_km"), ("lat", "lon"))
        if loc is None:
            return None
        before = len(self.problems)
        lat = self.number(loc, path, "lat", -90, 90, "latitude is -90..90")
        lon = self.number(loc, path, "lon", -180, 180, "longitude is -180..180")
        radius = None
        if loc.get("radius_km") is not None:
            radius = self.number(loc, path, "radius_km", 0, MAX_RADIUS_KM, f"a radius is 0 to {MAX_RADIUS_KM} km")
        if len(self.problems) > before or lat is None or lon is None:
            return None
        return Location(lat=lat, lon=lon, radius_km=radius)

    def indicator(self, value: Any, path: str) -> Indicator | None:
        ind = self.object(value, path, ("type", "value"), ("type", "value"))
        if ind is None:
            return None
        kind = self.choice(ind, path, "type", INDICATOR_TYPES)
        text = self.text(ind, path, "value", INDICATOR_MAX.get(kind or "", max(INDICATOR_MAX.values())))
        if text is not None and not text.strip():
            self.bad(f"{path}.value", "an indicator needs a value")
            return None
        return Indicator(type=kind, value=text) if kind and text else None

    def subject(self, value: Any, path: str) -> Subject | None:
        subject = self.object(value, path, ("kind", "name", "identifiers", "nationality"), ("kind", "name"))
        if subject is None:
            return None
        kind = self.choice(subject, path, "kind", SUBJECT_KINDS)
        name = self.text(subject, path, "name", MAX_SUBJECT_NAME)
        if name is not None and not name.strip():
            self.bad(f"{path}.name", "a subject needs a name")
            name = None
        nationality = None
        if subject.get("nationality") is not None:
            nationality = self.text(subject, path, "nationality", MAX_NATIONALITY)
        identifiers: dict[str, str] = {}
        raw = subject.get("identifiers", {})
        where = f"{path}.identifiers"
        if not isinstance(raw, dict):
            self.bad(where, f"expected an object, got {_kind(raw)}")
        elif len(raw) > MAX_IDENTIFIERS:
            self.bad(where, f"at most {MAX_IDENTIFIERS} identifiers (got {len(raw)})")
        else:
            for key in raw:
                if len(key) > MAX_IDENTIFIER_KEY:
                    self.bad(_member(where, key), f"an identifier's name has at most {MAX_IDENTIFIER_KEY} characters")
                elif (checked := self.text(raw, where, key, MAX_IDENTIFIER_VALUE)) is not None:
                    identifiers[key] = checked
        if kind is None or name is None:
            return None
        return Subject(kind=kind, name=name, identifiers=identifiers, nationality=nationality)


def _valid(values: list[str | None]) -> list[tuple[int, str]]:
    return [(i, v) for i, v in enumerate(values) if v is not None]


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def _member(path: str, key: str) -> str:
    """`$.a.b` for a plain name, `$.a["odd key"]` otherwise (cut short: a key is the caller's text)."""
    if _NAME.match(key):
        return f"{path}.{key}"
    shown = key if len(key) <= 64 else key[:64] + "…"
    return f"{path}[{msgspec.json.encode(shown).decode()}]"


def _show(value: str) -> str:
    """A caller's value quoted in a message, cut short so an answer never echoes a large body back."""
    return repr(value if len(value) <= 64 else value[:64] + "…")


def _kind(value: Any) -> str:
    names: dict[type, str] = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


def _millis(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


MAX_ACK_ID = 128


def kafka_ack_problem(ack: AckSubmitted, topic_agency: str | None, topic: str) -> str | None:
    """Why an AckSubmitted an agency produced to its own acks topic is refused, or None: the rules of an HTTP
    ack (parse_ack) and of its path (an alert id is a canonical UUID), and the topic is the agency."""
    if topic_agency is None or ack.agency != topic_agency:
        return f"an ack for {ack.agency[:64]!r} written to {topic}"
    if not is_alert_id(ack.alert_id):
        return "alert_id is not an alert id (a canonical UUID)"
    if not 1 <= len(ack.ack_id) <= MAX_ACK_ID:
        return f"ack_id has {len(ack.ack_id)} characters; 1 to {MAX_ACK_ID} are allowed"
    if ack.note is not None and len(ack.note) > MAX_NOTE:
        return f"note has {len(ack.note)} characters; at most {MAX_NOTE} are allowed"
    return None
