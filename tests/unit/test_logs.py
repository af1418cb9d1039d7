"""The services' log lines (services/common/logs.py): one JSON object per line on stderr, from the services' own
loggers and from the libraries' `logging` alike, with the level, the logger, the service and the bound context;
nothing below the level; and no value can make a log call raise. Each case runs in a fresh interpreter, since
configuring logging is process-wide."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import logging, pathlib, structlog
from services.common.logs import configure_logging, get_logger
from services.common.settings import LogSettings

log = get_logger("rctc.example")  # at import time, before configure_logging, as every module does
configure_logging(LogSettings(level="info", format="json"), "example")
structlog.contextvars.bind_contextvars(alert_id="a-1")
log.debug("hidden.debug")
log.info("shown.info", n=1, odd={"exc": ValueError("boom"), "path": pathlib.Path("/x"), (1, 2): {3}}, raw=b"ab")
try:
    1 / 0
except ZeroDivisionError:
    log.exception("shown.failure")
logging.getLogger("aiokafka.conn").warning("library %s", "line")
logging.getLogger("aiokafka.conn").info("hidden library info")
"""


def lines() -> list[dict[str, object]]:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True)
    return [json.loads(line) for line in done.stderr.splitlines()]


def test_one_json_object_a_line_with_level_logger_service_and_context_and_nothing_below_the_level() -> None:
    found = lines()
    assert [line["event"] for line in found] == ["shown.info", "shown.failure", "library line"]
    for line, (level, logger) in zip(
        found, [("info", "rctc.example"), ("error", "rctc.example"), ("warning", "aiokafka.conn")], strict=True
    ):
        assert (line["level"], line["logger"], line["service"], line["alert_id"]) == (level, logger, "example", "a-1")
        assert str(line["timestamp"]).endswith("Z")
    assert "ZeroDivisionError" in str(found[1]["exception"])


def test_values_json_cannot_hold_are_written_as_text_not_raised() -> None:
    info = lines()[0]
    assert info["n"] == 1
    assert "boom" in json.dumps(info["odd"]) and "/x" in json.dumps(info["odd"])
