"""`rctc audit verify`, `rctc audit export` and `rctc audit keygen`: checking the hash-chained, signed audit
trail, a partner's share of it, and making the auditor's signing key."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import msgspec

from services.auditor.checkpoints import Finding, new_signing_key, settled, verify_trail
from services.auditor.export import partner_share
from services.cli import render
from services.cli.security import write_secret
from services.common.codec import Codec
from services.common.errors import CodecError
from services.common.kafka import read_to_end
from services.common.records import AuditCheckpointed, AuditRecorded
from services.common.registry.model import Registry
from services.common.registry.publish import latest_published
from services.common.settings import KafkaSettings
from services.common.topics import AUDIT_CHECKPOINTS, AUDIT_EVENTS

T = TypeVar("T", bound=msgspec.Struct)


async def entries(kafka: KafkaSettings, topic: str) -> list[tuple[int, AuditRecorded]]:
    codec = Codec.from_directory()
    return [(r.offset, codec.decode(r.value, AuditRecorded)) async for r in read_to_end(kafka, topic, name="audit")]


async def _read(
    kafka: KafkaSettings,
    codec: Codec,
    topic: str,
    kind: type[T],
    unreadable: list[Finding],
    progress: Callable[[int, int], None] | None = None,
) -> list[tuple[int, T]]:
    found: list[tuple[int, T]] = []
    async for r in read_to_end(kafka, topic, name="audit", progress=progress):
        try:
            found.append((r.offset, codec.decode(r.value, kind)))
        except CodecError as exc:
            # Only the auditor writes these topics: a record that is not its own is named, never skipped.
            unreadable.append(Finding("UNREADABLE", f"record at {topic} offset {r.offset}: {exc}"))
    return found


class Trail(NamedTuple):
    """The trail as read, held to its checkpoints: what verify reports and what export shares."""

    problems: list[Finding]
    notes: list[Finding]
    summary: str
    entries: list[tuple[int, AuditRecorded]]
    checkpoints: list[tuple[int, AuditCheckpointed]]


async def read_trail(
    kafka: KafkaSettings, topic: str, checkpoints_topic: str, *, progress: Callable[[int, int], None] | None = None
) -> Trail:
    """The trail on `topic` held to the checkpoints on `checkpoints_topic` and the registry's audit keys.
    `progress` is told (read, to read) of the entries, the long part."""
    codec = Codec.from_directory()
    published = await latest_published(kafka, codec)
    keys = Registry(published).audit_keys if published is not None else {}
    unreadable: list[Finding] = []
    # Checkpoints, then entries, then checkpoints again: a live auditor commits each head with its entries,
    # so every entry read has its checkpoint in the second read (checkpoints.settled).
    first = await _read(kafka, codec, checkpoints_topic, AuditCheckpointed, [])
    found = await _read(kafka, codec, topic, AuditRecorded, unreadable, progress)
    again = await _read(kafka, codec, checkpoints_topic, AuditCheckpointed, unreadable)
    last_seq = max((e.seq for _, e in found), default=0)
    held = settled(again, len(first), last_seq)
    report = verify_trail(found, held, keys)
    head = found[-1][1] if found else None
    summary = (
        f"intact: {len(found)} entries, every one under a valid signature; head seq {head.seq if head else 0} "
        f"hash {head.hash if head else '-'}; {len(again)} checkpoints, keys {', '.join(sorted(keys)) or 'none'}"
    )
    return Trail(unreadable + report.problems, report.notes, summary, found, held)


async def check(
    kafka: KafkaSettings, topic: str, checkpoints_topic: str, *, progress: Callable[[int, int], None] | None = None
) -> tuple[list[Finding], list[Finding], str]:
    """(problems, notes, summary) of the trail on `topic` held to the checkpoints on `checkpoints_topic` and
    the registry's audit keys."""
    trail = await read_trail(kafka, topic, checkpoints_topic, progress=progress)
    return trail.problems, trail.notes, trail.summary


def add_parser(sub: Any, kafka: Any) -> None:
    audit = sub.add_parser("audit", help="the hash-chained, signed audit trail").add_subparsers(metavar="ACTION")
    p = audit.add_parser(
        "verify",
        help="check every entry's hash and link and every checkpoint's signature; name forged, tampered and "
        "rewritten entries",
    )
    p.add_argument("--topic", default=AUDIT_EVENTS)
    p.add_argument("--checkpoints-topic", default=AUDIT_CHECKPOINTS)
    p.set_defaults(run=lambda args: _verify(kafka(args), args.topic, args.checkpoints_topic))
    p = audit.add_parser(
        "export",
        help="one agency's share of an intact trail (JSON lines), for a bilateral audit: its own alerts' entries "
        "and the copies it received, then the last signed head",
    )
    p.add_argument("--agency", required=True)
    p.add_argument("--topic", default=AUDIT_EVENTS)
    p.add_argument("--checkpoints-topic", default=AUDIT_CHECKPOINTS)
    p.set_defaults(run=lambda args: _export(kafka(args), args.topic, args.checkpoints_topic, args.agency))
    p = audit.add_parser(
        "keygen", help="a new Ed25519 signing key for the auditor (a PEM file) and its entry for the registry"
    )
    p.add_argument("--out", type=Path, required=True, help="where the private key goes (mode 0600; not overwritten)")
    p.set_defaults(run=lambda args: _keygen(args.out))


def _verify(kafka: KafkaSettings, topic: str, checkpoints_topic: str) -> int:
    with render.progress(f"reading {topic}") as step:
        problems, notes, summary = asyncio.run(check(kafka, topic, checkpoints_topic, progress=step))
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"NOT INTACT: {len(problems)} problems in {topic} and {checkpoints_topic}", file=sys.stderr)
    else:
        print(summary)
    for note in notes:
        print(note)
    return 1 if problems else 0


def _export(kafka: KafkaSettings, topic: str, checkpoints_topic: str, agency: str) -> int:
    """`agency`'s share of the trail (services/auditor/export.py says which entries and why), one JSON line
    each, then the last signed checkpoint; nothing from a trail that does not verify.

    The README's audit section says what a partner can check with these lines and what it cannot.
    """
    trail = asyncio.run(read_trail(kafka, topic, checkpoints_topic))
    if trail.problems:
        for problem in trail.problems:
            print(problem, file=sys.stderr)
        print(f"NOT EXPORTED: {len(trail.problems)} problems in {topic} and {checkpoints_topic}", file=sys.stderr)
        return 1
    for exported in partner_share((entry for _, entry in trail.entries), agency):
        print(json.dumps(exported.line(), sort_keys=True))
    if trail.checkpoints:
        print(json.dumps({"checkpoint": msgspec.to_builtins(trail.checkpoints[-1][1])}, sort_keys=True))
    return 0


def _keygen(out: Path) -> int:
    if out.exists():
        print(
            f"{out} exists: a signing key is never overwritten (its checkpoints would no longer verify)",
            file=sys.stderr,
        )
        return 1
    pem, kid, public = new_signing_key()
    write_secret(out, pem.decode().rstrip())
    print(f"private key: {out} (give it to the auditor only, as RCTC_SIGNING_KEY_FILE)")
    print("add to the registry and apply it:")
    print(f"audit:\n  public_keys:\n    - {{id: {kid}, ed25519: {public}}}")
    return 0
