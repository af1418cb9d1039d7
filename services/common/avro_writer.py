"""Avro binary writers compiled from our schemas, reading msgspec records' attributes directly.

fastavro's writer interprets the schema on every call: a type dispatch per value and, for every union, a
validation of each branch against the value. That is about half a microsecond a field, 51 us for one
routing decision of eleven agencies, and encoding was over a third of the router's CPU (bench/). The
writers here are Python functions generated once per schema, so a field costs what writing its bytes
costs; for every record type the codec writes them, they give fastavro's bytes exactly
(tests/unit/test_avro_writer.py holds them to it, on samples and generated records).

Only what our schemas use is compiled: records, enums, arrays, maps, unions of null and one other type,
the primitive types and timestamp-millis. `compile_writer` returns None for a schema with anything else,
and the codec keeps fastavro for it.
"""

from __future__ import annotations

import keyword
import struct
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec

Writer = Callable[[Any, bytearray], None]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Unsupported(Exception):
    """The schema uses something this module does not compile."""


def _long(out: bytearray, n: int) -> None:
    n = (n << 1) ^ (n >> 63)  # zig-zag
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _checked_long(out: bytearray, n: int) -> None:
    if not -(1 << 63) <= n < 1 << 63:
        raise OverflowError(f"{n} does not fit an Avro long")
    _long(out, n)


def _str(out: bytearray, s: str) -> None:
    b = s.encode()
    _long(out, len(b))
    out += b


def _bytes(out: bytearray, b: bytes) -> None:
    _long(out, len(b))
    out += b


def _millis(value: datetime | int) -> int:
    """fastavro's conversion of a datetime to timestamp-millis, to the same rounding."""
    if not isinstance(value, datetime):
        return value
    if value.tzinfo is not None:
        delta = value - _EPOCH
        return (delta.days * 24 * 3600 + delta.seconds) * 1000 + int(delta.microseconds / 1000)
    return int(time.mktime(value.timetuple())) * 1000 + int(value.microsecond / 1000)


_RUNTIME: dict[str, Any] = {
    "datetime": datetime,
    "_Struct": msgspec.Struct,
    "_long": _long,
    "_checked_long": _checked_long,
    "_str": _str,
    "_bytes": _bytes,
    "_millis": _millis,
    "_double": struct.Struct("<d").pack,
    "_float": struct.Struct("<f").pack,
}


