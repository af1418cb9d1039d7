"""The gateway -> tracker trust boundary over real HTTP: the gateway's handlers in front of the tracker's real
internal API and ledger (no Kafka). Whatever path, query or method a principal sends, it sees no more than
it may, and a caller's text never reaches the tracker."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import msgspec
import pytest
import structlog
from aiohttp import web
from pydantic import SecretStr
from yarl import URL

from services.common.codec import Codec
from services.common.ops import bound_port
from services.common.records import AlertRouted, RoutingDecision
from services.common.registry import Agency, CredentialsView, RegistryDocument, RegistryView
from services.common.registry.model import Operator
from services.gateway.api import GatewayApi
from services.gateway.idempotency import KeyReuseGuard
from services.tracker.api import Answer, InternalApi
from services.tracker.state import Ledger
from tests.support.hostile import tricks
from tests.support.views import loaded_views

ORIGIN, RECIPIENT, STRANGER, OPERATOR = "IQ-A", "JO-B", "SA-C", "desk"
ALERT = "5b0c8f3e-2d41-4f6a-9c7e-1a2b3c4d5e6f"  # IQ-A -> JO-B; SA-C is not permitted
SECRET = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"  # SA-C -> IQ-A only: JO-B must learn nothing of it
TOKEN = SecretStr("internal-" + "x" * 40)
AT = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def token_of(name: str) -> str:
    return f"token-of-{name}"


def routed(alert_id: str, origin: str, recipient: str, refused: str) -> AlertRouted:
    return AlertRouted(
        alert_id=alert_id,
        origin=origin,
        msg_type="Alert",
        severity="Severe",
        urgency="Immediate",
        routed_at=AT,
        registry_version=3,
        decisions=(
            RoutingDecision(
                agency=recipient,
                delivered=True,
                rule="shared",
                reason="agreement G",
                agreement_id="G",
                channels=("kafka",),
                ack_due=AT + timedelta(hours=1),
            ),
            RoutingDecision(agency=refused, delivered=False, rule="no_agreement", reason="none"),
        ),
    )


@dataclass
class Exchange:
    """A gateway in front of a tracker; `calls` is every request the tracker received (method, URL, headers)."""

    url: str
    calls: list[tuple[str, URL, dict[str, str]]] = field(default_factory=list)
    api: GatewayApi | None = None

    async def send(
        self, method: str, raw_path: str, principal: str | None, body: Any = None
    ) -> tuple[int, dict[str, Any], Any]:
        """`raw_path` goes on the wire exactly as written (percent-escapes and all)."""
        headers = {"Authorization": f"Bearer {token_of(principal)}"} if principal else {}
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, URL(self.url + raw_path, encoded=True), json=body, headers=headers) as r,
        ):
            assert r.content_type == "application/json", (raw_path, r.status, await r.text())
            return r.status, await r.json(), r.headers


def registry_views(codec: Codec) -> tuple[RegistryView, CredentialsView]:
    def agency(code: str) -> Agency:
        return Agency(
            code=code, name=code, country=code[:2], token_sha256=[hashlib.sha256(token_of(code).encode()).hexdigest()]
        )

    doc = RegistryDocument(
        agencies=[agency(ORIGIN), agency(RECIPIENT), agency(STRANGER)],
        operators=[Operator(name=OPERATOR, token_sha256=[hashlib.sha256(token_of(OPERATOR).encode()).hexdigest()])],
    )
    registry, credentials, _ = loaded_views(doc, codec)
    return registry, credentials


class Accepts:
    """The outbox of a broker that takes every record (this tests HTTP, not Kafka)."""

    async def send(self, topic: str, key: bytes, record: msgspec.Struct, traceparent: str) -> None:
        pass

    async def flush(self) -> None:
        pass


async def serve(app: web.Application, stack: AsyncExitStack) -> str:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return f"http://127.0.0.1:{bound_port(runner)}"


async def gateway_over(ledger: Ledger, codec: Codec, stack: AsyncExitStack) -> Exchange:
    """A gateway in front of the tracker's internal API over `ledger`, both served until `stack` closes."""

    async def answer(query: Any) -> Answer:
        return query()  # type: ignore[no-any-return]

    tracker_url = await serve(InternalApi(ledger, answer, TOKEN).app(), stack)
    exchange = Exchange(url="")

    async def on_request_start(_: Any, __: Any, params: aiohttp.TraceRequestStartParams) -> None:
        exchange.calls.append((params.method, params.url, dict(params.headers)))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    # As service.py builds it: the session to the tracker carries the internal credential.
    tracker = await stack.enter_async_context(
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN.get_secret_value()}"}, trace_configs=[trace])
    )
    api = GatewayApi(*registry_views(codec), lambda: Accepts(), tracker, tracker_url, KeyReuseGuard(10))  # type: ignore[arg-type, return-value]
    app = web.Application(middlewares=[api.middleware])
    app.add_routes(api.routes())
    exchange.url = await serve(app, stack)
    exchange.api = api
    return exchange


