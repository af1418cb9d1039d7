"""structlog, configured once for every service.

JSON lines off a terminal (what log shippers want), a readable console on one. Context bound with
`structlog.contextvars` (alert_id, agency, topic, partition, offset, trace_id) appears on every line logged
while handling that record. The standard library's logging (aiokafka, aiohttp) goes through the same
processors so the output is one stream with one format.

Event names are stable (`alert.routed`, `delivery.failed`): operators grep and alert on them.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import msgspec
import structlog
from structlog.typing import EventDict

from services.common.settings import LogSettings


def configure_logging(settings: LogSettings, service: str) -> None:
    """Configure structlog and the standard library's root logger. Call once at start-up.

    The services' own lines take structlog's native path, not the standard library's: a call below the level
    is a no-op method of the bound logger (0.3 us, where a filtered stdlib call cost 12 us), and a line at
    the level is rendered by msgspec and written as bytes to stderr (10 us, where the stdlib path with its
    LogRecord, handler and formatter cost 79 us). At one canonical line per unit of work, that was about a
    millisecond of CPU per alert across the services (issue 19; docs/performance.md). The libraries'
    records (aiokafka, aiohttp) still go through logging, rendered by the same processors into the same
    stream, so the output is one format either way."""
    level = getattr(logging, settings.level.upper())
    as_json = settings.format == "json" or (settings.format == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_service(service),
    ]
    renderer: Any
    factory: Any
    if as_json:
        renderer = structlog.processors.JSONRenderer(serializer=_json_bytes)
        factory = _named(lambda: structlog.BytesLogger(sys.stderr.buffer))
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(), sort_keys=False)
        factory = _named(lambda: structlog.WriteLogger(sys.stderr))
    structlog.configure(
        processors=[
            *shared,
            _add_logger_name,
            structlog.processors.format_exc_info if as_json else _identity,
            renderer,
        ],
        logger_factory=factory,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if as_json else _identity,
            structlog.processors.JSONRenderer(serializer=_json_text) if as_json else renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(_demote_transient_kafka_errors)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka logs every coordinator hiccup at INFO/WARNING; keep its warnings, drop its chatter.
    logging.getLogger("aiokafka").setLevel(max(level, logging.WARNING))
    logging.getLogger("aiohttp.access").setLevel(max(level, logging.WARNING))


def _named(make: Any) -> Any:
    """A logger factory whose loggers carry the name `get_logger` was given, for `_add_logger_name`."""

    def factory(*args: Any) -> Any:
        logger = make()
        logger.name = args[0] if args else None
        return logger

    return factory


def _add_logger_name(logger: Any, _: str, event: EventDict) -> EventDict:
    event["logger"] = logger.name
    return event


# What msgspec cannot encode (an exception object, a path, a type, a tuple as a key), at any depth, as its str():
# a log call never raises for the values it is given (tests/unit/test_logs.py).
_ENCODER = msgspec.json.Encoder(enc_hook=str)


def _json_bytes(event: EventDict, **_: Any) -> bytes:
    return _ENCODER.encode(event)


def _json_text(event: EventDict, **_: Any) -> str:
    """The same line for the standard library's handler, which writes text."""
    return _ENCODER.encode(event).decode()


# aiokafka logs these at ERROR although it retries them itself: they are expected while a broker starts or
# moves a coordinator, and an ERROR line that needs no action trains operators to ignore ERROR lines.
_TRANSIENT = ("GroupCoordinatorNotAvailableError", "NotCoordinatorForGroupError", "CoordinatorLoadInProgressError")


def _demote_transient_kafka_errors(record: logging.LogRecord) -> bool:
    if record.levelno == logging.ERROR and record.name.startswith("aiokafka"):
        message = record.getMessage()
        if any(name in message for name in _TRANSIENT):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
    return True


def _add_service(service: str) -> Any:
    def processor(_: Any, __: str, event: EventDict) -> EventDict:
        event.setdefault("service", service)
        return event

    return processor


def _identity(_: Any, __: str, event: EventDict) -> EventDict:
    return event


def get_logger(name: str) -> Any:
    """The logger of a module; its lines carry `logger: name`, as the standard library's carry theirs."""
    return structlog.get_logger(name)
