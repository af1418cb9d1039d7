"""The audit trail's signed head: signing checkpoints, the auditor's start check, and verifying a whole trail.
Pure: no I/O (the key is loaded at the edge, `load_signing_key`).

    checkpoint = sign(key, head, signed_at=now)                  # an AuditCheckpointed for audit.checkpoints
    start_check(head, last_checkpoint, trusted, accept=None)     # raises UnsignedHead before a forgery is built on
    report = verify_trail(entries, checkpoints, keys)            # report.problems == [] when intact

The hash chain (chain.py) is keyless: anyone who can write audit.events can append an entry that chains, or
rewrite the whole history consistently. A checkpoint closes that: the auditor signs (seq, head hash) with an
Ed25519 key only it holds, in the same Kafka transaction as the entries it covers, so every committed entry is
signed when it becomes visible. Hence:

| what was done to the trail                         | what names it                                        |
|----------------------------------------------------|------------------------------------------------------|
| an entry appended after the last checkpoint        | no valid checkpoint's head chains back to it: FORGED |
| an entry changed, removed, reordered               | the chain itself (chain.verify): TAMPERED            |
| the history rewritten (consistently re-hashed)     | a checkpoint's head is not the chain's hash at its   |
|                                                    | seq: REWRITTEN                                       |
| a checkpoint forged or altered                     | its signature: BAD SIGNATURE / UNKNOWN KEY           |

What a signature cannot show is a trail deleted together with its checkpoints from the end: keep the last
signed head somewhere the broker's admin cannot reach (a partner's bilateral export carries it).

The signed bytes (`signed_bytes`) are UTF-8 lines, each ending in a newline, in this order:
`rctc-audit-checkpoint/v1`, seq (decimal), head_hash (lower-case hex), signed_at (milliseconds since the
epoch, decimal), key_id, accepted_from_seq (decimal, or `-`). The first line keeps a signature over these
bytes from meaning anything else. A key's id is the first 16 hex digits of the SHA-256 of its raw 32-byte
public key, so an id cannot name another key.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.auditor.chain import GENESIS, verify
from services.common.errors import ConfigurationError, RctcError
from services.common.records import AuditCheckpointed, AuditRecorded
from services.common.registry.model import audit_key_id

DOMAIN = b"rctc-audit-checkpoint/v1"


class UnsignedHead(RctcError):
    """The trail's head is not the head the auditor last signed: extending it would sign over a forgery."""


