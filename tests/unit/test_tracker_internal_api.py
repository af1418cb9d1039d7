"""The tracker's internal API refuses what the gateway would never send: no credential, a wrong one, an
unknown, repeated or missing query parameter, a malformed alert id; and the services will not start
without a credential. The real handlers over a real ledger, on loopback, without Kafka."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import msgspec
import pydantic
import pytest
from aiohttp import web
from pydantic import SecretStr
from yarl import URL

from services.common.ops import bound_port
from services.gateway.settings import GatewaySettings
from services.tracker.api import Answer, InternalApi
from services.tracker.settings import TrackerSettings
from services.tracker.state import Ledger
from tests.support.audit_key import signing_key_file
from tests.unit.test_gateway_trust import ALERT, ORIGIN, RECIPIENT, STRANGER, routed

TOKEN = SecretStr("t" * 32)
GOOD = {"Authorization": f"Bearer {TOKEN.get_secret_value()}"}
VIEW = f"viewer_kind=agency&viewer={ORIGIN}"
ROUTES = [
    f"/internal/alerts/{ALERT}?{VIEW}",
    f"/internal/alerts/{ALERT}/routing?{VIEW}",
    f"/internal/alerts/{ALERT}/recipient?agency={RECIPIENT}",
    "/internal/outstanding",
    "/internal/correlations?viewer_kind=operator&viewer=desk&limit=5&agency=JO-B&kind=phone",
    "/internal/alerts?viewer_kind=operator&viewer=desk&state=open&origin=IQ-A&limit=5&since=2026-01-01T00:00Z",
]


@asynccontextmanager
async def served(ledger: Ledger) -> AsyncIterator[str]:
    """The internal API over `ledger` on loopback (its base URL), answering at once (nothing to read first)."""

    async def answer(query: Any) -> Answer:
        return query()  # type: ignore[no-any-return]

    runner = web.AppRunner(InternalApi(ledger, answer, TOKEN).app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{bound_port(runner)}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def tracker() -> AsyncIterator[str]:
    ledger = Ledger()
    ledger.apply_routed(routed(ALERT, ORIGIN, RECIPIENT, STRANGER))
    async with served(ledger) as url:
        yield url


async def get(base: str, raw: str, headers: dict[str, str], method: str = "GET") -> tuple[int, str, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, URL(base + raw, encoded=True), headers=headers) as r,
    ):
        return r.status, r.content_type, await r.json(content_type=None)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer " + "t" * 31},
        {"Authorization": "Bearer " + "t" * 33},
        {"Authorization": "Bearer " + "T" * 32},
        {"Authorization": "Basic " + "t" * 32},
        {"Authorization": "t" * 32},
        {"X-Internal-Token": "t" * 32},
    ],
)
async def test_a_request_without_the_internal_credential_is_401(
    tracker: str, route: str, headers: dict[str, str]
) -> None:
    """Every route answers 401 with the JSON body unless the exact internal token is presented."""
    status, content_type, body = await get(tracker, route, headers)
    assert (status, content_type, body["error"]) == (401, "application/json", "unauthenticated")


@pytest.mark.parametrize("route", ROUTES)
async def test_the_internal_credential_opens_every_route(tracker: str, route: str) -> None:
    """With the token (scheme in any case), each route answers."""
    for scheme in ("Bearer", "bearer"):
        status, _, _ = await get(tracker, route, {"Authorization": f"{scheme} {TOKEN.get_secret_value()}"})
        assert status == 200


@pytest.mark.parametrize(
    "raw",
    [
        f"/internal/alerts/{ALERT}?{VIEW}&viewer_kind=operator",  # repeated: which one counts?
        f"/internal/alerts/{ALERT}?viewer_kind=operator&{VIEW}",
        f"/internal/alerts/{ALERT}?{VIEW}&viewer=desk",
        f"/internal/alerts/{ALERT}?{VIEW}&debug=1",  # unknown
        f"/internal/alerts/{ALERT}?viewer={ORIGIN}",  # missing
        f"/internal/alerts/{ALERT}",
        f"/internal/alerts/{ALERT}?viewer_kind=root&viewer={ORIGIN}",
        f"/internal/alerts/{ALERT}?viewer_kind=agency&viewer=",
        f"/internal/alerts/{ALERT}/routing?{VIEW}&{VIEW}",
        f"/internal/alerts/{ALERT}/recipient?agency={RECIPIENT}&agency={ORIGIN}",
        f"/internal/alerts/{ALERT}/recipient",
        f"/internal/alerts/{ALERT}/recipient?agency={RECIPIENT}&{VIEW}",
        f"/internal/outstanding?agency={RECIPIENT}&agency={ORIGIN}",
        "/internal/outstanding?viewer_kind=operator",
        "/internal/correlations",
        "/internal/correlations?viewer_kind=operator&viewer=desk&limit=0",
        "/internal/correlations?viewer_kind=operator&viewer=desk&limit=201",
        "/internal/correlations?viewer_kind=operator&viewer=desk&limit=1&limit=2",
        "/internal/correlations?viewer_kind=operator&viewer=desk&before=yesterday",
        "/internal/correlations?viewer_kind=operator&viewer=desk&page=2",
        f"/internal/correlations/{ALERT}?viewer_kind=operator&viewer=desk&agency=JO-B",
        "/internal/alerts?viewer_kind=operator&viewer=desk&since=yesterday",
        "/internal/alerts?viewer_kind=operator&viewer=desk&since=2026-01-01T00:00:00",  # no offset
        "/internal/alerts?viewer_kind=operator&viewer=desk&limit=0",
        "/internal/alerts?viewer_kind=operator&viewer=desk&limit=1001",
        "/internal/alerts?viewer_kind=operator&viewer=desk&limit=-1",
        "/internal/alerts?viewer_kind=operator&viewer=desk&limit=1&limit=2",
        "/internal/alerts?viewer_kind=operator&viewer=desk&state=closed",
        "/internal/alerts?viewer_kind=operator&viewer=desk&page=2",
        "/internal/alerts?viewer=desk",
    ],
)
async def test_unknown_repeated_or_missing_query_parameters_are_400(tracker: str, raw: str) -> None:
    """A query string the gateway would never build is refused, not resolved."""
    status, content_type, body = await get(tracker, raw, GOOD)
    assert (status, content_type, body["error"]) == (400, "application/json", "bad_request")


@pytest.mark.parametrize(
    "alert_id",
    [ALERT.upper(), ALERT + "%00", ALERT + "%2F..", "..", "%2E%2E", ALERT.replace("-", ""), ALERT + "%23", "x"],
)
async def test_a_malformed_alert_id_is_404(tracker: str, alert_id: str) -> None:
    """Only a canonical UUID names an alert, here as at the gateway (and a correlation)."""
    status, _, body = await get(tracker, f"/internal/alerts/{alert_id}?{VIEW}", GOOD)
    assert (status, body["error"]) == (404, "not_found")
    status, _, body = await get(tracker, f"/internal/correlations/{alert_id}?viewer_kind=operator&viewer=d", GOOD)
    assert (status, body["error"]) == (404, "not_found")


async def test_correlations_are_refused_to_an_agency_viewer_even_with_the_credential(tracker: str) -> None:
    """The tracker keeps the operators-only rule itself, should a caller holding the credential ask as an agency."""
    answers = [
        await get(tracker, f"/internal/correlations?{VIEW}", GOOD),
        await get(tracker, f"/internal/correlations/{ALERT}?{VIEW}", GOOD),
    ]
    assert [(status, body["error"]) for status, _, body in answers] == [(403, "forbidden")] * 2


async def test_the_list_of_alerts_is_refused_to_an_agency_viewer(tracker: str) -> None:
    """Only operators list alerts, whatever the credential's holder asks as."""
    status, _, body = await get(tracker, f"/internal/alerts?{VIEW}", GOOD)
    assert (status, body["error"]) == (403, "forbidden")


