"""`rctc watchlist add|remove|import|list`: the operators' watchlist, on watchlist.entries.

    rctc watchlist add phone "+964 770 123 4567" --reason "courier, case 2026-114" --expires 90d
    rctc watchlist remove phone +9647701234567
    rctc watchlist import entries.csv            # or .jsonl: every row is checked before anything is written
    rctc watchlist list [--kind name]            # the entries, one JSON line each, reasons included

Operators only: the command writes as its Kafka principal, and topics.yaml lets only `operator` write the
topic (and only the enricher and `operator` read it). Each entry is keyed by its kind and comparable value
(services/common/watchlist.py), so a value added again in another spelling replaces its entry, and `remove`
takes any spelling of it. The enricher applies a change to the next alert it enriches, without a restart.

An import file is CSV with a header row (`kind,value,reason` and optionally `expires`), or JSON lines with
those keys. `expires`, here and in `add`, is an ISO 8601 time (a time without a zone is local) or a duration
from now: `90d`, `12h`, `30m`; none (or `never`) means until removed.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from services.common.codec import Codec
from services.common.errors import CodecError
from services.common.kafka import produce_all, read_to_end
from services.common.logs import get_logger
from services.common.normalise import KINDS
from services.common.records import WatchlistEntryAdded, utcnow
from services.common.settings import KafkaSettings
from services.common.topics import WATCHLIST_ENTRIES
from services.common.watchlist import Watchlist, entry_key, expired, problems

log = get_logger(__name__)

COLUMNS = ("kind", "value", "reason", "expires")
REQUIRED = ("kind", "value", "reason")
_DURATION = re.compile(r"(\d{1,6})([dhm])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def add_parser(sub: Any, kafka: Callable[[argparse.Namespace], KafkaSettings]) -> None:
    watchlist = sub.add_parser("watchlist", help="values that raise an alert's priority (operators)")
    actions = watchlist.add_subparsers(metavar="ACTION")
    p = actions.add_parser("add", help="add an entry, or replace the entry of the same value")
    p.add_argument("kind", choices=KINDS)
    p.add_argument("value")
    p.add_argument("--reason", required=True, help="why: operators see it, recipients never do")
    p.add_argument("--expires", help="ISO 8601 time or a duration (90d, 12h, 30m); default: until removed")
    p.set_defaults(run=lambda a: asyncio.run(add(kafka(a), a.kind, a.value, a.reason, a.expires)))
    p = actions.add_parser("remove", help="remove the entry of a value (any spelling of it)")
    p.add_argument("kind", choices=KINDS)
    p.add_argument("value")
    p.set_defaults(run=lambda a: asyncio.run(remove(kafka(a), a.kind, a.value)))
    p = actions.add_parser("import", help="add or replace every entry of a CSV or JSON lines file, or none")
    p.add_argument("file", type=Path)
    p.add_argument("--format", choices=("csv", "jsonl"), help="default: from the file's suffix")
    p.add_argument("--reason", default="", help="the reason of rows that give none")
    p.set_defaults(run=lambda a: asyncio.run(import_file(kafka(a), a.file, a.format, a.reason)))
    p = actions.add_parser("list", help="every entry, one JSON line each (expired ones marked)")
    p.add_argument("--kind", choices=KINDS)
    p.set_defaults(run=lambda a: asyncio.run(list_entries(kafka(a), a.kind)))


def parse_expiry(text: str | None, now: datetime) -> datetime | None:
    """An expiry as written: None for none (or `never`), a duration from `now` (`90d`, `12h`, `30m`), or an
    ISO 8601 time, local when it names no zone. ValueError for anything else."""
    text = (text or "").strip()
    if not text or text.lower() == "never":
        return None
    duration = _DURATION.fullmatch(text)
    if duration is not None:
        at = now + timedelta(**{_UNITS[duration.group(2)]: int(duration.group(1))})
    else:
        at = datetime.fromisoformat(text)
        at = at if at.tzinfo is not None else at.astimezone()
    # Avro keeps milliseconds: what is written is what is read back.
    at = at.astimezone(UTC)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def new_entry(
    row: dict[str, str], *, added_by: str, now: datetime, default_reason: str = ""
) -> tuple[str, WatchlistEntryAdded] | list[str]:
    """A row (`kind`, `value`, `reason`, optional `expires`) as its key and entry, or what is wrong with it."""
    try:
        expires_at = parse_expiry(row.get("expires"), now)
    except ValueError:
        return [f"expires {row.get('expires')!r} is neither an ISO 8601 time nor a duration such as 90d"]
    kind = row.get("kind", "").strip().lower()
    entry = WatchlistEntryAdded(
        kind=kind,
        value=row.get("value", "").strip(),
        reason=(row.get("reason") or "").strip() or default_reason.strip(),
        added_by=added_by,
        added_at=now,
        expires_at=expires_at,
    )
    wrong = problems(entry, now)
    return wrong or (entry_key(kind, entry.value), entry)


def read_rows(text: str, fmt: str) -> tuple[list[tuple[int, dict[str, str]]], list[str]]:
    """The rows of an import file with their line numbers, and what is wrong with its shape."""
    rows: list[tuple[int, dict[str, str]]] = []
    wrong: list[str] = []
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        header = reader.fieldnames or []
        unknown = [c for c in header if c not in COLUMNS]
        missing = [c for c in REQUIRED if c not in header]
        if unknown or missing:
            wrong.append(f"line 1: the header needs {', '.join(REQUIRED)} (and may have expires); got {header}")
            return [], wrong
        for row in reader:
            if None in row:  # more cells than the header names
                wrong.append(f"line {reader.line_num}: more cells than the header has columns")
                continue
            rows.append((reader.line_num, {k: v or "" for k, v in row.items()}))
        return rows, wrong
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            wrong.append(f"line {number}: not JSON")
            continue
        if not isinstance(item, dict) or not all(isinstance(v, str) for v in item.values()):
            wrong.append(f"line {number}: not an object of strings")
            continue
        unknown = sorted(set(item) - set(COLUMNS))
        if unknown:
            wrong.append(f"line {number}: unknown keys {unknown} (known: {', '.join(COLUMNS)})")
            continue
        rows.append((number, item))
    return rows, wrong


def entries_of(
    rows: list[tuple[int, dict[str, str]]], *, added_by: str, now: datetime, default_reason: str = ""
) -> tuple[dict[str, WatchlistEntryAdded], list[str]]:
    """The entries of an import's rows by key, and every problem, by line (a value given twice is one)."""
    entries: dict[str, WatchlistEntryAdded] = {}
    lines: dict[str, int] = {}
    wrong: list[str] = []
    for number, row in rows:
        made = new_entry(row, added_by=added_by, now=now, default_reason=default_reason)
        if isinstance(made, list):
            wrong.extend(f"line {number}: {p}" for p in made)
            continue
        key, entry = made
        if key in entries:
            wrong.append(f"line {number}: {key} again (line {lines[key]}): one entry per value")
            continue
        entries[key], lines[key] = entry, number
    return entries, wrong


