"""Avro single-object encoding: round trips, schema evolution, and refusal of unknown writers."""

from __future__ import annotations

import copy
import io
import struct
from datetime import datetime
from pathlib import Path
from typing import Any

import fastavro
import fastavro.schema
import fastavro.utils
import msgspec
import pytest

from services.common import records
from services.common.codec import MAGIC, SCHEMA_DIR, Codec, fingerprint, legacy_fingerprint, load_schema_file
from services.common.errors import CodecError, UnknownSchemaError
from services.common.records import AlertEnriched, AlertRejected, AlertShared, AlertSubmitted, utcnow
from services.common.registry.document import load_registry
from services.common.registry.model import RegistryPublished
from tests.unit.samples import sample_alert

ROOT = Path(__file__).resolve().parents[2]


def rabin64(data: bytes) -> int:
    """The Avro specification's reference CRC-64-AVRO ("Schema Fingerprints"), transcribed from its Java, so the
    codec is held to the specification rather than to the library it calls."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


class Probe(msgspec.Struct):
    id: str
    n: int


PROBE_SCHEMA = {
    "type": "record",
    "name": "Probe",
    "namespace": "rctc",
    "fields": [{"name": "id", "type": "string"}, {"name": "n", "type": "long"}],
}
# Apache Avro 1.12.1 (Java): BinaryMessageEncoder's bytes for Probe{id="a-1", n=42}, and
# SchemaNormalization.parsingFingerprint64 of PROBE_SCHEMA.
JAVA_PROBE_RECORD = bytes.fromhex("c301fd5b6b7a0b39478406612d3154")
JAVA_PROBE_FINGERPRINT64 = -8915094215895327747


def test_round_trip_and_wire_format(codec: Codec) -> None:
    """A record encodes as C3 01 + the schema's CRC-64-AVRO fingerprint + body, and decodes equal."""
    record = AlertSubmitted(alert_id="a-1", origin="IQ-NAB", submitted_at=utcnow(), alert=sample_alert())
    data = codec.encode(record)
    assert data[:2] == MAGIC
    assert data[2:10] == fingerprint(codec.schema_for(AlertSubmitted))
    assert codec.decode(data, AlertSubmitted) == record


def test_fingerprint_is_that_of_the_schema_file_itself(codec: Codec) -> None:
    """The codec keeps its schemas in fastavro's marked-as-parsed form; the fingerprint on the wire must still
    be the CRC-64-AVRO of the .avsc's canonical form, which any other Avro library computes from the file."""
    path = SCHEMA_DIR / "rctc.AlertSubmitted.avsc"
    canonical = fastavro.schema.to_parsing_canonical_form(load_schema_file(path))
    expected = struct.pack("<Q", rabin64(canonical.encode()))
    record = AlertSubmitted(alert_id="a-3", origin="IQ-NAB", submitted_at=utcnow(), alert=sample_alert())
    assert codec.encode(record)[2:10] == expected
    assert "__fastavro_parsed" not in canonical


def test_the_reference_fingerprint_matches_the_specifications_vector() -> None:
    """The transcribed algorithm gives the fingerprint Avro's own test data lists for the schema "null"."""
    assert rabin64(b'"null"') == 7195948357588979594


def test_the_header_is_the_fingerprint_little_endian_as_java_writes_it() -> None:
    """A record is byte for byte what Java's BinaryMessageEncoder writes: C3 01, the 64-bit fingerprint in
    little-endian order, the body; and the codec reads what Java wrote."""
    probe = Codec({"rctc.Probe": PROBE_SCHEMA})
    canonical = fastavro.schema.to_parsing_canonical_form(PROBE_SCHEMA)
    assert struct.pack("<q", JAVA_PROBE_FINGERPRINT64) == struct.pack("<Q", rabin64(canonical.encode()))
    assert struct.pack("<q", JAVA_PROBE_FINGERPRINT64) == fingerprint(PROBE_SCHEMA)
    assert probe.encode(Probe(id="a-1", n=42)) == JAVA_PROBE_RECORD
    assert Probe(id="a-1", n=42) == probe.decode(JAVA_PROBE_RECORD, Probe)