async def test_the_list_of_alerts_carries_the_ledgers_version_and_a_matching_if_none_match_is_304() -> None:
    """ETag is the ledger's version in quotes; the same tag back is a 304 without a body until the ledger changes."""
    ledger = Ledger()
    ledger.apply_routed(routed(ALERT, ORIGIN, RECIPIENT, STRANGER))
    seen = []
    async with served(ledger) as base, aiohttp.ClientSession(headers=GOOD) as http:
        url = f"{base}/internal/alerts?viewer_kind=operator&viewer=desk"
        for tag in (None, '"1"', '"0"', "AFTER"):
            if tag == "AFTER":
                ledger.apply_routed(routed(ALERT.replace("5b", "6b"), ORIGIN, RECIPIENT, STRANGER))
                tag = '"1"'
            async with http.get(url, headers={"If-None-Match": tag} if tag else {}) as r:
                body = await r.read()
                listed = [a["alert_id"] for a in msgspec.json.decode(body)["alerts"]] if body else None
                seen.append((r.status, r.headers.get("ETag"), listed))
    assert seen == [
        (200, '"1"', [ALERT]),
        (304, '"1"', None),
        (200, '"1"', [ALERT]),
        (200, '"2"', [ALERT.replace("5b", "6b"), ALERT]),  # routed at the same time: by id, descending
    ]


