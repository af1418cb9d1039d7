"""`rctc alerts list`, `rctc acks outstanding` and `rctc lag` as an operator reads them: the table (plain text off a
terminal) and the JSON document, against a small gateway on loopback that answers as the real one does; and the
pieces they are made of (relative times, --since, the progress bar's silence off a terminal). No Kafka."""

from __future__ import annotations

import io
import json
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from services.cli import alerts as alerts_cli
from services.cli.main import main
from services.cli.render import progress, relative, when
from services.common.lag import LagRow
from services.common.ops import bound_port
from services.common.records import utcnow

TOKEN = "operator-token"
ALERT = "5b0c8f3e-2d41-4f6a-9c7e-1a2b3c4d5e6f"
OTHER = "6b0c8f3e-2d41-4f6a-9c7e-1a2b3c4d5e6f"


def listed_alert(alert_id: str, origin: str, routed_at: datetime, awaiting: int, overdue: int) -> dict[str, Any]:
    return {
        "alert_id": alert_id,
        "origin": origin,
        "msg_type": "Alert",
        "severity": "Severe",
        "urgency": "Expected",
        "routed_at": routed_at.isoformat(),
        "registry_version": 3,
        "recipients": {"JO-B": {"agency": "JO-B", "state": "delivered"}, "KW-C": {"agency": "KW-C", "state": "acked"}},
        "awaiting": awaiting,
        "overdue": overdue,
        "escalation_level": overdue,
        "thread_id": alert_id,
    }