def test_every_schema_is_named_by_its_specification_fingerprint(codec: Codec) -> None:
    """For every current and superseded schema, the header holds the reference fingerprint, little-endian."""
    paths = [*SCHEMA_DIR.glob("rctc.*.avsc"), *(SCHEMA_DIR / "history").glob("*.avsc")]
    for path in paths:
        schema = load_schema_file(path)
        canonical = fastavro.schema.to_parsing_canonical_form(schema)
        assert struct.pack("<Q", rabin64(canonical.encode())) == fingerprint(schema), path.name


def test_records_written_with_the_reversed_fingerprint_still_read(codec: Codec) -> None:
    """What the codec wrote before issue 14 (the fingerprint's bytes reversed) decodes as the same record, for
    the current schemas and the superseded ones alike; the codec itself writes only the specification's order."""
    record = AlertSubmitted(alert_id="a-4", origin="IQ-NAB", submitted_at=utcnow(), alert=sample_alert())
    data = codec.encode(record)
    assert data[2:10] == fingerprint(codec.schema_for(AlertSubmitted))
    old_order = MAGIC + legacy_fingerprint(codec.schema_for(AlertSubmitted)) + data[10:]
    assert old_order != data
    assert record == codec.decode(old_order, AlertSubmitted)
    # A superseded schema's old-order records: the next test reads a real one both ways.
    old = load_schema_file(SCHEMA_DIR / "history" / "rctc.RegistryPublished.066759a7c3bd2490.avsc")
    assert legacy_fingerprint(old).hex() == "9024bdc3a7596706"  # what the file was named by before


def test_any_avro_library_reads_the_body(codec: Codec) -> None:
    """After the 10-byte header the body is plain Avro binary that a generic reader decodes with the schema."""
    record = AlertRejected(alert_id="a-2", origin="JO-TAC", stage="enricher", reason="expired", rejected_at=utcnow())
    data = codec.encode(record)
    body = fastavro.schemaless_reader(io.BytesIO(data[10:]), codec.schema_for(AlertRejected), None)
    assert body["reason"] == "expired"


def test_older_writer_schema_is_read_with_the_newer_one(codec: Codec) -> None:
    """A record written before `extracted_indicators` and `watchlist_hits` existed decodes with their defaults."""
    current = codec.schema_for(AlertEnriched)
    old = copy.deepcopy(current)
    old["fields"] = [f for f in old["fields"] if f["name"] not in ("extracted_indicators", "watchlist_hits")]
    new_codec = Codec({"rctc.AlertEnriched": current}, older=[old])
    now = utcnow()
    # What a producer built before the fields were added wrote: the old schema, and no such fields.
    value = msgspec.to_builtins(
        AlertEnriched(
            alert_id="a-3", origin="IQ-NAB", submitted_at=now, enriched_at=now, priority=2, alert=sample_alert()
        ),
        builtin_types=(datetime,),
    )
    del value["extracted_indicators"], value["watchlist_hits"]
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(old), value)
    written = MAGIC + fingerprint(old) + body.getvalue()
    assert fingerprint(old) != fingerprint(current)
    read = new_codec.decode(written, AlertEnriched)
    assert (read.priority, read.extracted_indicators, read.watchlist_hits) == (2, 0, [])


def test_unknown_writer_schema_is_refused_with_its_fingerprint(codec: Codec) -> None:
    """A record from a schema nobody registered is refused, naming the fingerprint, never misread."""
    data = codec.encode(AlertRejected(alert_id="a", origin="o", stage="s", reason="r", rejected_at=utcnow()))
    forged = MAGIC + struct.pack("<Q", 0xDEADBEEF) + data[10:]
    with pytest.raises(UnknownSchemaError) as caught:
        codec.decode(forged, AlertRejected)
    assert caught.value.fingerprint.hex() in str(caught.value)


def test_wrong_record_type_and_garbage_are_refused(codec: Codec) -> None:
    """Decoding as the wrong type, or bytes that are not single-object encoded, is a CodecError."""
    data = codec.encode(AlertRejected(alert_id="a", origin="o", stage="s", reason="r", rejected_at=utcnow()))
    with pytest.raises(CodecError, match=r"expected rctc\.AlertSubmitted"):
        codec.decode(data, AlertSubmitted)
    with pytest.raises(CodecError, match="not an Avro single-object"):
        codec.decode(b'{"json": true}', AlertSubmitted)
    with pytest.raises(CodecError, match="corrupt"):
        codec.decode(data[:12], AlertRejected)


