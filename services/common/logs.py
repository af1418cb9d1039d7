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

import structlog

from services.common.settings import LogSettings


def configure_logging(settings: LogSettings, service: str) -> None:
    """Configure structlog and the standard library's root logger. Call once at start-up."""
    level = getattr(logging, settings.level.upper())
    as_json = settings.format == "json" or (settings.format == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_service(service),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(), sort_keys=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    final: list[Any] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        structlog.processors.format_exc_info if as_json else _identity,
        renderer,
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=final,
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
    def processor(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        event.setdefault("service", service)
        return event

    return processor


def _identity(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    return event


def get_logger(name: str) -> Any:
    return structlog.stdlib.get_logger(name)
