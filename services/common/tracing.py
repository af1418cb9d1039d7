"""W3C Trace Context (`traceparent`) on Kafka headers, so one alert can be followed through every service.

The gateway starts a trace per submission; every service continues it on what it produces and binds the
trace id to its log lines. No tracing backend is required: the id in the logs is already useful, and an
OpenTelemetry exporter can be added later without changing the headers.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

HEADER = "traceparent"
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")

Headers = Sequence[tuple[str, bytes]]


def _random_hex(bits: int) -> str:
    # Unique, not secret (W3C Trace Context): the process's PRNG, not a system call per span.
    return f"{random.getrandbits(bits) or 1:0{bits // 4}x}"


def new_traceparent() -> str:
    return f"00-{_random_hex(128)}-{_random_hex(64)}-01"


def child_of(parent: str | None) -> str:
    """A new span in the same trace, or a new trace when the parent is missing or malformed."""
    match = _TRACEPARENT.match(parent or "")
    if not match:
        return new_traceparent()
    return f"00-{match.group(1)}-{_random_hex(64)}-{match.group(3)}"


def trace_id(traceparent: str | None) -> str | None:
    match = _TRACEPARENT.match(traceparent or "")
    return match.group(1) if match else None


def from_headers(headers: Headers | None) -> str | None:
    for key, value in headers or ():
        if key == HEADER:
            return value.decode("ascii", "replace")
    return None


def headers_for(traceparent: str) -> list[tuple[str, bytes]]:
    return [(HEADER, traceparent.encode("ascii"))]
