"""`rctc audit verify`, `rctc audit export` and `rctc audit keygen`: checking the hash-chained, signed audit
trail, a partner's share of it, and making the auditor's signing key."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from services.auditor.chain import entry_hash
from services.auditor.checkpoints import Finding, new_signing_key, settled, verify_trail
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
    kafka: KafkaSettings, codec: Codec, topic: str, kind: type[T], unreadable: list[Finding]
) -> list[tuple[int, T]]:
    found: list[tuple[int, T]] = []
    async for r in read_to_end(kafka, topic, name="audit"):
        try:
            found.append((r.offset, codec.decode(r.value, kind)))
        except CodecError as exc:
            # Only the auditor writes these topics: a record that is not its own is named, never skipped.
            unreadable.append(Finding("UNREADABLE", f"record at {topic} offset {r.offset}: {exc}"))
    return found


async def check(kafka: KafkaSettings, topic: str, checkpoints_topic: str) -> tuple[list[Finding], list[Finding], str]:
    """(problems, notes, summary) of the trail on `topic` held to the checkpoints on `checkpoints_topic` and
    the registry's audit keys."""
    codec = Codec.from_directory()
    published = await latest_published(kafka, codec)
    keys = Registry(published).audit_keys if published is not None else {}
    unreadable: list[Finding] = []
    # Checkpoints, then entries, then checkpoints again: a live auditor commits each head with its entries,
    # so every entry read has its checkpoint in the second read (checkpoints.settled).
    first = await _read(kafka, codec, checkpoints_topic, AuditCheckpointed, [])
    found = await _read(kafka, codec, topic, AuditRecorded, unreadable)
    again = await _read(kafka, codec, checkpoints_topic, AuditCheckpointed, unreadable)
    last_seq = max((e.seq for _, e in found), default=0)
    report = verify_trail(found, settled(again, len(first), last_seq), keys)
    head = found[-1][1] if found else None
    summary = (
        f"intact: {len(found)} entries, every one under a valid signature; head seq {head.seq if head else 0} "
        f"hash {head.hash if head else '-'}; {len(again)} checkpoints, keys {', '.join(sorted(keys)) or 'none'}"
    )
    return unreadable + report.problems, report.notes, summary


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
    p = audit.add_parser("export", help="the entries about one agency (JSON lines), for a bilateral audit")
    p.add_argument("--agency", required=True)
    p.add_argument("--topic", default=AUDIT_EVENTS)
    p.set_defaults(run=lambda args: _export(kafka(args), args.topic, args.agency))
    p = audit.add_parser(
        "keygen", help="a new Ed25519 signing key for the auditor (a PEM file) and its entry for the registry"
    )
    p.add_argument("--out", type=Path, required=True, help="where the private key goes (mode 0600; not overwritten)")
    p.set_defaults(run=lambda args: _keygen(args.out))


def _verify(kafka: KafkaSettings, topic: str, checkpoints_topic: str) -> int:
    problems, notes, summary = asyncio.run(check(kafka, topic, checkpoints_topic))
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"NOT INTACT: {len(problems)} problems in {topic} and {checkpoints_topic}", file=sys.stderr)
    else:
        print(summary)
    for note in notes:
        print(note)
    return 1 if problems else 0


def _export(kafka: KafkaSettings, topic: str, agency: str) -> int:
    """Entries delivering to or withholding from `agency`, and those about alerts it originated.

    Each line carries its seq, prev_hash and hash: the partner recomputes every hash itself
    (services/auditor/chain.py documents the formula) and compares the last with the head the auditor signs
    on audit.checkpoints (services/auditor/checkpoints.py documents the signed bytes).
    """
    for _, entry in asyncio.run(entries(kafka, topic)):
        if agency in (entry.agency, entry.origin):
            line = msgspec.to_builtins(entry)
            line["hash_ok"] = entry_hash(entry) == entry.hash
            print(json.dumps(line, sort_keys=True))
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