@pytest.mark.parametrize(
    ("method", "raw", "expected"),
    [
        ("GET", "/internal/nope", (404, "not_found")),
        ("GET", f"/internal/alerts/{ALERT}/recipients/{RECIPIENT}", (404, "not_found")),
        ("POST", "/internal/outstanding", (405, "method_not_allowed")),
        ("DELETE", f"/internal/alerts/{ALERT}?{VIEW}", (405, "method_not_allowed")),
    ],
)
async def test_unknown_paths_and_methods_are_json(
    tracker: str, method: str, raw: str, expected: tuple[int, str]
) -> None:
    """aiohttp's own 404 and 405 come in the JSON error shape too."""
    status, content_type, body = await get(tracker, raw, GOOD, method)
    assert (status, body["error"], content_type) == (*expected, "application/json")


@pytest.mark.parametrize("settings", [TrackerSettings, GatewaySettings])
@pytest.mark.parametrize("token", [None, "", "short", "x" * 31, "x" * 31 + " ", "é" * 40])
def test_a_service_without_a_usable_internal_token_does_not_start(
    monkeypatch: pytest.MonkeyPatch, settings: type[TrackerSettings | GatewaySettings], token: str | None
) -> None:
    """No token, or one shorter than 32 printable ASCII characters, stops the settings naming the variable."""
    monkeypatch.delenv("RCTC_INTERNAL_TOKEN", raising=False)
    if token is not None:
        monkeypatch.setenv("RCTC_INTERNAL_TOKEN", token)
    with pytest.raises(pydantic.ValidationError) as refused:
        settings()
    assert "RCTC_INTERNAL_TOKEN" in str(refused.value)


@pytest.mark.parametrize("settings", [TrackerSettings, GatewaySettings])
def test_the_internal_token_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, settings: type[TrackerSettings | GatewaySettings]
) -> None:
    """RCTC_INTERNAL_TOKEN sets it, and it never shows in the settings' repr."""
    monkeypatch.setenv("RCTC_INTERNAL_TOKEN", "s" * 40)
    monkeypatch.setenv("RCTC_SIGNING_KEY_FILE", str(signing_key_file()))
    built = settings()
    assert (built.internal_token.get_secret_value(), "s" * 40 in repr(built)) == ("s" * 40, False)


@pytest.mark.parametrize("service", ["tracker", "gateway"])
def test_the_process_started_without_a_token_exits_naming_it(service: str) -> None:
    """`python -m services.<name>` without RCTC_INTERNAL_TOKEN exits 1 with one message, no traceback."""
    env = {k: v for k, v in os.environ.items() if k != "RCTC_INTERNAL_TOKEN"}
    done = subprocess.run(
        [sys.executable, "-m", f"services.{service}"], env=env, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, "RCTC_INTERNAL_TOKEN" in done.stderr, "Traceback" in done.stderr) == (1, True, False)


def test_every_port_binds_to_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """The public, internal and ops HTTP servers listen on 127.0.0.1 unless a deployment says otherwise."""
    from services.auditor.settings import AuditorSettings
    from services.dispatcher.settings import DispatcherSettings
    from services.enricher.settings import EnricherSettings
    from services.router.settings import RouterSettings

    for name in ("RCTC_HTTP__HOST", "RCTC_OPS__HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RCTC_INTERNAL_TOKEN", "s" * 40)
    monkeypatch.setenv("RCTC_SIGNING_KEY_FILE", str(signing_key_file()))
    built = [s() for s in (AuditorSettings, DispatcherSettings, EnricherSettings, RouterSettings)]
    gateway, tracker = GatewaySettings(), TrackerSettings()
    hosts = {s.ops.host for s in [*built, gateway, tracker]} | {gateway.http.host, tracker.http.host}
    assert hosts == {"127.0.0.1"}
