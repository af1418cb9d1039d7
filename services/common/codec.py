"""Avro single-object encoding for every record on Kafka.

A record on the wire is `C3 01`, the 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema's
parsing canonical form, then the Avro binary body (Avro specification, "Single-object encoding"). Any Avro
library can decode it given the schema (Java's `BinaryMessageDecoder` does: tests/integration/
test_agency_java_reader.py); a reader resolves an older writer schema to its own with the usual Avro rules,
so producers and consumers can be upgraded one at a time.

Until issue 14 the codec wrote the fingerprint's 8 bytes in reverse (big-endian) order, which no other Avro
library finds. It now writes the specification's order and still reads the reversed one, for every writer
schema it knows, with no end date: records so written stay on topics kept forever (`audit.events`,
`alerts.routed`, `deliveries.dead`, `records.quarantine`, which holds other records' raw bytes, and the
compacted `registry.config` and `deliveries.endpoints`) and nothing here rewrites them (docs/agencies.md).

    codec = Codec.from_directory(SCHEMA_DIR)
    data = codec.encode(AlertSubmitted(...))
    record = codec.decode(data, AlertSubmitted)

    # Many records sharing one nested last field (ten recipients' copies of one alert): encode it once.
    part = codec.encode_last(AlertShared, copy)
    data = codec.encode(AlertShared(..., alert=copy), last=part)

The Python class name is the Avro record name (`AlertSubmitted` is `rctc.AlertSubmitted`).
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Iterable, Mapping
from datetime import datetime
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any, TypeVar

import fastavro
import fastavro.schema
import msgspec

from services.common.avro_writer import Writer, compile_writer
from services.common.errors import CodecError, UnknownSchemaError

# Package data (pyproject's package-data), read through importlib.resources: an installed wheel finds its
# schemas wherever it is installed, as the source tree does, with no copy beside the code to keep in step.
SCHEMA_DIR: Traversable = files("services.common") / "schemas"
NAMESPACE = "rctc"
MAGIC = b"\xc3\x01"
# Files that only define types others reference; they are not records of their own on any topic.
LIBRARY_SCHEMAS = ("Alert",)
# The largest record decode accepts: aiokafka's default max_request_size, so no producer of ours writes more.
# A bigger value on a topic was written by someone else, and is refused before it is parsed.
MAX_RECORD_BYTES = 1024 * 1024

T = TypeVar("T", bound=msgspec.Struct)
Schema = dict[str, Any]


def fingerprint(schema: Schema) -> bytes:
    """The 8 bytes naming `schema` in a single-object encoded record: the CRC-64-AVRO (Rabin) fingerprint of
    its parsing canonical form, little-endian, as the specification says and Java's `BinaryMessageEncoder`
    writes. fastavro's hex string is these bytes in this order already (not the 64-bit value in hex)."""
    canonical = fastavro.schema.to_parsing_canonical_form(schema)
    return bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))


def legacy_fingerprint(schema: Schema) -> bytes:
    """The fingerprint in the byte order the codec wrote before issue 14 (reversed: big-endian), which it
    still reads (module docstring)."""
    return fingerprint(schema)[::-1]


def schema_files(directory: Traversable, prefix: str = f"{NAMESPACE}.") -> list[Traversable]:
    """The `.avsc` files in `directory` whose names start with `prefix`, by name (a Traversable has no glob)."""
    found = [path for path in directory.iterdir() if path.name.startswith(prefix) and path.name.endswith(".avsc")]
    return sorted(found, key=lambda path: path.name)


def load_schema_file(path: Traversable, schema_dir: Traversable = SCHEMA_DIR) -> Schema:
    """Load one .avsc with the library types it references (rctc.Alert's enums and records) expanded."""
    named: dict[str, Schema] = {}
    for name in LIBRARY_SCHEMAS:
        fastavro.parse_schema(json.loads((schema_dir / f"{NAMESPACE}.{name}.avsc").read_text("utf-8")), named)
    schema = json.loads(path.read_text("utf-8"))
    # Expanding writes out every named type where it is used; a type used twice in one record (AlertCorrelated's
    # `a` and `b`) is then defined twice, which no Avro parser accepts: keep its first definition and name it
    # after that, as the file itself and Avro's canonical form do.
    return _parse(_defined_once(_parse(schema, named, expand=True), set()))


