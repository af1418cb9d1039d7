"""The audit trail's signed head: any change to a checkpoint or an entry is named, and the auditor refuses
to build on a head it did not sign."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from services.auditor.chain import seal, verify
from services.auditor.checkpoints import (
    UnsignedHead,
    key_id,
    public_bytes,
    settled,
    sign,
    signature_problem,
    signed_bytes,
    start_check,
    verify_trail,
)
from services.common.codec import Codec
from services.common.records import AuditCheckpointed, AuditRecorded
from tests.unit.test_audit_chain import chain

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
KEYS = {key_id(public_bytes(KEY)): public_bytes(KEY)}
AT = datetime(2026, 12, 2, 9, 0, 0, 123456, tzinfo=UTC)


def signed_trail(n: int, every: int = 1) -> tuple[list[tuple[int, AuditRecorded]], list[tuple[int, AuditCheckpointed]]]:
    """`n` entries with a checkpoint after every `every` of them (and after the last), as the auditor writes."""
    entries = list(enumerate(chain(n)))
    checkpoints = [
        (len(entries) + i, sign(KEY, entry, signed_at=AT + timedelta(seconds=i)))
        for i, (_, entry) in enumerate(e for e in entries if e[1].seq % every == 0 or e[1].seq == n)
    ]
    return entries, checkpoints


def kinds(entries: list[tuple[int, AuditRecorded]], checkpoints: list[tuple[int, AuditCheckpointed]]) -> list[str]:
    return [p.kind for p in verify_trail(entries, checkpoints, KEYS).problems]


def test_the_signed_bytes_are_the_documented_lines() -> None:
    """The canonical string is the domain line, then seq, head hash, signed_at in ms, key id and `-`."""
    checkpoint = sign(KEY, chain(1)[0], signed_at=AT)
    lines = [
        "rctc-audit-checkpoint/v1",
        "1",
        chain(1)[0].hash,
        str(int(AT.timestamp() * 1000)),
        key_id(public_bytes(KEY)),
    ]
    expected = "".join(f"{line}\n" for line in [*lines, "-"]).encode()
    assert expected == signed_bytes(checkpoint)


def test_an_intact_signed_trail_verifies() -> None:
    """Every entry under a valid checkpoint, every signature good: no problem and no note."""
    entries, checkpoints = signed_trail(6, every=2)
    report = verify_trail(entries, checkpoints, KEYS)
    assert (report.problems, report.notes, report.signed_seq) == ([], [], 6)


def test_a_checkpoint_survives_the_codec(codec: Codec) -> None:
    """Avro keeps milliseconds: a checkpoint read back from the topic still verifies."""
    checkpoint = sign(KEY, chain(1)[0], signed_at=AT)
    assert signature_problem(codec.decode(codec.encode(checkpoint), AuditCheckpointed), KEYS) is None


def test_a_forged_append_is_named() -> None:
    """An entry that chains perfectly but comes after the last checkpoint is named as forged; the old chain
    check alone found nothing."""
    entries, checkpoints = signed_trail(4)
    forged = seal(msgspec.structs.replace(entries[-1][1], agency="SA-X"), entries[-1][1])
    entries.append((4, forged))
    assert verify(entries) == []  # the keyless chain alone sees nothing wrong
    report = verify_trail(entries, checkpoints, KEYS)
    assert [p.kind for p in report.problems] == ["FORGED"]
    assert "entry seq 5 at offset 4" in str(report.problems[0])


def test_a_rewritten_history_is_named() -> None:
    """A whole history re-sealed consistently with one entry changed: the checkpoints' heads are not its hashes."""
    entries, checkpoints = signed_trail(5)
    rewritten: list[AuditRecorded] = []
    for _, entry in entries:
        changed = msgspec.structs.replace(entry, kind="withheld") if entry.seq == 2 else entry
        rewritten.append(seal(msgspec.structs.replace(changed, hash=""), rewritten[-1] if rewritten else None))
    found = kinds(list(enumerate(rewritten)), checkpoints)
    assert found.count("REWRITTEN") == 4 and "FORGED" in found and "TAMPERED" not in found


def test_unknown_key_and_bad_signature_are_named() -> None:
    """A checkpoint by a key the registry does not list, and one signed by another key under ours, are named."""
    entries, checkpoints = signed_trail(3)
    foreign = sign(OTHER, entries[-1][1], signed_at=AT)
    impostor = msgspec.structs.replace(foreign, key_id=key_id(public_bytes(KEY)))
    found = kinds(entries, [*checkpoints, (10, foreign), (11, impostor)])
    assert found == ["UNKNOWN KEY", "BAD SIGNATURE"]


