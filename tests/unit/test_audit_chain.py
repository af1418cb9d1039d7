"""The audit trail's hash chain detects a changed, removed or reordered entry."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from services.auditor.chain import GENESIS, seal, verify
from services.common.records import AuditRecorded

AT = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def chain(n: int) -> list[AuditRecorded]:
    entries: list[AuditRecorded] = []
    for i in range(n):
        entry = AuditRecorded(
            recorded_at=AT,
            kind="delivered",
            alert_id=f"a{i}",
            msg_type="Alert",
            origin="IQ-A",
            agency="JO-B",
            rule="shared",
            reason="shared under G",
            agreement_id="G",
            copy_sha256="ab" * 32,
            registry_version=1,
            routed_at=AT,
        )
        entries.append(seal(entry, entries[-1] if entries else None))
    return entries


def test_intact_chain_verifies() -> None:
    """A sealed chain has consecutive seqs, links each entry to the one before, and verifies."""
    entries = chain(5)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS and entries[1].prev_hash == entries[0].hash
    assert verify(enumerate(entries)) == []


def test_changed_entry_is_named() -> None:
    """Changing any field of one entry (here: who received it) is reported at that entry."""
    entries = chain(5)
    entries[2] = msgspec.structs.replace(entries[2], agency="SA-X")
    [problem] = verify(enumerate(entries))
    assert (problem.position, problem.seq) == (2, 3) and "changed" in problem.message


def test_removed_entry_is_named() -> None:
    """Dropping an entry is reported where the sequence jumps."""
    entries = chain(5)
    del entries[3]
    [problem] = verify(enumerate(entries))
    assert (problem.position, problem.seq) == (3, 5) and "removed" in problem.message


def test_reordered_entries_are_named() -> None:
    """Swapping two entries is reported at the first out of place."""
    entries = chain(5)
    entries[1], entries[2] = entries[2], entries[1]
    problems = verify(enumerate(entries))
    assert problems[0].position == 1 and "expected seq 2" in problems[0].message


def test_resealed_forgery_breaks_the_next_link() -> None:
    """Rewriting an entry and recomputing its hash still breaks the link of the entry after it."""
    entries = chain(4)
    forged = msgspec.structs.replace(entries[1], agency="SA-X", hash="")
    entries[1] = seal(forged, entries[0])
    [problem] = verify(enumerate(entries))
    assert (problem.position, problem.seq) == (2, 3) and "does not link" in problem.message