def writer_schemas(schema_dir: Traversable = SCHEMA_DIR) -> dict[bytes, Schema]:
    """Every record schema, current and superseded (history/), self-contained (the library types it uses
    written out), by the fingerprint a record names it with: the specification's order, and the reversed
    one written before issue 14. For `GET /v1/schemas/{fingerprint}`, so an agency can decode any record."""
    paths = [
        path
        for path in schema_files(schema_dir)
        if path.name.removesuffix(".avsc").removeprefix(f"{NAMESPACE}.") not in LIBRARY_SCHEMAS
    ]
    found: dict[bytes, Schema] = {}
    for path in [*paths, *schema_files(schema_dir / "history", "")]:
        schema = load_schema_file(path, schema_dir)
        found[fingerprint(schema)] = _unparsed(schema)
    for fp, schema in list(found.items()):
        found.setdefault(fp[::-1], schema)
    return found


class Codec:
    """Encodes records with the current schema of their type; decodes any known writer version."""

    def __init__(
        self, current: Mapping[str, Schema], older: Iterable[Schema] = (), *, max_record_bytes: int = MAX_RECORD_BYTES
    ) -> None:
        self.max_record_bytes = max_record_bytes
        # name -> (parsed schema, fingerprint) for writing and as the reader schema.
        self._current: dict[str, tuple[Schema, bytes]] = {}
        # fingerprint -> (record name, parsed writer schema) for reading.
        self._writers: dict[bytes, tuple[str, Schema]] = {}
        for name, schema in current.items():
            parsed = _parse(schema, hint=True)
            fp = fingerprint(parsed)
            self._current[name] = (parsed, fp)
            self._writers[fp] = (name, parsed)
        for schema in older:
            old = _parse(schema, hint=True)
            self._writers[fingerprint(old)] = (str(old["name"]), old)
        # Records written before issue 14 name the same writers with their fingerprints reversed. A reversed
        # one can never displace a true one (setdefault), so a record in the specification's order always
        # reads as the schema it names.
        for fp, writer in list(self._writers.items()):
            self._writers.setdefault(fp[::-1], writer)
        # name -> (schema of every field but the last, schema of the last field's record type, and the bytes
        # before that record: none, or the branch index when the field is a union of null and the record):
        # see encode(last=).
        self._split: dict[str, tuple[Schema, Schema, bytes]] = {}
        for name, (parsed, _) in self._current.items():
            fields = parsed["fields"]
            if not fields:
                continue
            last, branch = fields[-1]["type"], b""
            if isinstance(last, list) and len(last) == 2 and last[0] == "null":
                last, branch = last[1], b"\x02"  # branch 1 of the union, as a zig-zag long
            if isinstance(last, dict) and last.get("type") == "record":
                head = _parse({**_unparsed(parsed), "fields": fields[:-1]}, hint=True)
                self._split[name] = (head, _parse(_unparsed(last), hint=True), branch)
        # Compiled writers (avro_writer.py) by schema identity, for the whole records and their parts.
        self._compiled: dict[int, Writer | None] = {}
        for parsed, _ in self._current.values():
            self._compiled[id(parsed)] = compile_writer(parsed)
        for head, last, _ in self._split.values():
            self._compiled[id(head)], self._compiled[id(last)] = compile_writer(head), compile_writer(last)

    @classmethod
    def from_directory(cls, schema_dir: Traversable = SCHEMA_DIR, older: Iterable[Schema] = ()) -> Codec:
        """The current schemas in `schema_dir`, and every superseded one in its `history/` (named
        `<record>.<fingerprint>.avsc`): records written before a schema changed stay readable, resolved to the
        current version, so an upgraded service reads what its predecessor wrote (tests/unit/test_codec.py)."""
        current: dict[str, Schema] = {}
        for path in schema_files(schema_dir):
            name = path.name.removesuffix(".avsc")
            if name.removeprefix(f"{NAMESPACE}.") in LIBRARY_SCHEMAS:
                continue
            current[name] = load_schema_file(path, schema_dir)
        history = [load_schema_file(path, schema_dir) for path in schema_files(schema_dir / "history", "")]
        return cls(current, [*history, *older])

    def schema_for(self, record_type: type[msgspec.Struct]) -> Schema:
        return self._current[f"{NAMESPACE}.{record_type.__name__}"][0]

    def encode(self, record: msgspec.Struct, *, last: bytes | None = None) -> bytes:
        """`record` on the wire. With `last`, its last field is not encoded again: `last` is that field as
        `encode_last` gave it. An Avro record is its fields' encodings one after another, so the result is
        byte for byte what encoding the whole record gives (tests/unit/test_codec.py)."""
        name = f"{NAMESPACE}.{type(record).__name__}"
        try:
            schema, fp = self._current[name]
        except KeyError:
            raise CodecError(f"no schema for {name} in services/common/schemas/") from None
        if last is None:
            return self._write(name, schema, record, MAGIC + fp)
        head = self._split_of(name)[0]
        return self._write(name, head, record, MAGIC + fp, without=schema_last_field(schema)) + last

    def encode_last(self, record_type: type[msgspec.Struct], value: msgspec.Struct) -> bytes:
        """`value` encoded as the last field of a `record_type`, for `encode(..., last=)`: records that share
        it (one alert's copies for several recipients) then encode it once."""
        name = f"{NAMESPACE}.{record_type.__name__}"
        _, last, branch = self._split_of(name)
        return self._write(f"{name}'s last field", last, value, branch)

    def _write(self, name: str, schema: Schema, record: msgspec.Struct, prefix: bytes, without: str = "") -> bytes:
        """`prefix` and the Avro body of `record` (all but its field `without`), by the compiled writer."""
        compiled = self._compiled.get(id(schema))
        if compiled is not None:
            out = bytearray(prefix)
            try:
                compiled(record, out)
                return bytes(out)
            except (AttributeError, TypeError, KeyError, ValueError, OverflowError, struct.error):
                pass  # fastavro decides: it writes a missing field's default, or says what does not fit
        value = _to_avro(record)
        if without:
            del value[without]
        stream = io.BytesIO()
        stream.write(prefix)
        try:
            fastavro.schemaless_writer(stream, schema, value, strict_allow_default=True)
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            raise CodecError(f"{name} does not fit its schema: {exc}") from exc
        return stream.getvalue()

    def _split_of(self, name: str) -> tuple[Schema, Schema, bytes]:
        try:
            return self._split[name]
        except KeyError:
            raise CodecError(f"{name} does not end with a record field: it cannot be encoded in parts") from None

    def decode(self, data: bytes | None, into: type[T]) -> T:
        """The record in `data`, as `into`. Whatever is wrong with `data` (no value, not single-object
        encoded, an unknown or other record's schema, oversized, truncated, bytes left over, a flipped bit
        anywhere), the one exception is `CodecError`: a consumer has a single thing to catch and quarantine
        (services/common/quarantine.py), and nothing else escapes to stop its loop
        (tests/unit/test_codec.py checks it for arbitrary bytes and mutations of valid records)."""
        name = f"{NAMESPACE}.{into.__name__}"
        if data is None:
            raise CodecError(f"no value (a tombstone) where a {name} was expected")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise CodecError(f"expected bytes holding a {name}, got {type(data).__name__}")
        if len(data) > self.max_record_bytes:
            # Refused before any parsing: no producer of ours can write this much (aiokafka's request cap).
            raise CodecError(f"oversized {name}: {len(data)} bytes, at most {self.max_record_bytes}")
        if len(data) < 10 or data[:2] != MAGIC:
            raise CodecError(f"not an Avro single-object encoded record (expected {name})")
        fp = bytes(data[2:10])
        writer = self._writers.get(fp)
        if writer is None:
            raise UnknownSchemaError(fp)
        writer_name, writer_schema = writer
        if writer_name != name:
            raise CodecError(f"expected {name}, got a record written as {writer_name}")
        reader_schema = self._current[name][0]
        body = memoryview(data)[10:]
        try:
            # A length prefix that a flipped bit made huge cannot allocate it: BytesIO.read returns what
            # there is, and fastavro then refuses the short read. Every item of every array and map in our
            # schemas takes at least one byte, so no count can loop longer than the body is long
            # (tests/unit/test_codec.py checks both).
            stream = io.BytesIO(body)
            value = fastavro.schemaless_reader(stream, writer_schema, reader_schema)
            left = len(body) - stream.tell()
            if left:
                raise CodecError(f"corrupt {name}: {left} bytes after the end of the record")
            return msgspec.convert(value, into, strict=False)
        except CodecError:
            raise
        except Exception as exc:
            # fastavro's failures on bad input are not a documented set (IndexError for an enum or union
            # index out of range, OverflowError for a timestamp past year 9999, EOFError, UnicodeDecodeError,
            # MemoryError, ...), and they differ between its C and Python readers: any of them means this
            # body is not a valid record, which is the record's fault, not the consumer's.
            raise CodecError(f"corrupt {name}: {type(exc).__name__}: {exc}") from exc

    def record_name(self, data: bytes | None) -> str | None:
        """The name (`ReleaseIssued`) of the record type `data` was written as, or None when it names no schema
        known here: for a topic that carries more than one type (alerts.scheduled). `decode` still checks it."""
        if not isinstance(data, bytes | bytearray | memoryview) or len(data) < 10 or data[:2] != MAGIC:
            return None
        writer = self._writers.get(bytes(data[2:10]))
        return writer[0].removeprefix(f"{NAMESPACE}.") if writer is not None else None

    def fingerprints(self) -> dict[str, str]:
        """Current schema fingerprint by record name, for `rctc schemas` and the docs: the hex of the 8 bytes as
        they stand in a record (Java's `parsingFingerprint("CRC-64-AVRO", schema)`, fastavro's `fingerprint`)."""
        return {name: fp.hex() for name, (_, fp) in self._current.items()}