@pytest.fixture
async def exchange(codec: Codec) -> AsyncIterator[Exchange]:
    ledger = Ledger()
    ledger.apply_routed(routed(ALERT, ORIGIN, RECIPIENT, STRANGER))
    ledger.apply_routed(routed(SECRET, STRANGER, ORIGIN, RECIPIENT))
    async with AsyncExitStack() as stack:
        yield await gateway_over(ledger, codec, stack)


ENDPOINTS = [("GET", ""), ("GET", "/routing"), ("POST", "/ack")]


@pytest.mark.parametrize("principal", [ORIGIN, RECIPIENT, STRANGER])
@pytest.mark.parametrize(("method", "suffix"), ENDPOINTS)
async def test_a_path_parameter_not_an_alert_id_is_404_before_any_work(
    exchange: Exchange, principal: str, method: str, suffix: str
) -> None:
    """Every encoded ?, /, .., #, NUL or & in an alert id answers the JSON 404, and the tracker hears nothing."""
    unexpected = {}
    for target in (ALERT, SECRET):
        other, agency = (SECRET, RECIPIENT) if target == ALERT else (ALERT, STRANGER)
        for trick in tricks(target, other, agency):
            body = {"response": "actioned"} if method == "POST" else None
            status, answer, _ = await exchange.send(method, f"/v1/alerts/{trick}{suffix}", principal, body)
            if (status, answer.get("error")) != (404, "not_found"):
                unexpected[trick] = (status, answer)
    assert (unexpected, exchange.calls) == ({}, [])


@pytest.mark.parametrize(
    ("principal", "expected"),
    [
        (ORIGIN, {"": (200, {RECIPIENT}), "/routing": 200}),
        (RECIPIENT, {"": (200, {RECIPIENT}), "/routing": 403}),
        (STRANGER, {"": (404, None), "/routing": 404}),
        (OPERATOR, {"": (200, {RECIPIENT}), "/routing": 200}),
    ],
)
async def test_each_principal_sees_what_it_may(exchange: Exchange, principal: str, expected: dict[str, Any]) -> None:
    """Originator and operators see every recipient and the routing; a recipient its own row; a stranger nothing."""
    status, body, _ = await exchange.send("GET", f"/v1/alerts/{ALERT}", principal)
    routing, _, _ = await exchange.send("GET", f"/v1/alerts/{ALERT}/routing", principal)
    actual = {"": (status, set(body["recipients"]) if status == 200 else None), "/routing": routing}
    assert expected == actual


@pytest.mark.parametrize(("viewer", "hidden"), [(STRANGER, ALERT), (RECIPIENT, SECRET)])
async def test_an_alert_one_may_not_see_answers_as_one_that_does_not_exist(
    exchange: Exchange, viewer: str, hidden: str
) -> None:
    """Status, routing and ack answer a non-recipient exactly as they answer an id that was never routed."""
    missing = str(uuid.uuid4())
    for method, suffix in ENDPOINTS:
        body = {"response": "actioned"} if method == "POST" else None
        seen = await exchange.send(method, f"/v1/alerts/{hidden}{suffix}", viewer, body)
        unknown = await exchange.send(method, f"/v1/alerts/{missing}{suffix}", viewer, body)
        as_hidden = msgspec.json.decode(msgspec.json.encode(unknown[1]).replace(missing.encode(), hidden.encode()))
        assert (unknown[0], as_hidden) == (seen[0], seen[1]), suffix
        assert seen[0] == (403 if method == "POST" else 404)


async def test_only_a_recipient_acknowledges(exchange: Exchange) -> None:
    """The recipient's ack is accepted; the originator's and a stranger's are the same 403 not_a_recipient."""
    answers = {
        who: (await exchange.send("POST", f"/v1/alerts/{ALERT}/ack", who, {"response": "actioned"}))[:2]
        for who in (RECIPIENT, ORIGIN, STRANGER)
    }
    actual = {who: (status, body.get("status") or body["error"]) for who, (status, body) in answers.items()}
    assert actual == {
        RECIPIENT: (202, "accepted"),
        ORIGIN: (403, "not_a_recipient"),
        STRANGER: (403, "not_a_recipient"),
    }


