"""GET /v1/alerts over real HTTP: the gateway's handler in front of the tracker's real internal API and ledger (no
Kafka). Operators list alerts newest first with what each awaits, filtered as asked, and poll with the ETag;
every agency is refused before the tracker hears of it, and a query out of its form is 400."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import timedelta

import aiohttp
import msgspec
import pytest
from yarl import URL

from services.common.codec import Codec
from services.tracker.state import Ledger
from tests.unit.test_gateway_trust import (
    ALERT,
    AT,
    OPERATOR,
    ORIGIN,
    RECIPIENT,
    STRANGER,
    Exchange,
    gateway_over,
    routed,
    token_of,
)

LATER = str(uuid.UUID(int=uuid.UUID(ALERT).int + 1))  # STRANGER's, routed after ALERT


@pytest.fixture
async def exchange(codec: Codec) -> AsyncIterator[Exchange]:
    ledger = Ledger()
    ledger.apply_routed(routed(ALERT, ORIGIN, RECIPIENT, STRANGER))
    later = routed(LATER, STRANGER, RECIPIENT, ORIGIN)
    ledger.apply_routed(msgspec.structs.replace(later, routed_at=AT + timedelta(minutes=5)))
    async with AsyncExitStack() as stack:
        yield await gateway_over(ledger, codec, stack)


@pytest.mark.parametrize("agency", [ORIGIN, RECIPIENT, STRANGER])
@pytest.mark.parametrize("query", ["", "?limit=1", "?viewer_kind=operator&viewer=desk", "?limit=0&limit=x"])
async def test_an_agency_is_refused_whatever_it_asks_and_the_tracker_hears_nothing(
    exchange: Exchange, agency: str, query: str
) -> None:
    """403 `forbidden` for any agency and any query (a malformed one too: refused before it is read)."""
    status, body, _ = await exchange.send("GET", f"/v1/alerts{query}", agency)
    assert ((status, body["error"]), exchange.calls) == ((403, "forbidden"), [])


async def test_an_operator_lists_alerts_newest_first_and_filters_them(exchange: Exchange) -> None:
    """Newest first with the counts; origin, state and since narrow it, passed to the tracker quoted."""
    _, everything, _ = await exchange.send("GET", "/v1/alerts", OPERATOR)
    assert [(a["alert_id"], a["origin"], a["awaiting"], a["thread_id"]) for a in everything["alerts"]] == [
        (LATER, STRANGER, 1, LATER),
        (ALERT, ORIGIN, 1, ALERT),
    ]
    since = (AT + timedelta(minutes=1)).isoformat()  # +00:00: a plus sign, quoted on the way
    answers = [
        await exchange.send("GET", f"/v1/alerts?origin={ORIGIN}", OPERATOR),
        await exchange.send("GET", f"/v1/alerts?since={since.replace('+', '%2B')}", OPERATOR),
        await exchange.send("GET", "/v1/alerts?state=settled", OPERATOR),
        await exchange.send("GET", "/v1/alerts?state=open&limit=1", OPERATOR),
    ]
    assert [[a["alert_id"] for a in body["alerts"]] for _, body, _ in answers] == [[ALERT], [LATER], [], [LATER]]
    assert dict(exchange.calls[2][1].query) == {"viewer_kind": "operator", "viewer": OPERATOR, "since": since}


async def test_the_etag_passes_through_and_a_matching_if_none_match_is_304(exchange: Exchange) -> None:
    """The tracker's ETag reaches the operator; sent back in If-None-Match, the answer is 304 without a body."""
    headers = {"Authorization": f"Bearer {token_of(OPERATOR)}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(URL(exchange.url + "/v1/alerts")) as r:
            first = (r.status, r.headers.get("ETag"))
        async with http.get(URL(exchange.url + "/v1/alerts"), headers={"If-None-Match": str(first[1])}) as r:
            again = (r.status, r.headers.get("ETag"), await r.read())
        async with http.get(URL(exchange.url + "/v1/alerts"), headers={"If-None-Match": '"0"'}) as r:
            stale = (r.status, r.headers.get("ETag"))
    assert (first, again, stale) == ((200, '"2"'), (304, '"2"', b""), (200, '"2"'))


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=1001",
        "limit=01",
        "limit=x",
        "limit=1&limit=2",
        "since=yesterday",
        "since=2026-12-03T10:00:00",
        "state=closed",
        "origin=jo-b",
        f"origin={RECIPIENT}%26viewer_kind%3Dagency",
        "viewer_kind=agency",
        "debug=1",
    ],
)
async def test_an_operators_query_out_of_its_form_is_400_before_the_tracker_is_asked(
    exchange: Exchange, query: str
) -> None:
    """An unknown or repeated parameter, a limit outside 1 to 1000, a time without its offset, an unknown state,
    an origin not an agency's code: 400 `bad_query`, and nothing reaches the tracker."""
    status, body, _ = await exchange.send("GET", f"/v1/alerts?{query}", OPERATOR)
    assert ((status, body["error"]), exchange.calls) == ((400, "bad_query"), [])