def _parse(
    schema: Schema, named: dict[str, Schema] | None = None, *, expand: bool = False, hint: bool = False
) -> Schema:
    """fastavro's parsed form. With `hint`, it carries fastavro's mark that it is already parsed, without
    which every schemaless_writer/reader call parses it again: that was half the router's CPU (bench/).
    The mark is not part of the parsing canonical form, so fingerprints do not change (tests/unit/test_codec.py)."""
    parsed = fastavro.parse_schema(schema, named, expand=expand, _write_hint=hint)
    assert isinstance(parsed, dict)  # a record schema parses to a dict
    return parsed


def schema_last_field(schema: Schema) -> str:
    return str(schema["fields"][-1]["name"])


def _unparsed(schema: Schema) -> Schema:
    """A parsed (expanded) schema without fastavro's marks, so it can be parsed again on its own."""
    return {k: v for k, v in schema.items() if not k.startswith("__")}


def _defined_once(schema: Any, seen: set[str]) -> Any:
    """`schema` (expanded) with each named type defined at its first use and referred to by name after it."""
    if isinstance(schema, list):
        return [_defined_once(branch, seen) for branch in schema]
    if not isinstance(schema, dict):
        return schema
    plain = {k: v for k, v in schema.items() if not k.startswith("__")}
    if plain.get("type") in ("record", "enum", "fixed"):
        name = str(plain["name"])
        if name in seen:
            return name
        seen.add(name)
    if "fields" in plain:
        plain["fields"] = [{**f, "type": _defined_once(f["type"], seen)} for f in plain["fields"]]
    for key in ("items", "values"):
        if key in plain:
            plain[key] = _defined_once(plain[key], seen)
    if isinstance(plain.get("type"), dict | list):
        plain["type"] = _defined_once(plain["type"], seen)
    return plain


def _to_avro(record: msgspec.Struct) -> Any:
    # Keep datetimes and bytes as they are: fastavro encodes them with the logical types.
    return msgspec.to_builtins(record, builtin_types=(datetime, bytes))