@given(st.data())
def test_any_changed_byte_of_a_checkpoint_is_detected(data: st.DataObject) -> None:
    """Changing any one byte of what a checkpoint signs, or of its signature, makes it fail to verify."""
    checkpoint = sign(KEY, chain(3)[-1], signed_at=AT)
    signature = bytearray(base64.b64decode(checkpoint.signature))
    message = bytearray(signed_bytes(checkpoint))
    target = data.draw(st.sampled_from(["signature", "message"]))
    buffer = signature if target == "signature" else message
    i = data.draw(st.integers(0, len(buffer) - 1))
    buffer[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(InvalidSignature):
        KEY.public_key().verify(bytes(signature), bytes(message))


@given(st.data())
def test_any_changed_field_of_a_signed_checkpoint_is_named(data: st.DataObject) -> None:
    """Any field of a signed checkpoint changed (seq, head, time, key, acceptance, signature) is refused."""
    checkpoint = sign(KEY, chain(3)[-1], signed_at=AT)
    changes = {
        "seq": checkpoint.seq + data.draw(st.integers(1, 10**6)),
        "head_hash": data.draw(
            st.text("0123456789abcdef", min_size=64, max_size=64).filter(lambda h: h != checkpoint.head_hash)
        ),
        "signed_at": checkpoint.signed_at + timedelta(milliseconds=data.draw(st.integers(1, 10**9))),
        "accepted_from_seq": data.draw(st.integers(0, 10**6)),
        "signature": base64.b64encode(data.draw(st.binary(min_size=64, max_size=64))).decode(),
    }
    name = data.draw(st.sampled_from(sorted(changes)))
    assert signature_problem(msgspec.structs.replace(checkpoint, **{name: changes[name]}), KEYS) is not None


@given(st.data())
def test_any_changed_byte_of_any_entry_is_named(data: st.DataObject) -> None:
    """Flipping any byte of any string field of any entry of a signed trail leaves it not intact."""
    entries, checkpoints = signed_trail(5, every=2)
    i = data.draw(st.integers(0, len(entries) - 1))
    offset, entry = entries[i]
    name = data.draw(st.sampled_from(["prev_hash", "hash", "kind", "alert_id", "origin", "agency", "rule", "reason"]))
    value = getattr(entry, name)
    j = data.draw(st.integers(0, len(value) - 1))
    changed = value[:j] + chr((ord(value[j]) + data.draw(st.integers(1, 50))) % 0x7F or 1) + value[j + 1 :]
    entries[i] = (offset, msgspec.structs.replace(entry, **{name: changed}))
    assert verify_trail(entries, checkpoints, KEYS).problems != []


def test_accepted_entries_are_a_note_not_a_problem() -> None:
    """An unsigned tail an operator accepted is reported as accepted, and what follows it is signed again."""
    entries, checkpoints = signed_trail(3)
    forged = seal(msgspec.structs.replace(entries[-1][1], agency="SA-X"), entries[-1][1])
    entries.append((3, forged))
    checkpoints.append((20, sign(KEY, forged, signed_at=AT, accepted_from_seq=4)))
    after = seal(msgspec.structs.replace(entries[0][1], alert_id="later"), forged)
    entries.append((4, after))
    checkpoints.append((21, sign(KEY, after, signed_at=AT)))
    report = verify_trail(entries, checkpoints, KEYS)
    expected = "ACCEPTED entry seq 4 at offset 3: not written by the auditor; an operator accepted it (checkpoint at"
    assert (report.problems, [str(n) for n in report.notes]) == ([], [f"{expected} offset 20)"])


def test_the_auditor_goes_on_from_the_head_it_signed() -> None:
    """An empty trail, and a head equal to the last checkpoint, are built on."""
    entries, checkpoints = signed_trail(3)
    assert start_check(None, None, KEYS) is None
    assert start_check(entries[-1], checkpoints[-1], KEYS) is None


def test_the_auditor_refuses_a_forged_append_naming_it() -> None:
    """A head after the last checkpoint stops the start with the entry's seq and offset, unless the operator
    accepted exactly that head."""
    entries, checkpoints = signed_trail(3)
    forged = seal(msgspec.structs.replace(entries[-1][1], agency="SA-X"), entries[-1][1])
    with pytest.raises(UnsignedHead, match=r"entry seq 4 \(head at offset 7"):
        start_check((7, forged), checkpoints[-1], KEYS)
    with pytest.raises(UnsignedHead):
        start_check((7, forged), checkpoints[-1], KEYS, accept=f"4:{'0' * 64}")
    assert start_check((7, forged), checkpoints[-1], KEYS, accept=f"4:{forged.hash}") == 4


def test_the_auditor_refuses_a_forged_checkpoint_and_a_rewritten_head() -> None:
    """A last checkpoint that does not verify, a head that is not the signed one, and an unsigned trail stop it."""
    entries, checkpoints = signed_trail(3)
    bad = sign(OTHER, entries[-1][1], signed_at=AT)
    with pytest.raises(UnsignedHead, match="unknown key"):
        start_check(entries[-1], (5, bad), KEYS)
    rewritten = msgspec.structs.replace(entries[-1][1], hash="f" * 64)
    with pytest.raises(UnsignedHead, match="rewritten"):
        start_check((2, rewritten), checkpoints[-1], KEYS)
    with pytest.raises(UnsignedHead, match="entries seq 1 to 3"):
        start_check(entries[-1], None, KEYS)


def test_checkpoints_committed_after_the_entries_were_read_are_left_out() -> None:
    """Verifying a live trail: a second-read checkpoint past the entries read is not held against them."""
    entries, checkpoints = signed_trail(4)
    late = sign(KEY, seal(entries[0][1], entries[-1][1]), signed_at=AT)
    assert settled([*checkpoints, (9, late)], len(checkpoints), 4) == checkpoints
    assert settled([*checkpoints[:2], (9, late)], 3, 4) == [*checkpoints[:2], (9, late)]
