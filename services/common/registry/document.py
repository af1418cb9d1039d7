"""Reading a registry YAML file, with every problem reported by line and field.

    doc = load_registry(Path("deploy/registry/demo.yaml"))   # raises RegistryError listing all problems

Structure is checked by msgspec against `RegistryDocument`; meaning (unknown agencies in an agreement,
categories outside the taxonomy, an https rule for webhooks, ...) by `check`. The YAML node tree keeps
each value's line, so an error points at the line an operator has to fix.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import yaml

from services.common import taxonomy
from services.common.errors import RegistryError
from services.common.records import SEVERITY_ORDER, TLP_LEVELS
from services.common.registry.model import REDACTABLE_FIELDS, RegistryDocument

AGENCY_CODE = re.compile(r"^[A-Z]{2}-[A-Z0-9]{2,16}$")
COUNTRY_CODE = re.compile(r"^[A-Z]{2}$")
REGION_CODE = re.compile(r"^[A-Z][A-Z0-9_]{2,31}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_PATH_TOKEN = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")

Problem = tuple[int | None, str, str]


def load_registry(path: Path) -> RegistryDocument:
    return parse_registry(path.read_text(encoding="utf-8"), source=str(path))


def parse_registry(text: str, source: str = "<registry>") -> RegistryDocument:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise RegistryError(source, [(line, "$", f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
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
    for i, agency in enumerate(doc.agencies):
        at = f"$.agencies[{i}]"
        if not AGENCY_CODE.match(agency.code):
            bad(f"{at}.code", f"{agency.code!r} is not an agency code like IQ-INSS (country, dash, name)")
        if agency.code in codes:
            bad(f"{at}.code", f"agency {agency.code} is defined twice")
        codes.add(agency.code)
        if not COUNTRY_CODE.match(agency.country):
            bad(f"{at}.country", f"{agency.country!r} is not an ISO 3166-1 alpha-2 country code")
        for j, digest in enumerate(agency.token_sha256):
            if not SHA256_HEX.match(digest):
                bad(f"{at}.token_sha256[{j}]", "must be the lower-case hex SHA-256 of a token, never a token")
        for j, sub in enumerate(agency.subscriptions):
            _check_patterns(sub.categories, f"{at}.subscriptions[{j}].categories", bad)
            _check_places(doc, sub.countries, f"{at}.subscriptions[{j}].countries", bad)
        if agency.webhook is not None:
            _check_webhook(
                agency.webhook.url, agency.webhook.secrets, agency.webhook.allow_private, f"{at}.webhook", bad
            )

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


def _check_webhook(url: str, secrets: list[str], allow_private: bool, at: str, bad: Any) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        bad(f"{at}.url", f"{url!r} is not an http(s) URL")
    elif parts.scheme == "http" and not allow_private:
        bad(f"{at}.url", "webhooks must use https (plain http only with allow_private, for local demos)")
    if not secrets:
        bad(f"{at}.secrets", "at least one whsec_ secret is needed to sign deliveries")
    for j, secret in enumerate(secrets):
        if not secret.startswith("whsec_"):
            bad(f"{at}.secrets[{j}]", "a secret starts with whsec_ (Standard Webhooks)")
            continue
        try:
            raw = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            bad(f"{at}.secrets[{j}]", "after whsec_ a secret is base64")
            continue
        if not 24 <= len(raw) <= 64:
            bad(f"{at}.secrets[{j}]", "a secret holds 24 to 64 random bytes (Standard Webhooks)")


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