def key_id(public: bytes) -> str:
    """The id of a raw 32-byte Ed25519 public key: the first 16 hex digits of its SHA-256."""
    return audit_key_id(public)


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """The auditor's private key from an unencrypted PKCS#8 PEM file (`rctc audit keygen`, or
    `openssl genpkey -algorithm ed25519`). Raises ConfigurationError naming the file."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise ConfigurationError(f"auditor signing_key_file {path}: {exc.strerror}") from None
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"auditor signing_key_file {path}: not an unencrypted PEM private key ({exc})"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(f"auditor signing_key_file {path}: an Ed25519 key is needed, not {type(key).__name__}")
    return key


def new_signing_key() -> tuple[bytes, str, str]:
    """A fresh key: its PEM (PKCS#8, unencrypted, for the auditor only), its id and its public key in base64
    (the registry's `audit.public_keys` entry)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public = public_bytes(key)
    return pem, key_id(public), base64.b64encode(public).decode()


def signed_bytes(checkpoint: AuditCheckpointed) -> bytes:
    """The canonical bytes a checkpoint's signature covers (the module docstring says the format)."""
    millis = int(checkpoint.signed_at.timestamp() * 1000)
    accepted = "-" if checkpoint.accepted_from_seq is None else str(checkpoint.accepted_from_seq)
    lines = [DOMAIN.decode(), str(checkpoint.seq), checkpoint.head_hash, str(millis), checkpoint.key_id, accepted]
    return "".join(f"{line}\n" for line in lines).encode()


def sign(
    key: Ed25519PrivateKey, head: AuditRecorded, *, signed_at: datetime, accepted_from_seq: int | None = None
) -> AuditCheckpointed:
    # Avro keeps milliseconds: sign what a reader will decode, or every signature would fail on the way back.
    signed_at = signed_at.replace(microsecond=signed_at.microsecond // 1000 * 1000)
    unsigned = AuditCheckpointed(
        seq=head.seq,
        head_hash=head.hash,
        signed_at=signed_at,
        key_id=key_id(public_bytes(key)),
        signature="",
        accepted_from_seq=accepted_from_seq,
    )
    unsigned.signature = base64.b64encode(key.sign(signed_bytes(unsigned))).decode()
    return unsigned


def signature_problem(checkpoint: AuditCheckpointed, keys: Mapping[str, bytes]) -> str | None:
    """Why the checkpoint's signature does not hold under `keys` (id -> raw public key); None when it does."""
    public = keys.get(checkpoint.key_id)
    if public is None:
        return f"signed by unknown key {checkpoint.key_id!r} (not in the registry's audit.public_keys)"
    try:
        signature = base64.b64decode(checkpoint.signature, validate=True)
        Ed25519PublicKey.from_public_bytes(public).verify(signature, signed_bytes(checkpoint))
    except (binascii.Error, ValueError, InvalidSignature):
        return f"its signature does not verify under key {checkpoint.key_id} (forged or altered)"
    return None


def start_check(
    head: tuple[int, AuditRecorded] | None,
    last: tuple[int, AuditCheckpointed] | None,
    keys: Mapping[str, bytes],
    accept: str | None = None,
) -> int | None:
    """Whether the auditor may extend the trail whose head is `head` (its offset and entry), given the last
    record on audit.checkpoints; `keys` are the keys it trusts. Returns None to go on, or the seq from which
    an operator accepted an unsigned tail (`accept` is "<seq>:<hash>" of exactly that head); raises
    UnsignedHead naming the entry otherwise."""
    if last is not None:
        at, checkpoint = last
        problem = signature_problem(checkpoint, keys)
        if problem is not None:
            raise UnsignedHead(
                f"the last checkpoint (audit.checkpoints offset {at}) {problem}: someone other than this "
                "auditor wrote it. Run `rctc audit verify`; see README, Security model"
            )
    if head is None:
        if last is None:
            return None
        raise UnsignedHead(
            f"audit.events is empty but the last checkpoint signs entry seq {last[1].seq}: the trail was deleted. "
            "Run `rctc audit verify`; see README, Security model"
        )
    offset, entry = head
    signed_seq, signed_hash = (last[1].seq, last[1].head_hash) if last is not None else (0, GENESIS)
    if (entry.seq, entry.hash) == (signed_seq, signed_hash):
        return None
    if entry.seq > signed_seq:
        if accept is not None and accept == f"{entry.seq}:{entry.hash}":
            return signed_seq + 1
        what = (
            f"entries seq {signed_seq + 1} to {entry.seq}" if entry.seq > signed_seq + 1 else f"entry seq {entry.seq}"
        )
        raise UnsignedHead(
            f"audit.events holds {what} (head at offset {offset}, hash {entry.hash}) after the last signed "
            f"checkpoint (seq {signed_seq}): this auditor never wrote them (a forged append). Run `rctc audit "
            f"verify`; to continue from this head anyway, start with RCTC_ACCEPT_UNSIGNED_HEAD={entry.seq}:{entry.hash}"
        )
    raise UnsignedHead(
        f"the trail's head, entry seq {entry.seq} at offset {offset} (hash {entry.hash}), is not the head the "
        f"auditor last signed (seq {signed_seq}, hash {signed_hash}): the history was rewritten or truncated. "
        "Run `rctc audit verify`; see README, Security model"
    )


@dataclass(frozen=True)
class Finding:
    kind: str  # FORGED, TAMPERED, REWRITTEN, BAD SIGNATURE, UNKNOWN KEY, UNREADABLE; ACCEPTED is a note
    message: str

    def __str__(self) -> str:
        return f"{self.kind} {self.message}"


@dataclass
class Report:
    problems: list[Finding] = field(default_factory=list)
    notes: list[Finding] = field(default_factory=list)
    signed_seq: int = 0  # the highest seq a valid checkpoint covers


def verify_trail(
    entries: Sequence[tuple[int, AuditRecorded]],
    checkpoints: Sequence[tuple[int, AuditCheckpointed]],
    keys: Mapping[str, bytes],
) -> Report:
    """The chain (changed, removed, reordered entries), every checkpoint's signature and head, and every entry
    covered by a valid checkpoint: an entry is the auditor's when a signed head chains back to it."""
    report = Report()
    report.problems += [Finding("TAMPERED", str(p)) for p in verify(entries)]
    by_hash: dict[str, tuple[int, AuditRecorded]] = {}
    by_seq: dict[int, list[tuple[int, AuditRecorded]]] = {}
    for offset, entry in entries:
        by_hash.setdefault(entry.hash, (offset, entry))
        by_seq.setdefault(entry.seq, []).append((offset, entry))
    covered: dict[int, str] = {}  # offset -> "signed" or "accepted"
    accepted_by: dict[int, int] = {}  # offset -> the checkpoint's offset that accepted it
    for at, checkpoint in checkpoints:
        problem = signature_problem(checkpoint, keys)
        if problem is not None:
            kind = "UNKNOWN KEY" if problem.startswith("signed by unknown") else "BAD SIGNATURE"
            report.problems.append(Finding(kind, f"checkpoint at offset {at} (seq {checkpoint.seq}): {problem}"))
            continue
        found = by_hash.get(checkpoint.head_hash)
        if found is None or found[1].seq != checkpoint.seq:
            at_seq = by_seq.get(checkpoint.seq, [])
            chain = (
                f"the trail's entry seq {checkpoint.seq} (offset {at_seq[0][0]}) has hash {at_seq[0][1].hash}"
                if at_seq
                else f"the trail has no entry seq {checkpoint.seq}"
            )
            report.problems.append(
                Finding(
                    "REWRITTEN",
                    f"checkpoint at offset {at} signed head seq {checkpoint.seq} hash {checkpoint.head_hash}, "
                    f"but {chain}: the history was rewritten",
                )
            )
            continue
        report.signed_seq = max(report.signed_seq, checkpoint.seq)
        # Walk back from the signed head along prev_hash, marking what it covers; stop at what is marked.
        # What one checkpoint accepted stays accepted when a later one covers it again. Stored hashes are the
        # writer's word, so a walk never visits an entry twice (a crafted cycle ends it).
        step: tuple[int, AuditRecorded] | None = found
        seen: set[int] = set()
        while step is not None and step[0] not in seen and covered.get(step[0]) != "signed":
            offset, entry = step
            seen.add(offset)
            if offset not in covered:
                if checkpoint.accepted_from_seq is not None and entry.seq >= checkpoint.accepted_from_seq:
                    covered[offset] = "accepted"
                    accepted_by[offset] = at
                else:
                    covered[offset] = "signed"
            step = by_hash.get(entry.prev_hash) if entry.prev_hash != GENESIS else None
    forged = [(o, e) for o, e in entries if o not in covered]
    accepted = [(o, e) for o, e in entries if covered.get(o) == "accepted"]
    for first, last in _runs(forged):
        report.problems.append(
            Finding(
                "FORGED",
                f"{_span(first, last)}: no signed checkpoint covers it; the auditor never wrote it (appended "
                "after its last checkpoint, or not chained to any signed head)",
            )
        )
    for first, last in _runs(accepted):
        report.notes.append(
            Finding(
                "ACCEPTED",
                f"{_span(first, last)}: not written by the auditor; an operator accepted it (checkpoint at offset "
                f"{accepted_by[first[0]]})",
            )
        )
    return report


def _runs(found: list[tuple[int, AuditRecorded]]) -> list[tuple[tuple[int, AuditRecorded], tuple[int, AuditRecorded]]]:
    """Consecutive entries (by seq) grouped, so a long unsigned tail is one line, not thousands."""
    runs: list[tuple[tuple[int, AuditRecorded], tuple[int, AuditRecorded]]] = []
    for item in found:
        if runs and item[1].seq == runs[-1][1][1].seq + 1:
            runs[-1] = (runs[-1][0], item)
        else:
            runs.append((item, item))
    return runs


def _span(first: tuple[int, AuditRecorded], last: tuple[int, AuditRecorded]) -> str:
    if first is last:
        return f"entry seq {first[1].seq} at offset {first[0]}"
    return f"entries seq {first[1].seq} to {last[1].seq} at offsets {first[0]} to {last[0]}"


def settled(
    checkpoints: Sequence[tuple[int, AuditCheckpointed]], read_before: int, last_seq: int
) -> list[tuple[int, AuditCheckpointed]]:
    """The checkpoints to hold a trail to, read around a live auditor: checkpoints were read once (the first
    `read_before` of them), then the entries (up to `last_seq`), then the checkpoints again. A checkpoint of the
    second read beyond `last_seq` was committed after the entries were read, with entries not read: left out.
    One of the first read is never left out (its entries were committed before they were read)."""
    return [(at, cp) for i, (at, cp) in enumerate(checkpoints) if i < read_before or cp.seq <= last_seq]
