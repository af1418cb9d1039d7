"""`rctc audit verify` and `rctc audit export`: checking the hash-chained audit trail, and a partner's share of it."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import msgspec

from services.auditor.chain import entry_hash, verify
from services.common.codec import Codec
from services.common.kafka import read_to_end
from services.common.records import AuditRecorded
from services.common.settings import KafkaSettings
from services.common.topics import AUDIT_EVENTS


async def entries(kafka: KafkaSettings, topic: str) -> list[tuple[int, AuditRecorded]]:
    codec = Codec.from_directory()
    return [(r.offset, codec.decode(r.value, AuditRecorded)) async for r in read_to_end(kafka, topic, name="audit")]


def add_parser(sub: Any, kafka: Any) -> None:
    audit = sub.add_parser("audit", help="the hash-chained audit trail").add_subparsers(metavar="ACTION")
    p = audit.add_parser("verify", help="check every entry's hash and link; name the first that was tampered with")
    p.add_argument("--topic", default=AUDIT_EVENTS)
    p.set_defaults(run=lambda args: _verify(kafka(args), args.topic))
    p = audit.add_parser("export", help="the entries about one agency (JSON lines), for a bilateral audit")
    p.add_argument("--agency", required=True)
    p.add_argument("--topic", default=AUDIT_EVENTS)
    p.set_defaults(run=lambda args: _export(kafka(args), args.topic, args.agency))


def _verify(kafka: KafkaSettings, topic: str) -> int:
    found = asyncio.run(entries(kafka, topic))
    problems = verify(found)
    for problem in problems:
        print(f"TAMPERED {problem}", file=sys.stderr)
    if problems:
        return 1
    head = found[-1][1] if found else None
    print(f"intact: {len(found)} entries; head seq {head.seq if head else 0} hash {head.hash if head else '-'}")
    return 0


def _export(kafka: KafkaSettings, topic: str, agency: str) -> int:
    """Entries delivering to or withholding from `agency`, and those about alerts it originated.

    Each line carries its seq, prev_hash and hash: the partner recomputes every hash itself
    (services/auditor/chain.py documents the formula) and compares the last with the head the center signs.
    """
    for _, entry in asyncio.run(entries(kafka, topic)):
        if agency in (entry.agency, entry.origin):
            line = msgspec.to_builtins(entry)
            line["hash_ok"] = entry_hash(entry) == entry.hash
            print(json.dumps(line, sort_keys=True))
    return 0