def test_every_record_type_has_a_schema(codec: Codec) -> None:
    """Every record class on a topic has its schema in services/common/schemas/ (the class name is the record name)."""
    from services.cli.tail import AGENCY_RECORD_TYPES, RECORD_TYPES

    for kind in {*RECORD_TYPES.values(), *AGENCY_RECORD_TYPES.values()}:
        assert codec.schema_for(kind)["name"] == f"rctc.{kind.__name__}"


def test_a_record_encoded_in_parts_is_the_record_encoded_whole(codec: Codec) -> None:
    at = utcnow()
    record = AlertEnriched(
        alert_id="a-1", origin="IQ-A", submitted_at=at, enriched_at=at, priority=1, alert=sample_alert()
    )
    last = codec.encode_last(AlertEnriched, record.alert)
    assert codec.encode(record, last=last) == codec.encode(record)
    # The part is only the last field: another record's own fields come before it.
    other = msgspec.structs.replace(record, alert_id="a-2", priority=3)
    assert codec.decode(codec.encode(other, last=last), AlertEnriched) == other
    with pytest.raises(CodecError, match="does not end with a record"):
        codec.encode(AlertRejected(alert_id="a", origin="o", stage="s", reason="r", rejected_at=at), last=b"")
    assert AlertShared.__struct_fields__[-1] == "alert"  # the router relies on it (services/router/payload.py)


def test_every_superseded_schema_in_history_still_reads_into_the_current_type(codec: Codec) -> None:
    """Records written before a schema changed (a broker's retained topics, `make run`'s own data) stay
    readable: each file in services/common/schemas/history/ is named by its fingerprint, the codec knows it as a
    writer, and Avro resolves what it wrote to the current schema (new fields take their defaults)."""
    history = sorted((SCHEMA_DIR / "history").glob("*.avsc"))
    assert history  # the schemas that changed since the record types were first written
    for path in history:
        old = load_schema_file(path)
        name = str(old["name"]).removeprefix("rctc.")
        assert path.name == f"rctc.{name}.{fingerprint(old).hex()}.avsc"
        kind = RegistryPublished if name == "RegistryPublished" else getattr(records, name)
        current = codec.schema_for(kind)
        assert fingerprint(old) != fingerprint(current), f"{path.name} is the current schema"
        for value in fastavro.utils.generate_many(old, 20):
            body = io.BytesIO()
            fastavro.schemaless_writer(body, fastavro.parse_schema(old), value)
            resolved = fastavro.schemaless_reader(io.BytesIO(body.getvalue()), old, current)
            assert {f["name"] for f in current["fields"]} <= set(resolved)
            # Random strings are no valid enum values of our types, so only this is asked of the codec here:
            # that it knows the writer (the test below reads a real record through it).
            try:
                codec.decode(MAGIC + fingerprint(old) + body.getvalue(), kind)
            except CodecError as exc:
                assert not isinstance(exc, UnknownSchemaError), str(exc)


def written_by(schema: Any, value: Any) -> Any:
    """`value` cut to what `schema` has a place for (record fields, recursively): what an older writer wrote."""
    if isinstance(schema, list):  # a union: the branch that fits (our unions are null and one other)
        return None if value is None else written_by(next(b for b in schema if b != "null"), value)
    if isinstance(schema, dict) and schema.get("type") == "record":
        return {f["name"]: written_by(f["type"], value[f["name"]]) for f in schema["fields"] if f["name"] in value}
    if isinstance(schema, dict) and schema.get("type") == "array":
        return [written_by(schema["items"], v) for v in value]
    if isinstance(schema, dict) and schema.get("type") == "map":
        return {k: written_by(schema["values"], v) for k, v in value.items()}
    return value


def old_snapshot(codec: Codec, fp: str) -> tuple[bytes, dict[str, Any]]:
    """The demo registry as the RegistryPublished schema `fp` in services/common/schemas/history/ wrote it, and its
    value."""
    old = load_schema_file(SCHEMA_DIR / "history" / f"rctc.RegistryPublished.{fp}.avsc")
    doc = load_registry(ROOT / "deploy" / "registry" / "demo.yaml")
    # Agencies and operators as the file states them: token hashes and secrets, which old schemas published.
    value = {
        "version": 1,
        "sha256": "0" * 64,
        "published_at": utcnow(),
        "published_by": "test",
        "source": "demo.yaml",
        "regions": doc.regions,
        **msgspec.to_builtins(
            {"agencies": doc.agencies, "operators": doc.operators, "agreements": doc.agreements},
            builtin_types=(datetime,),
        ),
    }
    value = written_by(old, value)
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(old), value)
    return MAGIC + fingerprint(old) + body.getvalue(), value


