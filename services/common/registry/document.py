"""Reading a registry YAML file, with every problem reported by line and field.

    doc = load_registry(Path("deploy/registry/demo.yaml"))   # raises RegistryError listing all problems

Structure is checked by msgspec against `RegistryDocument`; meaning (unknown agencies in an agreement,
categories outside the taxonomy, an https rule for webhooks, ...) by `check`. The YAML node tree keeps
each value's line, so an error points at the line an operator has to fix.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import yaml

from services.common import taxonomy
from services.common.errors import RegistryError
from services.common.records import JUDGED_CREDIBILITY, JUDGED_RELIABILITY, SEVERITY_ORDER, TLP_LEVELS
from services.common.registry.model import (
    EMPTY_TOKEN_SHA256,
    REDACTABLE_FIELDS,
    RateLimit,
    RegistryDocument,
    audit_key_id,
)

AGENCY_CODE = re.compile(r"^[A-Z]{2}-[A-Z0-9]{2,16}$")
COUNTRY_CODE = re.compile(r"^[A-Z]{2}$")
REGION_CODE = re.compile(r"^[A-Z][A-Z0-9_]{2,31}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# A registry file is written by people: a few thousand agencies fit in far less. Bounded so that reading
# a file never costs more than reading a large honest one.
MAX_REGISTRY_BYTES = 2 * 1024 * 1024
# A registry is six levels deep; the bound keeps a deeply nested file from exhausting the parser's stack.
MAX_DEPTH = 32
_PATH_TOKEN = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")

Problem = tuple[int | None, str, str]


def load_registry(path: Path) -> RegistryDocument:
    return parse_registry(path.read_text(encoding="utf-8"), source=str(path))


def parse_registry(text: str, source: str = "<registry>") -> RegistryDocument:
    size = len(text.encode("utf-8"))
    if size > MAX_REGISTRY_BYTES:
        raise RegistryError(source, [(None, "$", f"{size} bytes; a registry file holds at most {MAX_REGISTRY_BYTES}")])
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except _Refused as exc:
        raise RegistryError(source, [(exc.mark.line + 1, exc.field, exc.message)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise RegistryError(source, [(line, "$", f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise RegistryError(source, [(1, "$", "the registry must be a mapping with an `agencies` list")])
    duration_problems = _durations_to_seconds(data)
    if duration_problems:
        raise RegistryError(source, [(_line_of(root, f), f, m) for f, m in duration_problems])
    try:
        doc = msgspec.convert(_dates_to_utc(data), RegistryDocument)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at ")
        field = where.strip("`") or "$"
        raise RegistryError(source, [(_line_of(root, field), field, message)]) from None
    problems = check(doc)
    if problems:
        raise RegistryError(source, [(_line_of(root, f), f, m) for f, m in problems])
    return doc


class _Refused(Exception):
    def __init__(self, mark: yaml.Mark, field: str, message: str) -> None:
        super().__init__(message)
        self.mark, self.field, self.message = mark, field, message


class _Loader(yaml.SafeLoader):
    """YAML's safe loader, refusing anchors and aliases and bounding depth while it builds the node tree.

    An alias is a reference: nine aliases of nine aliases of ... of a list is a few hundred bytes that expand
    to billions of values wherever the tree is walked (a "billion laughs"). A registry has no use for them,
    so the first anchor (`&name`) or alias (`*name`) stops composing, before anything is constructed.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._path: list[str] = []

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if isinstance(index, int):
            self._path.append(f"[{index}]")
        else:  # a mapping value is composed with its key node as index; a key itself with None
            self._path.append(f".{index.value}" if isinstance(index, yaml.ScalarNode) else "")
        try:
            event = self.peek_event()  # type: ignore[no-untyped-call]  # types-PyYAML leaves it untyped
            field = "$" + "".join(self._path[1:])
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                raise _Refused(
                    event.start_mark, field, "anchors and aliases (&name, *name) are not allowed: write each value out"
                )
            if len(self._path) > MAX_DEPTH:
                raise _Refused(event.start_mark, field, f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._path.pop()


def check(doc: RegistryDocument) -> list[tuple[str, str]]:
    """Every semantic problem of a structurally valid document, as (field path, message)."""
    problems: list[tuple[str, str]] = []

    def bad(field: str, message: str) -> None:
        problems.append((field, message))

    for name, countries in doc.regions.items():
        if not REGION_CODE.match(name):
            bad(f"$.regions.{name}", "a region code is upper case, 3 to 32 characters (e.g. LEVANT)")
        for i, country in enumerate(countries):
            if not COUNTRY_CODE.match(country):
                bad(f"$.regions.{name}[{i}]", f"{country!r} is not an ISO 3166-1 alpha-2 country code")

    codes: set[str] = set()
    # Who listed a token hash or a webhook secret first, so the second listing can name it.
    token_owners: dict[str, str] = {}
    secret_owners: dict[bytes, tuple[str, str]] = {}
    for i, agency in enumerate(doc.agencies):
        at = f"$.agencies[{i}]"
        if not AGENCY_CODE.match(agency.code):
            bad(f"{at}.code", f"{agency.code!r} is not an agency code like IQ-INSS (country, dash, name)")
        if agency.code in codes:
            bad(f"{at}.code", f"agency {agency.code} is defined twice")
        codes.add(agency.code)
        if not COUNTRY_CODE.match(agency.country):
            bad(f"{at}.country", f"{agency.country!r} is not an ISO 3166-1 alpha-2 country code")
        _check_tokens(agency.token_sha256, f"{at}.token_sha256", f"agency {agency.code}", token_owners, bad)
        for j, sub in enumerate(agency.subscriptions):
            _check_patterns(sub.categories, f"{at}.subscriptions[{j}].categories", bad)
            _check_places(doc, sub.countries, f"{at}.subscriptions[{j}].countries", bad)
            _check_grading(sub.min_source_reliability, sub.min_information_credibility, f"{at}.subscriptions[{j}]", bad)
        if agency.webhook is not None:
            _check_webhook(agency.webhook.url, agency.webhook.allow_private, f"{at}.webhook", bad)
            _check_secrets(agency.webhook.secrets, f"{at}.webhook.secrets", agency.code, secret_owners, bad)
        if agency.rate_limit is not None:
            _check_rate_limit(agency.rate_limit, f"{at}.rate_limit", bad)
    for i, operator in enumerate(doc.operators):
        name = operator.name
        _check_tokens(operator.token_sha256, f"$.operators[{i}].token_sha256", f"operator {name}", token_owners, bad)
    _check_rate_limit(doc.defaults.rate_limit, "$.defaults.rate_limit", bad)
    _check_audit_keys(doc, bad)

    ids: set[str] = set()
    for i, agreement in enumerate(doc.agreements):
        at = f"$.agreements[{i}]"
        if agreement.id in ids:
            bad(f"{at}.id", f"agreement {agreement.id} is defined twice")
        ids.add(agreement.id)
        if agreement.kind == "multilateral":
            if len(set(agreement.parties)) < 2:
                bad(f"{at}.parties", "a multilateral agreement needs at least two parties")
            if agreement.from_ or agreement.to:
                bad(f"{at}.kind", "a multilateral agreement has parties, not from/to")
        else:
            if not agreement.from_ or not agreement.to:
                bad(f"{at}.kind", "a directed agreement needs both `from` and `to`")
            if agreement.parties:
                bad(f"{at}.parties", "a directed agreement has from/to, not parties")
        for key, members in (("parties", agreement.parties), ("from", agreement.from_), ("to", agreement.to)):
            for j, code in enumerate(members):
                if code not in codes:
                    bad(f"{at}.{key}[{j}]", f"unknown agency {code}")
        _check_patterns(agreement.categories, f"{at}.categories", bad)
        if agreement.max_tlp not in TLP_LEVELS:
            bad(f"{at}.max_tlp", f"{agreement.max_tlp!r} is not one of {', '.join(TLP_LEVELS)}")
        for j, field in enumerate(agreement.redact):
            if field not in REDACTABLE_FIELDS:
                bad(f"{at}.redact[{j}]", f"{field!r} cannot be redacted; one of {', '.join(REDACTABLE_FIELDS)}")
        if agreement.valid_from and agreement.valid_until and agreement.valid_until <= agreement.valid_from:
            bad(f"{at}.valid_until", "must be after valid_from")
        _check_places(doc, agreement.countries, f"{at}.countries", bad)
        _check_grading(agreement.min_source_reliability, agreement.min_information_credibility, at, bad)
        for severity, seconds in agreement.ack_deadlines.items():
            if severity not in SEVERITY_ORDER:
                bad(f"{at}.ack_deadlines.{severity}", f"{severity!r} is not a severity: {', '.join(SEVERITY_ORDER)}")
            elif seconds <= 0:
                bad(f"{at}.ack_deadlines.{severity}", "a deadline is a positive duration such as 15m, 4h or 2d")
    return problems


def _check_patterns(patterns: list[str], at: str, bad: Any) -> None:
    if not patterns:
        bad(at, 'at least one category pattern is needed (use "*" for every category)')
    for j, pattern in enumerate(patterns):
        if not taxonomy.is_valid_pattern(pattern):
            bad(f"{at}[{j}]", f"{pattern!r} matches no category of the taxonomy")


def _check_places(doc: RegistryDocument, places: list[str], at: str, bad: Any) -> None:
    for j, place in enumerate(places):
        if place not in doc.regions and not COUNTRY_CODE.match(place):
            bad(f"{at}[{j}]", f"{place!r} is neither a country code nor a region defined under regions")


def _check_grading(reliability: str | None, credibility: int | None, at: str, bad: Any) -> None:
    """A minimum grading is a judged grade: F and 6 say the source or the information cannot be judged, which
    is no grade at all and meets no minimum (router/policy.py), so neither can be one."""
    if reliability is not None and reliability not in JUDGED_RELIABILITY:
        why = f"{reliability!r} is not a grade"
        if reliability == "F":
            why = "F means the source cannot be judged, which is no minimum"
        bad(f"{at}.min_source_reliability", f"{why}: a minimum source reliability is A (best) to E")
    if credibility is not None and credibility not in JUDGED_CREDIBILITY:
        why = f"{credibility} is not a grade"
        if credibility == 6:
            why = "6 means the information cannot be judged, which is no minimum"
        bad(f"{at}.min_information_credibility", f"{why}: a minimum information credibility is 1 (best) to 5")


def _check_tokens(digests: list[str], at: str, owner: str, owners: dict[str, str], bad: Any) -> None:
    """Token hashes are SHA-256 hex, never the empty token's, and each belongs to one principal only: a hash
    listed twice would let one token act as whichever principal a reader happened to index last."""
    for j, digest in enumerate(digests):
        if not SHA256_HEX.match(digest):
            bad(f"{at}[{j}]", "must be the lower-case hex SHA-256 of a token, never a token")
        elif digest == EMPTY_TOKEN_SHA256:
            bad(f"{at}[{j}]", "is the SHA-256 of the empty string: an empty token would authenticate")
        elif digest in owners:
            bad(f"{at}[{j}]", f"the same token hash is listed for {owners[digest]}: every principal has its own tokens")
        else:
            owners[digest] = owner


def _check_webhook(url: str, allow_private: bool, at: str, bad: Any) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        bad(f"{at}.url", f"{url!r} is not an http(s) URL")
    elif parts.scheme == "http" and not allow_private:
        bad(f"{at}.url", "webhooks must use https (plain http only with allow_private, for local demos)")


def _check_secrets(secrets: list[str], at: str, agency: str, owners: dict[bytes, tuple[str, str]], bad: Any) -> None:
    """Standard Webhooks secrets: whsec_ and base64 of 24 to 64 random bytes, each one agency's own.

    "Random" is judged by two tests that a secret from `rctc secret` (or any CSPRNG) fails with
    probability under 1e-10: at least half its bytes are distinct values (refuses all-zero, repeated
    and short-cycle patterns) and not every byte is printable ASCII (refuses a password or a phrase that
    was base64-encoded). They catch the mistakes people make, not a determined weak generator.
    """
    if not secrets:
        bad(at, "at least one whsec_ secret is needed to sign deliveries")
    for j, secret in enumerate(secrets):
        if not secret.startswith("whsec_"):
            bad(f"{at}[{j}]", "a secret starts with whsec_ (Standard Webhooks)")
            continue
        try:
            raw = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            bad(f"{at}[{j}]", "after whsec_ a secret is base64")
            continue
        if not 24 <= len(raw) <= 64:
            bad(f"{at}[{j}]", "a secret holds 24 to 64 random bytes (Standard Webhooks); make one with `rctc secret`")
        elif len(set(raw)) < len(raw) // 2 or all(0x20 <= b < 0x7F for b in raw):
            bad(f"{at}[{j}]", "these bytes are not random (repeated values or plain text); make one with `rctc secret`")
        elif raw in owners and owners[raw][0] != agency:
            bad(f"{at}[{j}]", f"the same secret signs {owners[raw][1]}: every endpoint has its own secrets")
        else:
            owners.setdefault(raw, (agency, f"agency {agency}'s webhook"))


def _check_audit_keys(doc: RegistryDocument, bad: Any) -> None:
    """Each audit key is base64 of a raw 32-byte Ed25519 public key, listed once, under its own id."""
    ids: set[str] = set()
    keys: set[bytes] = set()
    for j, key in enumerate(doc.audit.public_keys):
        at = f"$.audit.public_keys[{j}]"
        try:
            raw = base64.b64decode(key.ed25519, validate=True)
        except (binascii.Error, ValueError):
            bad(f"{at}.ed25519", "is base64 of a raw Ed25519 public key (`rctc audit keygen` prints it)")
            continue
        if len(raw) != 32:
            bad(f"{at}.ed25519", f"an Ed25519 public key is 32 bytes, not {len(raw)}")
            continue
        if key.id != audit_key_id(raw):
            bad(f"{at}.id", f"the id of this key is {audit_key_id(raw)} (the first 16 hex digits of its SHA-256)")
        elif key.id in ids:
            bad(f"{at}.id", f"audit key {key.id} is listed twice")
        elif raw in keys:
            bad(f"{at}.ed25519", "this key is listed twice")
        else:
            ids.add(key.id)
            keys.add(raw)


def _check_rate_limit(limit: RateLimit, at: str, bad: Any) -> None:
    if not (math.isfinite(limit.per_second) and limit.per_second > 0):
        bad(f"{at}.per_second", "requests a second is a positive number")
    if limit.burst < 1:
        bad(f"{at}.burst", "a burst is at least one request")


_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _durations_to_seconds(data: dict[str, Any]) -> list[tuple[str, str]]:
    """Turn agreements' ack deadlines written as 15m / 4h / 2d into seconds, in place; list bad ones."""
    problems = []
    agreements = data.get("agreements")
    for i, agreement in enumerate(agreements if isinstance(agreements, list) else []):
        deadlines = agreement.get("ack_deadlines") if isinstance(agreement, dict) else None
        if not isinstance(deadlines, dict):
            continue
        for severity, value in deadlines.items():
            match = _DURATION.match(str(value))
            if match is None:
                problems.append(
                    (
                        f"$.agreements[{i}].ack_deadlines.{severity}",
                        f"{value!r} is not a duration such as 15m, 4h or 2d",
                    )
                )
            else:
                deadlines[severity] = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return problems


def _dates_to_utc(value: Any) -> Any:
    """YAML gives dates and naive datetimes; agreements are compared in UTC."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, dict):
        return {k: _dates_to_utc(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dates_to_utc(v) for v in value]
    return value


def _line_of(root: yaml.Node | None, field: str) -> int | None:
    """The 1-based line of the deepest node on a `$.a[0].b` path that exists in the YAML tree."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for name, index in _PATH_TOKEN.findall(field):
        if isinstance(node, yaml.MappingNode) and name:
            node = next((v for k, v in node.value if k.value == name), None)
        elif isinstance(node, yaml.SequenceNode) and index and int(index) < len(node.value):
            node = node.value[int(index)]
        else:
            node = None
        if node is None:
            break
        line = node.start_mark.line + 1
    return line
