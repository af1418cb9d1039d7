"""Every error the shared library raises, under one root.

    RctcError
    ├── CodecError                  a record could not be encoded or decoded
    │   └── UnknownSchemaError      its writer schema fingerprint is not one we know
    ├── RegistryError               a registry document is invalid (carries line and field)
    ├── TopicDriftError             the broker's topics differ from services/common/topics.yaml
    ├── ConfigurationError          settings that cannot work (a SASL_SSL client without a principal)
    └── NotReadyError               a dependency (the broker, the registry) is not there yet

Skip, retry-later and dead-letter are outcomes a handler returns, not exceptions (see runner.py).
"""

from __future__ import annotations


class RctcError(Exception):
    """Root of every error raised by RCTC code."""


class CodecError(RctcError):
    """A record could not be encoded to, or decoded from, Avro single-object encoding."""


class UnknownSchemaError(CodecError):
    """The record was written with a schema whose fingerprint this reader does not know."""

    def __init__(self, fingerprint: bytes) -> None:
        self.fingerprint = fingerprint
        super().__init__(
            f"unknown writer schema (CRC-64-AVRO fingerprint {fingerprint.hex()}): "
            "the record was written by a newer or foreign producer, or by a schema changed without keeping its "
            "previous version in services/common/schemas/history/"
        )


class RegistryError(RctcError):
    """A registry document failed validation. `problems` lists (line, field, message)."""

    def __init__(self, source: str, problems: list[tuple[int | None, str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [
            f"{source}:{line if line is not None else '?'}: {field}: {message}" for line, field, message in problems
        ]
        super().__init__("invalid registry\n" + "\n".join(lines))


class TopicDriftError(RctcError):
    """Topics on the broker differ from their declaration in a way apply cannot fix by itself."""


class ConfigurationError(RctcError):
    """The settings given cannot work; the message names the settings to give."""


class NotReadyError(RctcError):
    """A dependency the service needs is not available yet."""
