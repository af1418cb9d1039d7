"""The audit trail's hash chain: sealing entries and verifying a sequence of them. Pure: no I/O.

    entry = seal(unsealed, previous)            # sets seq, prev_hash and hash
    problems = verify(entries)                  # [] when intact

Each entry's hash covers the previous entry's hash and every field of its own, so changing an entry breaks
its own hash, removing one breaks the sequence, and reordering breaks the links. A partner agency can
check the entries of its bilateral export one by one (`entry_hash`), but not that they chain up to a signed
head: the entries between are other agencies' (export.py; the README's audit section says what it can and
cannot verify).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from services.common.records import AuditRecorded

GENESIS = "0" * 64


def canonical(entry: AuditRecorded) -> bytes:
    """The canonical JSON of every field but `hash`: sorted keys, no spaces, times in ISO 8601 UTC."""
    fields: dict[str, Any] = msgspec.to_builtins(entry)
    fields.pop("hash")
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(entry: AuditRecorded) -> str:
    return hashlib.sha256(entry.prev_hash.encode() + b"\n" + canonical(entry)).hexdigest()


def seal(entry: AuditRecorded, previous: AuditRecorded | None) -> AuditRecorded:
    sealed = msgspec.structs.replace(
        entry, seq=(previous.seq + 1) if previous else 1, prev_hash=previous.hash if previous else GENESIS, hash=""
    )
    return msgspec.structs.replace(sealed, hash=entry_hash(sealed))


@dataclass(frozen=True)
class Problem:
    position: int  # 0-based position in the stream (the Kafka offset when read from audit.events)
    seq: int
    message: str

    def __str__(self) -> str:
        return f"entry seq {self.seq} at offset {self.position}: {self.message}"


def verify(entries: Iterable[tuple[int, AuditRecorded]]) -> list[Problem]:
    """Every break in the chain, in stream order; [] when intact."""
    problems: list[Problem] = []
    previous: AuditRecorded | None = None
    for position, entry in entries:
        if entry_hash(entry) != entry.hash:
            problems.append(Problem(position, entry.seq, "its content does not match its hash (changed)"))
        expected_seq = previous.seq + 1 if previous else 1
        expected_prev = previous.hash if previous else GENESIS
        if entry.seq != expected_seq:
            what = "removed" if entry.seq > expected_seq else "reordered or repeated"
            problems.append(Problem(position, entry.seq, f"expected seq {expected_seq}: entries {what}"))
        elif entry.prev_hash != expected_prev:
            problems.append(
                Problem(position, entry.seq, "does not link to the entry before it (reordered or replaced)")
            )
        previous = entry
    return problems