async def read_watchlist(kafka: KafkaSettings, codec: Codec) -> Watchlist:
    """The entries in force, read from watchlist.entries as the enricher reads them (tombstones remove)."""
    watchlist = Watchlist()
    async for record in read_to_end(kafka, WATCHLIST_ENTRIES, name="watchlist"):
        if record.key is None:
            continue
        try:
            entry = None if record.value is None else codec.decode(record.value, WatchlistEntryAdded)
        except CodecError as exc:
            log.warning("record.unreadable", topic=WATCHLIST_ENTRIES, offset=record.offset, error=str(exc))
            continue
        watchlist.apply(record.key.decode(errors="replace"), entry)
    return watchlist


def _principal(kafka: KafkaSettings) -> str:
    return kafka.username or "operator"


def _refused(wrong: list[str]) -> int:
    for line in wrong:
        print(f"rctc: {line}", file=sys.stderr)
    return 1


async def add(kafka: KafkaSettings, kind: str, value: str, reason: str, expires: str | None) -> int:
    codec = Codec.from_directory()
    row = {"kind": kind, "value": value, "reason": reason, "expires": expires or ""}
    made = new_entry(row, added_by=_principal(kafka), now=utcnow())
    if isinstance(made, list):
        return _refused(made)
    key, entry = made
    current = await read_watchlist(kafka, codec)
    await produce_all(kafka, "watchlist", WATCHLIST_ENTRIES, [(key.encode(), codec.encode(entry))])
    until = f", until {entry.expires_at.isoformat()}" if entry.expires_at else ""
    print(f"{'replaced' if key in current else 'added'} {key}{until}")
    return 0


async def remove(kafka: KafkaSettings, kind: str, value: str) -> int:
    codec = Codec.from_directory()
    key = entry_key(kind, value)
    if key not in await read_watchlist(kafka, codec):
        print(f"rctc: no entry {key}", file=sys.stderr)
        return 1
    await produce_all(kafka, "watchlist", WATCHLIST_ENTRIES, [(key.encode(), None)])
    print(f"removed {key}")
    return 0


async def import_file(kafka: KafkaSettings, path: Path, fmt: str | None, default_reason: str) -> int:
    fmt = fmt or {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}.get(path.suffix.lower())
    if fmt is None:
        return _refused([f"{path}: say --format csv or jsonl (the suffix {path.suffix!r} does not)"])
    rows, wrong = read_rows(await asyncio.to_thread(path.read_text, encoding="utf-8-sig"), fmt)
    entries, more = entries_of(rows, added_by=_principal(kafka), now=utcnow(), default_reason=default_reason)
    if wrong or more:
        return _refused([f"{path}: {line}" for line in wrong + more] + ["nothing was imported"])
    codec = Codec.from_directory()
    current = await read_watchlist(kafka, codec)
    await produce_all(
        kafka, "watchlist", WATCHLIST_ENTRIES, ((key.encode(), codec.encode(e)) for key, e in entries.items())
    )
    replaced = sum(1 for key in entries if key in current)
    print(f"imported {len(entries)} entries ({len(entries) - replaced} added, {replaced} replaced)")
    return 0


async def list_entries(kafka: KafkaSettings, kind: str | None) -> int:
    now = utcnow()
    entries = (await read_watchlist(kafka, Codec.from_directory())).entries()
    shown = 0
    for key, entry in sorted(entries.items()):
        if kind is None or entry.kind == kind:
            line = {"key": key, **msgspec.to_builtins(entry), "expired": expired(entry, now)}
            print(json.dumps(line, ensure_ascii=False))
            shown += 1
    if not shown:
        print("no entries" + (f" of kind {kind}" if kind else ""))
    return 0