class FakeGateway:
    """The gateway's answers to the two paths, from a thread of its own (main() runs its own event loop); `asked`
    is every (path, query) it received."""

    def __init__(self) -> None:
        now = utcnow()
        self.alerts = [
            listed_alert(OTHER, "SY-S", now - timedelta(minutes=3), 1, 1),
            listed_alert(ALERT, "IQ-A", now - timedelta(hours=2), 0, 0),
        ]
        self.owed = [
            {
                "alert_id": OTHER,
                "agency": "JO-B",
                "origin": "SY-S",
                "severity": "Severe",
                "state": "delivered",
                "ack_due": (now + timedelta(minutes=4, seconds=30)).isoformat(),
                "escalation_level": 0,
            }
        ]
        self.asked: list[tuple[str, dict[str, str]]] = []
        self.url = ""

    def app(self) -> web.Application:
        async def answer(request: web.Request) -> web.Response:
            self.asked.append((request.path, dict(request.query)))
            if request.headers.get("Authorization") != f"Bearer {TOKEN}":
                return web.json_response({"error": "forbidden", "message": "only operators list alerts"}, status=403)
            if request.path == "/v1/alerts":
                return web.json_response({"alerts": self.alerts})
            return web.json_response({"outstanding": self.owed})

        app = web.Application()
        app.router.add_get("/v1/alerts", answer)
        app.router.add_get("/v1/acks/outstanding", answer)
        return app


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    import asyncio

    fake = FakeGateway()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(fake.app(), access_log=None)

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        fake.url = f"http://127.0.0.1:{bound_port(runner)}"

    loop.run_until_complete(start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


def test_alerts_list_prints_a_table_with_times_absolute_and_relative(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    """One row per alert, newest first as the gateway gave them, whole ids, counts, and "3m ago" beside the time."""
    code, out, _ = run(capsys, "alerts", "list", "--gateway", gateway.url, "--token", TOKEN)
    lines = out.splitlines()
    header = next(line for line in lines if "alert" in line and "awaiting" in line)
    rows = [line.split() for line in lines if OTHER in line or ALERT in line]
    assert code == 0
    assert header.split() == [
        "routed",
        "alert",
        "origin",
        "type",
        "severity",
        "recipients",
        "awaiting",
        "overdue",
        "escalation",
    ]
    # routed: the ISO time then "(3m ago)", three words; then the id, origin, type, severity and the numbers.
    assert [row[1:] for row in rows] == [
        ["(3m", "ago)", OTHER, "SY-S", "Alert", "Severe", "2", "1", "1", "1"],
        ["(2h", "ago)", ALERT, "IQ-A", "Alert", "Severe", "2", "0", "0", "0"],
    ]
    assert datetime.fromisoformat(rows[0][0]) == datetime.fromisoformat(gateway.alerts[0]["routed_at"]).replace(
        microsecond=0
    )
    assert "2 alerts" in out


def test_alerts_list_json_is_one_document_of_the_alerts_and_the_filters_reach_the_gateway(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json prints exactly the gateway's alerts; --since 2h, --state, --origin and --limit become its query."""
    before = utcnow()
    argv = ["alerts", "list", "--gateway", gateway.url, "--token", TOKEN, "--json", "--since", "2h"]
    code, out, _ = run(capsys, *argv, "--state", "overdue", "--origin", "SY-S", "--limit", "5")
    assert (code, json.loads(out)) == (0, gateway.alerts)
    path, query = gateway.asked[-1]
    since = datetime.fromisoformat(query.pop("since"))
    assert (path, query) == ("/v1/alerts", {"state": "overdue", "origin": "SY-S", "limit": "5"})
    assert before - timedelta(hours=2, seconds=5) <= since <= utcnow() - timedelta(hours=2)


def test_acks_outstanding_table_and_json(gateway: FakeGateway, capsys: pytest.CaptureFixture[str]) -> None:
    """The deadline in ISO and "in 4m"; the agency asked for goes to the gateway; --json is the list as given."""
    code, out, _ = run(capsys, "acks", "outstanding", "--agency", "JO-B", "--gateway", gateway.url, "--token", TOKEN)
    row = next(line.split() for line in out.splitlines() if OTHER in line)
    assert (code, row[1:]) == (0, ["(in", "4m)", "JO-B", OTHER, "SY-S", "Severe", "delivered", "0"])
    assert gateway.asked[-1] == ("/v1/acks/outstanding", {"agency": "JO-B"})
    code, out, _ = run(capsys, "acks", "outstanding", "--gateway", gateway.url, "--token", TOKEN, "--json")
    assert (code, json.loads(out), gateway.asked[-1]) == (0, gateway.owed, ("/v1/acks/outstanding", {}))


def test_a_refusal_is_said_on_stderr_with_exit_1_and_no_token_is_exit_2(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    """An agency's token: the gateway's 403 and its message on stderr, nothing on stdout; no token at all: 2."""
    code, out, err = run(capsys, "alerts", "list", "--gateway", gateway.url, "--token", "agency-token")
    assert (code, out, err.strip()) == (1, "", "rctc: 403: only operators list alerts")
    code, out, err = run(capsys, "alerts", "list", "--gateway", gateway.url, "--token", "")
    assert (code, out, "token is needed" in err) == (2, "", True)


def test_lag_prints_every_row_and_json_gives_them_as_objects(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rctc lag` shows fetch_lag's rows; --json gives each as an object with the LagRow's fields."""
    rows = [
        LagRow("rctc-router", "alerts.enriched", partitions=6, lag=42, committed=1000, end=1042),
        LagRow("rctc-tracker", "alerts.routed", partitions=6, lag=0, committed=900, end=900),
    ]

    async def fake(kafka: Any, *, groups: Any = None) -> list[LagRow]:
        return rows

    monkeypatch.setattr(alerts_cli, "fetch_lag", fake)
    code, out, _ = run(capsys, "lag")
    table_rows = [line.split() for line in out.splitlines() if line.strip().startswith("rctc-")]
    assert (code, table_rows) == (
        0,
        [
            ["rctc-router", "alerts.enriched", "6", "1000", "1042", "42"],
            ["rctc-tracker", "alerts.routed", "6", "900", "900", "0"],
        ],
    )
    code, out, _ = run(capsys, "lag", "--json")
    assert (code, json.loads(out)) == (
        0,
        [
            {
                "group": "rctc-router",
                "topic": "alerts.enriched",
                "partitions": 6,
                "lag": 42,
                "committed": 1000,
                "end": 1042,
            },
            {
                "group": "rctc-tracker",
                "topic": "alerts.routed",
                "partitions": 6,
                "lag": 0,
                "committed": 900,
                "end": 900,
            },
        ],
    )


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (timedelta(0), "now"),
        (timedelta(milliseconds=400), "now"),
        (timedelta(seconds=45), "in 45s"),
        (timedelta(minutes=4, seconds=59), "in 4m"),
        (-timedelta(minutes=3), "3m ago"),
        (-timedelta(hours=26), "1d ago"),
        (timedelta(hours=5), "in 5h"),
    ],
)
def test_relative(offset: timedelta, expected: str) -> None:
    """In the largest whole unit, future "in", past "ago"."""
    now = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    assert relative(now + offset, now) == expected


def test_when_and_since() -> None:
    """A table's time is ISO to the second and relative; --since takes a time ago or an ISO time."""
    now = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    assert when("2026-12-03T10:04:00.123+00:00", now) == "2026-12-03T10:04:00+00:00 (in 4m)"
    assert when(None, now) == "-"
    assert alerts_cli.since_argument("30m", now) == now - timedelta(minutes=30)
    assert alerts_cli.since_argument("7d", now) == now - timedelta(days=7)
    assert alerts_cli.since_argument("2026-12-03T09:00:00Z") == now - timedelta(hours=1)
    with pytest.raises(Exception, match="neither a time ago"):
        alerts_cli.since_argument("yesterday", now)


def test_no_progress_bar_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    """With stderr not a terminal (a pipe, a log), there is no bar to feed and nothing is written."""
    with progress("reading") as step:
        assert step is None
    assert capsys.readouterr() == ("", "")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_progress_bar_on_a_terminal_shows_what_it_was_told(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal the callback feeds a bar on stderr (and nothing goes to stdout); it is gone when done."""
    err, out = Terminal(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(sys, "stdout", out)
    with progress("reading audit.events") as step:
        assert step is not None
        step(0, 40)
        step(25, 40)
    assert ("reading audit.events" in err.getvalue(), "25/40" in err.getvalue(), out.getvalue()) == (True, True, "")