@pytest.mark.parametrize(
    ("principal", "query", "expected"),
    [
        (RECIPIENT, "", (200, {RECIPIENT})),
        (RECIPIENT, f"?agency={RECIPIENT}", (200, {RECIPIENT})),
        (RECIPIENT, f"?agency={ORIGIN}", (403, "forbidden")),
        (RECIPIENT, f"?agency={RECIPIENT}&agency={ORIGIN}", (400, "bad_query")),
        (RECIPIENT, f"?agency={ORIGIN}&agency={RECIPIENT}", (400, "bad_query")),
        (RECIPIENT, f"?agency={RECIPIENT}%26agency%3D{ORIGIN}", (403, "forbidden")),
        (RECIPIENT, "?viewer_kind=operator&viewer=desk", (400, "bad_query")),
        (RECIPIENT, "?agency", (403, "forbidden")),
        (ORIGIN, f"?agency={RECIPIENT}%00", (403, "forbidden")),
        (STRANGER, "", (200, set())),
        (OPERATOR, "", (200, {RECIPIENT, ORIGIN})),
        (OPERATOR, f"?agency={ORIGIN}", (200, {ORIGIN})),
        (OPERATOR, f"?agency={RECIPIENT}%26agency%3D{ORIGIN}", (200, set())),  # one value, quoted on
        (OPERATOR, f"?agency={RECIPIENT}&agency={ORIGIN}", (400, "bad_query")),
        (OPERATOR, "?agency=x&agency=", (400, "bad_query")),
    ],
)
async def test_outstanding_acks_show_no_more_than_the_principal_may_see(
    exchange: Exchange, principal: str, query: str, expected: tuple[int, Any]
) -> None:
    """An agency lists only its own outstanding acks whatever it puts in the query; an operator names one."""
    status, body, _ = await exchange.send("GET", f"/v1/acks/outstanding{query}", principal)
    actual = (status, {row["agency"] for row in body["outstanding"]} if status == 200 else body["error"])
    assert expected == actual
    # Whatever reached the tracker, it named each parameter once.
    for _, url, _ in exchange.calls:
        names = [name for name, _ in url.query.items()]
        assert len(set(names)) == len(names)


async def test_the_tracker_is_called_with_the_credential_and_the_principal_as_viewer(exchange: Exchange) -> None:
    """Each call to the tracker carries the internal token and the authenticated principal, quoted."""
    await exchange.send("GET", f"/v1/alerts/{ALERT}", RECIPIENT)
    await exchange.send("POST", f"/v1/alerts/{ALERT}/ack", RECIPIENT, {})
    actual = [(m, u.path, dict(u.query), h.get("Authorization")) for m, u, h in exchange.calls]
    bearer = f"Bearer {TOKEN.get_secret_value()}"
    assert [
        ("GET", f"/internal/alerts/{ALERT}", {"viewer_kind": "agency", "viewer": RECIPIENT}, bearer),
        ("GET", f"/internal/alerts/{ALERT}/recipient", {"agency": RECIPIENT}, bearer),
    ] == actual


@pytest.mark.parametrize(
    ("method", "path", "principal", "expected"),
    [
        ("GET", "/nope", ORIGIN, (404, "not_found", None)),
        ("PUT", "/v1/alerts", ORIGIN, (405, "method_not_allowed", "GET,HEAD,POST")),
        ("DELETE", f"/v1/alerts/{ALERT}", ORIGIN, (405, "method_not_allowed", "GET,HEAD")),
        ("PUT", "/v1/acks/outstanding", OPERATOR, (405, "method_not_allowed", "GET,HEAD")),
        ("GET", f"/v1/alerts/{ALERT}/ack", RECIPIENT, (405, "method_not_allowed", "POST")),
        ("GET", f"/v1/alerts/{ALERT}/routing/extra", ORIGIN, (404, "not_found", None)),
        ("GET", "/nope", None, (401, "unauthenticated", None)),
    ],
)
async def test_unknown_paths_and_methods_answer_the_json_error_body(
    exchange: Exchange, method: str, path: str, principal: str | None, expected: tuple[int, str, str | None]
) -> None:
    """404 and 405 from aiohttp's router come in the documented {error, message} shape (405 keeps Allow)."""
    status, body, headers = await exchange.send(method, path, principal)
    assert expected == (status, body["error"], headers.get("Allow"))
    assert isinstance(body["message"], str)


async def test_an_unexpected_failure_is_a_logged_json_500(exchange: Exchange) -> None:
    """A handler that raises answers 500 with the JSON body, and the traceback is logged (http.crashed)."""

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    assert exchange.api is not None
    app = web.Application(middlewares=[exchange.api.middleware])
    app.router.add_get("/broken", broken)
    async with AsyncExitStack() as stack:
        url = await serve(app, stack)
        with structlog.testing.capture_logs() as logs:
            status, body, _ = await Exchange(url).send("GET", "/broken", ORIGIN)
    crashed = [line for line in logs if line["event"] == "http.crashed"]
    assert (
        status,
        body["error"],
        [(line["log_level"], line.get("exc_info")) for line in crashed],
    ) == (500, "internal_error", [("error", True)])


async def test_the_request_log_line_carries_the_path_as_sent_never_decoded_control_characters(
    exchange: Exchange,
) -> None:
    """An escape sequence or a line separator encoded in the path reaches the log percent-encoded, so nobody
    can erase or forge log lines from outside, authenticated or not (red team, F5)."""
    with structlog.testing.capture_logs() as logs:
        await exchange.send("GET", "/v1/alerts%1b[2Kcleared", None)
        await exchange.send("GET", "/v1/%E2%80%A8fake%C2%85line", ORIGIN)
    paths = [line["path"] for line in logs if line["event"] == "http.request"]
    assert paths == ["/v1/alerts%1b[2Kcleared", "/v1/%E2%80%A8fake%C2%85line"]
