"""The compiled Avro writers write fastavro's bytes, for every record type, on generated records."""

from __future__ import annotations

import io
import typing
from datetime import UTC, datetime
from typing import Any

import fastavro
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.cli.tail import RECORD_TYPES
from services.common.avro_writer import compile_writer
from services.common.codec import Codec, _to_avro
from services.common.errors import CodecError
from services.common.records import AlertEnriched, AlertShared
from tests.unit.samples import sample_alert

CODEC = Codec.from_directory()
TYPES = sorted({*RECORD_TYPES.values(), AlertShared}, key=lambda t: t.__name__)


def values_of(annotation: Any) -> st.SearchStrategy[Any]:
    """Values of a record field's type, edges included (long limits, non-ASCII, naive and aware times)."""
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return records_of(annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return st.one_of(*(values_of(a) for a in args))
    if origin is list:
        return st.lists(values_of(args[0]), max_size=3)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]: an Avro array held as a tuple
        return st.lists(values_of(args[0]), max_size=3).map(tuple)
    if origin is dict:
        return st.dictionaries(st.text(max_size=5), values_of(args[1]), max_size=3)
    if annotation is type(None):
        return st.none()
    if annotation is datetime:
        # Within what both writers turn into a long; naive times are local time to fastavro, so to us too.
        bounded = {"min_value": datetime(1900, 1, 1), "max_value": datetime(2200, 1, 1)}
        return st.one_of(st.datetimes(**bounded), st.datetimes(**bounded, timezones=st.just(UTC)))
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return st.integers(min_value=-(2**63), max_value=2**63 - 1)
    if annotation is float:
        return st.floats(allow_nan=False)
    if annotation is str:
        return st.text(max_size=80)
    if annotation is bytes:
        return st.binary(max_size=300)
    raise NotImplementedError(annotation)


def records_of(kind: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(kind)
    fields = {f.name: st.deferred(lambda a=hints[f.name]: values_of(a)) for f in msgspec.structs.fields(kind)}
    return st.builds(kind, **fields)


def fastavro_bytes(schema: dict[str, Any], record: msgspec.Struct) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, _to_avro(record), strict_allow_default=True)
    return out.getvalue()


@pytest.mark.parametrize("kind", TYPES, ids=lambda t: t.__name__)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_compiled_writers_write_what_fastavro_writes(kind: type[msgspec.Struct], data: st.DataObject) -> None:
    record = data.draw(records_of(kind))
    schema = CODEC.schema_for(kind)
    compiled = compile_writer(schema)
    if compiled is None:  # a schema it does not compile: the codec writes it with fastavro
        assert kind.__name__ == "RegistryPublished"
        return
    try:
        expected: bytes | None = fastavro_bytes(schema, record)
    except (ValueError, TypeError, KeyError, OverflowError):
        expected = None  # fastavro refuses it
    out = bytearray()
    try:
        compiled(record, out)
    except (AttributeError, TypeError, KeyError, ValueError, OverflowError):
        pass  # refused here too: the codec asks fastavro (below)
    else:
        assert bytes(out) == expected  # written only what fastavro writes, exactly as it writes it
    if expected is None:
        with pytest.raises(CodecError, match="does not fit"):
            CODEC.encode(record)
    else:
        assert CODEC.encode(record)[10:] == expected


def test_what_does_not_fit_is_refused_as_before() -> None:
    """The compiled writer gives up on a value it cannot write; fastavro then says what does not fit."""
    at = datetime(2026, 11, 28, tzinfo=UTC)
    good = AlertEnriched(alert_id="a", origin="IQ-A", submitted_at=at, enriched_at=at, priority=2, alert=sample_alert())
    for bad in (
        msgspec.structs.replace(good, priority=2**64),  # no Avro long holds it
        msgspec.structs.replace(good, alert_id=None),  # type: ignore[arg-type]
        msgspec.structs.replace(good, alert=msgspec.structs.replace(good.alert, severity="Apocalyptic")),  # type: ignore[arg-type]
    ):
        with pytest.raises(CodecError, match="does not fit"):
            CODEC.encode(bad)


def test_length_and_integer_edges() -> None:
    """Where a varint grows a byte, and the ends of a long: generated records rarely land exactly there."""
    at = datetime(2026, 11, 28, 9, 30, 15, 999_999, tzinfo=UTC)
    schema = CODEC.schema_for(AlertEnriched)
    compiled = compile_writer(schema)
    assert compiled is not None
    for n in (0, 1, 63, 64, 65, 127, 128, 8191, 8192, 70_000):
        for priority in (0, -1, 63, 64, -64, -65, 2**31, -(2**31) - 1, 2**63 - 1, -(2**63)):
            record = AlertEnriched(
                alert_id="é" * n,
                origin="x" * n,
                submitted_at=at,
                enriched_at=at,
                priority=priority,
                alert=sample_alert(),
            )
            out = bytearray()
            compiled(record, out)
            assert bytes(out) == fastavro_bytes(schema, record), (n, priority)
