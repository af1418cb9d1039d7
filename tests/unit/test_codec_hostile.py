"""Hostile bytes: whatever a record's value holds, `Codec.decode` returns a record or raises `CodecError`,
nothing else, quickly, without allocating what a length prefix claims."""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.codec import MAGIC, SCHEMA_DIR, Codec, load_schema_file
from services.common.errors import CodecError, UnknownSchemaError
from services.common.records import AckSubmitted, AlertRejected, AlertSubmitted, utcnow
from services.common.registry.document import load_registry
from services.common.registry.model import split
from tests.unit.samples import enriched, sample_alert

CODEC = Codec.from_directory()


def _valid() -> list[msgspec.Struct]:
    at = utcnow()
    doc = load_registry(Path(__file__).resolve().parents[2] / "deploy" / "registry" / "demo.yaml")
    return [
        AlertSubmitted(alert_id="a-1", origin="IQ-NAB", submitted_at=at, alert=sample_alert()),
        enriched(sample_alert()),
        AckSubmitted(
            ack_id="k-1",
            alert_id="a-1",
            agency="JO-TAC",
            response="actioned",
            note="seen",
            channel="kafka",
            submitted_at=at,
        ),
        AlertRejected(alert_id="a", origin="o", stage="s", reason="r", rejected_at=at),
        # The registry, its credentials and its webhook secrets, as `rctc registry apply` publishes them.
        *split(doc, version=1, published_at=at, published_by="test", source="demo.yaml"),
    ]


VALID = [(type(r), CODEC.encode(r)) for r in _valid()]
TYPES = [t for t, _ in VALID]


def outcome(data: Any, into: type[msgspec.Struct]) -> str:
    """'ok' or 'refused'; any other exception fails the test with its traceback."""
    try:
        CODEC.decode(data, into)
    except CodecError:
        return "refused"
    return "ok"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=400), into=st.sampled_from(TYPES))
def test_arbitrary_bytes_decode_or_raise_codec_error(data: bytes, into: type[msgspec.Struct]) -> None:
    """Random bytes, with or without a real header in front, only ever raise CodecError."""
    for candidate in (data, MAGIC + data, MAGIC + CODEC.encode(_valid()[0])[2:10] + data):
        assert outcome(candidate, into) in {"ok", "refused"}


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, len(VALID) - 1), position=st.integers(0, 10**6), byte=st.integers(0, 255))
def test_every_one_byte_mutation_of_a_valid_record_decodes_or_raises_codec_error(
    which: int, position: int, byte: int
) -> None:
    """Any byte of a valid record set to any value: a record or CodecError (IndexError, OverflowError escaped)."""
    into, data = VALID[which]
    mutated = bytearray(data)
    mutated[position % len(data)] = byte
    assert outcome(bytes(mutated), into) in {"ok", "refused"}


@settings(max_examples=200, deadline=None)
@given(which=st.integers(0, len(VALID) - 1), cut=st.integers(0, 10**6))
def test_every_truncation_of_a_valid_record_is_refused(which: int, cut: int) -> None:
    """A valid record cut short anywhere is refused with CodecError, never read as something shorter."""
    into, data = VALID[which]
    assert outcome(data[: cut % len(data)], into) == "refused"


@settings(max_examples=100, deadline=None)
@given(which=st.integers(0, len(VALID) - 1), extra=st.binary(min_size=1, max_size=64))
def test_bytes_after_a_valid_record_are_refused(which: int, extra: bytes) -> None:
    """A record followed by anything is not that record: the body must end where the record ends."""
    into, data = VALID[which]
    with pytest.raises(CodecError, match="after the end of the record"):
        CODEC.decode(data + extra, into)


@pytest.mark.parametrize("value", [None, b"", b"\xc3", b"\xc3\x01", "text", 42])
def test_no_value_and_non_bytes_are_refused(value: Any) -> None:
    """A tombstone (None), an empty value and anything that is not bytes are CodecError (TypeError escaped)."""
    assert outcome(value, AlertSubmitted) == "refused"


def test_foreign_fingerprint_and_wrong_type_are_refused() -> None:
    """Another writer's schema, or another record type than the topic carries, is CodecError."""
    _, data = VALID[0]
    with pytest.raises(UnknownSchemaError):
        CODEC.decode(MAGIC + struct.pack("<Q", 0x0123456789ABCDEF) + data[10:], AlertSubmitted)
    with pytest.raises(CodecError, match=r"got a record written as rctc\.AlertSubmitted"):
        CODEC.decode(data, AckSubmitted)


def test_oversized_records_are_refused_before_parsing() -> None:
    """A value over max_record_bytes is refused by its length alone."""
    small = Codec.from_directory()
    small.max_record_bytes = 64
    _, data = VALID[0]
    with pytest.raises(CodecError, match=rf"oversized rctc\.AlertSubmitted: {len(data)} bytes, at most 64"):
        small.decode(data, AlertSubmitted)


def _varint(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@pytest.mark.parametrize("length", [2**31, 2**40, 2**62, 2**63 - 1, -5])
def test_a_huge_length_prefix_is_refused_at_once(length: int) -> None:
    """A flipped bit that makes a string's length (or an array's count) enormous costs nothing: refused fast."""
    _, data = VALID[0]
    for body in (_varint(length) + b"x" * 30, b"\x02a\x02b" + _varint(length) + b"y" * 30):
        started = time.perf_counter()
        with pytest.raises(CodecError, match="corrupt"):
            CODEC.decode(data[:10] + body, AlertSubmitted)
        assert time.perf_counter() - started < 0.5


def _min_width(schema: Any, seen: dict[str, Any]) -> int:
    """The fewest bytes a value of `schema` takes in Avro binary."""
    if isinstance(schema, str):
        if schema in seen:
            return _min_width(seen[schema], seen)
        return 0 if schema == "null" else 1 if schema not in ("float", "double", "fixed") else 4
    if isinstance(schema, list):
        return 1  # the branch index
    kind = schema["type"]
    if kind == "record":
        seen[schema["name"]] = schema
        return sum(_min_width(f["type"], seen) for f in schema["fields"])
    if kind == "fixed":
        return int(schema["size"])
    if isinstance(kind, dict | list):
        return _min_width(kind, seen)
    return _min_width(kind, seen) if kind not in ("array", "map", "enum") else 1


def _items(schema: Any, seen: dict[str, Any]) -> list[Any]:
    """Every array's items and map's values type in `schema`."""
    found: list[Any] = []
    if isinstance(schema, list):
        for branch in schema:
            found += _items(branch, seen)
    elif isinstance(schema, dict):
        if schema.get("type") == "record":
            seen[schema["name"]] = schema
            for field in schema["fields"]:
                found += _items(field["type"], seen)
        elif schema.get("type") in ("array", "map"):
            inner = schema.get("items", schema.get("values"))
            found.append(inner)
            found += _items(inner, seen)
        elif isinstance(schema.get("type"), dict | list):
            found += _items(schema["type"], seen)
    return found


def test_no_array_or_map_item_can_take_zero_bytes() -> None:
    """A count of 2^62 can only loop as long as the body has bytes if every item takes at least one; a
    schema with an array of null or of an empty record would let one flipped bit spin a consumer."""
    checked = 0
    for path in sorted(SCHEMA_DIR.glob("rctc.*.avsc")):
        schema, name = load_schema_file(path), path.stem
        seen: dict[str, Any] = {}
        for items in _items(schema, seen):
            assert _min_width(items, seen) >= 1, f"{name}: {items}"
            checked += 1
    assert checked > 20  # the walk found the arrays and maps (a vacuous pass would prove nothing)