class _Compiler:
    def __init__(self) -> None:
        self.functions: dict[str, list[str]] = {}  # record name -> source lines of its writer
        self.constants: dict[str, Any] = {}
        self.named: dict[str, Any] = {}  # full name -> schema, for later references by name
        self._names = 0

    def fresh(self, prefix: str) -> str:
        self._names += 1
        return f"{prefix}{self._names}"

    def record(self, schema: dict[str, Any]) -> str:
        """The name of the function writing this record (compiled once per record name)."""
        self.named[schema["name"]] = schema
        fn = "w_" + "".join(c if c.isalnum() else "_" for c in schema["name"])
        if fn in self.functions:
            return fn
        self.functions[fn] = []  # recursion guard; filled below
        lines = [f"def {fn}(r, out):"]
        for field in schema["fields"]:
            if keyword.iskeyword(field["name"]) or not field["name"].isidentifier():
                # The record class names it otherwise (msgspec's rename, e.g. `from_`): fastavro writes it.
                raise Unsupported(f"field name {field['name']}")
            value = self.fresh("v")
            lines.append(f"    {value} = r.{field['name']}")
            lines += self.value(field["type"], value, "    ")
        if len(lines) == 1:
            lines.append("    pass")
        self.functions[fn] = lines
        return fn

    def value(self, schema: Any, v: str, indent: str) -> list[str]:
        """Source lines writing the value held in variable `v`."""
        if isinstance(schema, list):
            return self.union(schema, v, indent)
        if isinstance(schema, str) and schema in self.named:
            schema = self.named[schema]
        kind = schema if isinstance(schema, str) else schema["type"]
        if kind in ("record", "enum"):
            self.named[schema["name"]] = schema
        logical = None if isinstance(schema, str) else schema.get("logicalType")
        if logical == "timestamp-millis" and kind == "long":
            return [f"{indent}_long(out, _millis({v}))"]
        if logical is not None:
            raise Unsupported(f"logical type {logical}")
        if kind in ("long", "int"):
            # Outside a union fastavro writes an int field as a long, whatever its size.
            return [f"{indent}_checked_long(out, {v})"]
        if kind == "string":
            # Inline, with the one-byte length of short strings (zig-zag 2n < 128) written directly: most
            # of a record's fields are short strings.
            data = self.fresh("b")
            return [
                f"{indent}{data} = {v}.encode()",
                f"{indent}if len({data}) < 64:",
                f"{indent}    out.append(len({data}) << 1)",
                f"{indent}else:",
                f"{indent}    _long(out, len({data}))",
                f"{indent}out += {data}",
            ]
        if kind == "bytes":
            return [f"{indent}_bytes(out, {v})"]
        if kind == "boolean":
            return [f"{indent}out.append(1 if {v} else 0)"]
        if kind == "double":
            return [f"{indent}out += _double({v})"]
        if kind == "float":
            return [f"{indent}out += _float({v})"]
        if kind == "null":
            return [f"{indent}pass"]
        if kind == "enum":
            table = self.fresh("E")
            self.constants[table] = {s: _encoded_long(i) for i, s in enumerate(schema["symbols"])}
            return [f"{indent}out += {table}[{v}]"]
        if kind == "record":
            return [f"{indent}{self.record(schema)}({v}, out)"]
        if kind in ("array", "map"):
            item = self.fresh("i")
            if kind == "array":
                head = f"{indent}    for {item} in {v}:"
                body = self.value(schema["items"], item, indent + "        ")
            else:
                key = self.fresh("k")
                head = f"{indent}    for {key}, {item} in {v}.items():"
                body = [f"{indent}        _str(out, {key})", *self.value(schema["values"], item, indent + "        ")]
            # One block with the count, then the items, then the empty block that ends it (as fastavro).
            return [f"{indent}if {v}:", f"{indent}    _long(out, len({v}))", head, *body, f"{indent}out.append(0)"]
        raise Unsupported(f"type {kind}")

    def union(self, branches: list[Any], v: str, indent: str) -> list[str]:
        if len(branches) != 2 or branches[0] != "null":
            raise Unsupported(f"union {branches}")
        branch = self.named.get(branches[1], branches[1]) if isinstance(branches[1], str) else branches[1]
        # Branch 0 (null) is the zig-zag long 0; branch 1 is 2. fastavro picks a branch by validating the
        # value against it, so a value the branch does not accept is refused here too (and fastavro says why).
        return [
            f"{indent}if {v} is None:",
            f"{indent}    out.append(0)",
            f"{indent}elif {self.accepts(branch, v)}:",
            f"{indent}    out.append(2)",
            *self.value(branch, v, indent + "    "),
            f"{indent}else:",
            f"{indent}    raise TypeError('no branch of the union takes ' + repr({v}))",
        ]

    def accepts(self, schema: Any, v: str) -> str:
        """A Python expression: does the union branch `schema` take the value in `v` (fastavro's validation)?"""
        kind = schema if isinstance(schema, str) else schema["type"]
        logical = None if isinstance(schema, str) else schema.get("logicalType")
        not_bool = f"type({v}) is not bool"
        if logical == "timestamp-millis":
            return f"(isinstance({v}, datetime) or (isinstance({v}, int) and {not_bool}))"
        checks = {
            "string": f"isinstance({v}, str)",
            "bytes": f"isinstance({v}, (bytes, bytearray))",
            "boolean": f"isinstance({v}, bool)",
            "int": f"(isinstance({v}, int) and {not_bool} and -2147483648 <= {v} <= 2147483647)",
            "long": f"(isinstance({v}, int) and {not_bool})",
            "double": f"(isinstance({v}, (int, float)) and {not_bool})",
            "float": f"(isinstance({v}, (int, float)) and {not_bool})",
            "enum": f"{v} in {tuple(schema['symbols']) if kind == 'enum' else ()!r}",
            "array": f"isinstance({v}, (list, tuple))",
            "map": f"isinstance({v}, dict)",
            # The compiled writers write msgspec records (fastavro, given builtins, takes a dict).
            "record": f"isinstance({v}, _Struct)",
        }
        if kind not in checks:
            raise Unsupported(f"union branch {kind}")
        return checks[kind]


def _encoded_long(n: int) -> bytes:
    out = bytearray()
    _long(out, n)
    return bytes(out)


def compile_writer(schema: dict[str, Any]) -> Writer | None:
    """A function writing a record of this (fastavro-parsed, expanded) schema from a msgspec record's
    attributes into a bytearray, or None if the schema uses something not compiled here."""
    compiler = _Compiler()
    try:
        entry = compiler.record(schema)
    except Unsupported:
        return None
    source = "\n\n".join("\n".join(lines) for lines in compiler.functions.values())
    namespace: dict[str, Any] = {**_RUNTIME, **compiler.constants}
    # Source generated from our own schema files, never from input.
    exec(compile(source, f"<avro writer {schema['name']}>", "exec"), namespace)
    writer: Writer = namespace[entry]
    return writer