def test_a_registry_snapshot_from_before_agreement_areas_reads_with_their_defaults(codec: Codec) -> None:
    """The snapshot on `registry.config` that `make run` could no longer read once the schema gained
    `countries` and `ack_deadlines` (its data directory kept it): they now read as empty."""
    data, value = old_snapshot(codec, "066759a7c3bd2490")
    old = load_schema_file(SCHEMA_DIR / "history" / "rctc.RegistryPublished.066759a7c3bd2490.avsc")
    for written in (data, MAGIC + legacy_fingerprint(old) + data[10:]):  # as written since issue 14, and before
        read = codec.decode(written, RegistryPublished)
        assert [a.id for a in read.agreements] == [a["id"] for a in value["agreements"]]
        assert all(a.countries == [] and a.ack_deadlines == {} for a in read.agreements)


def test_a_registry_snapshot_that_carried_secrets_reads_without_them(codec: Codec) -> None:
    """A snapshot written while registry.config still carried token hashes and whsec_ secrets stays readable,
    and what it reads into holds neither: re-encoded, shown (`rctc registry show`) or indexed, none appears."""
    data, value = old_snapshot(codec, "fff4f6d575d50990")
    secrets = [s for a in value["agencies"] if a["webhook"] for s in a["webhook"]["secrets"]]
    hashes = [h for owner in (*value["agencies"], *value["operators"]) for h in owner["token_sha256"]]
    assert secrets and hashes and all(s.encode() in data for s in secrets)  # the old record does hold them
    read = codec.decode(data, RegistryPublished)
    assert [a.code for a in read.agencies] == [a["code"] for a in value["agencies"]]
    assert [a.webhook.url if a.webhook else None for a in read.agencies] == [
        a["webhook"]["url"] if a["webhook"] else None for a in value["agencies"]
    ]
    for shown in (codec.encode(read), msgspec.json.encode(read)):
        assert b"whsec_" not in shown
        assert [h for h in hashes if h.encode() in shown] == []


def test_a_changed_schema_leaves_its_previous_version_in_history(codec: Codec) -> None:
    """services/common/schemas/FINGERPRINTS pins every record type's current schema: changing one fails here until
    its previous version is kept in history/ beside it and the new fingerprint listed (records already on the topics
    were written with the old one)."""
    listed = dict(
        line.split()
        for line in (SCHEMA_DIR / "FINGERPRINTS").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    current = codec.fingerprints()
    assert set(listed) == set(current), "a record type was added or removed: list it in FINGERPRINTS"
    changed = sorted(name for name in current if current[name] != listed[name])
    assert not changed, (
        f"{changed} changed: keep each previous version as services/common/schemas/history/<record>.<listed "
        "fingerprint>.avsc (git show HEAD:services/common/schemas/<record>.avsc), then list the new fingerprint in "
        "services/common/schemas/FINGERPRINTS"
    )


def test_a_named_type_used_twice_in_one_record_is_defined_once() -> None:
    """AlertCorrelated's `a` and `b` share the type CorrelatedAlert: the loaded schema defines it at its first
    use and names it after, as the file and Avro's canonical form do, and records round-trip."""
    from services.common.records import AlertCorrelated, CorrelatedAlert

    schema = load_schema_file(SCHEMA_DIR / "rctc.AlertCorrelated.avsc")
    canonical = fastavro.schema.to_parsing_canonical_form(schema)
    assert canonical.count('"name":"rctc.CorrelatedAlert"') == 1
    assert '{"name":"b","type":"rctc.CorrelatedAlert"}' in canonical
    side = CorrelatedAlert(alert_id="a-1", thread_id="a-1", origin="IQ-A", fields=["indicators"])
    record = AlertCorrelated(
        correlation_id="c-1", kind="phone", value="+1555", a=side, b=side, found_at=utcnow(), candidates=["x"]
    )
    codec = Codec.from_directory()
    assert record == codec.decode(codec.encode(record), AlertCorrelated)
