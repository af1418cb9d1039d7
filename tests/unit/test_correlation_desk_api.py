"""The duty desk's view of correlations over real HTTP: the gateway's handlers in front of the tracker's real
internal API and ledger (no Kafka). Operators see every correlation and whom the router told; every agency,
whatever it asks and however, is refused before the tracker hears of it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from services.common.codec import Codec
from services.gateway.access import DESK_ONLY
from services.tracker.state import Ledger
from tests.unit.test_gateway_trust import OPERATOR, ORIGIN, RECIPIENT, STRANGER, Exchange, gateway_over
from tests.unit.test_tracker_correlations import cid, found, told

# Correlation 1: ORIGIN's alert (a) and STRANGER's (b) share a phone; the router told RECIPIENT only.
# Correlations 2 to 4: between ORIGIN and STRANGER, names, nobody told.
CORRELATION = cid(1)


@pytest.fixture
async def exchange(codec: Codec) -> AsyncIterator[Exchange]:
    ledger = Ledger()
    ledger.apply_correlated(found(1, a=ORIGIN, b=STRANGER, minutes=10))
    ledger.apply_routed(told(1, {RECIPIENT}, minutes=11))
    for n in (2, 3, 4):
        ledger.apply_correlated(found(n, a=ORIGIN, b=STRANGER, kind="subject_name", minutes=n))

    async with AsyncExitStack() as stack:
        yield await gateway_over(ledger, codec, stack)


AGENCY_ASKS = [
    "/v1/correlations",
    "/v1/correlations?limit=1",
    "/v1/correlations?viewer_kind=operator&viewer=desk",
    "/v1/correlations?limit=0&limit=x",
    f"/v1/correlations?agency={ORIGIN}",
    f"/v1/correlations/{CORRELATION}",
    f"/v1/correlations/{uuid.uuid4()}",
    f"/v1/correlations/{CORRELATION}%3Fviewer_kind%3Doperator",
    "/v1/correlations/not-an-id",
]


@pytest.mark.parametrize("agency", [ORIGIN, RECIPIENT, STRANGER])
async def test_every_agency_is_refused_whatever_it_asks_and_the_tracker_hears_nothing(
    exchange: Exchange, agency: str
) -> None:
    """Both originators and the agency told get 403 `forbidden` saying why, for the list and any id (a real one,
    an unknown one, a malformed one, one smuggling a viewer); the tracker is never asked."""
    answers = {path: await exchange.send("GET", path, agency) for path in AGENCY_ASKS}
    expected = {path: (403, "forbidden", DESK_ONLY) for path in AGENCY_ASKS}
    assert expected == {path: (s, body["error"], body["message"]) for path, (s, body, _) in answers.items()}
    assert exchange.calls == []


async def test_an_operator_sees_each_correlation_and_whom_the_router_told(exchange: Exchange) -> None:
    """The list, newest first, and one correlation whole: its sides, fields, and the agency told with when."""
    status, body, _ = await exchange.send("GET", "/v1/correlations", OPERATOR)
    listed = [(c["correlation_id"], [n["agency"] for n in c["notified"]]) for c in body["correlations"]]
    assert (status, listed, body["next"]) == (
        200,
        [(cid(1), [RECIPIENT]), (cid(4), []), (cid(3), []), (cid(2), [])],
        None,
    )
    status, one, _ = await exchange.send("GET", f"/v1/correlations/{CORRELATION}", OPERATOR)
    expected = (
        200,
        "phone",
        ORIGIN,
        STRANGER,
        ["summary", "indicators"],
        [{"agency": RECIPIENT, "at": "2026-12-01T09:11:00Z"}],
    )
    assert expected == (
        status,
        one["kind"],
        one["a"]["origin"],
        one["b"]["origin"],
        one["b"]["fields"],
        one["notified"],
    )
    status, _, _ = await exchange.send("GET", f"/v1/correlations/{uuid.uuid4()}", OPERATOR)
    assert status == 404


async def test_an_operator_pages_and_filters_through_the_gateway(exchange: Exchange) -> None:
    """?limit= and the `next` cursor walk the list without overlap; ?agency= matches an originator or the
    agency told, ?kind= the kind; the tracker is asked with the viewer and exactly the parameters given."""
    seen, before = [], None
    while True:
        query = "?limit=3" + (f"&before={before}" if before else "")
        _, body, _ = await exchange.send("GET", f"/v1/correlations{query}", OPERATOR)
        seen.append([c["correlation_id"] for c in body["correlations"]])
        before = body["next"]
        if before is None:
            break
    assert seen == [[cid(1), cid(4), cid(3)], [cid(2)]]

    async def ids(query: str) -> list[str]:
        _, body, _ = await exchange.send("GET", f"/v1/correlations?{query}", OPERATOR)
        return [c["correlation_id"] for c in body["correlations"]]

    expected = [[cid(1)], [cid(1), cid(4), cid(3), cid(2)], [], [cid(4), cid(3), cid(2)]]
    assert expected == [
        await ids(f"agency={RECIPIENT}"),
        await ids(f"agency={STRANGER}"),
        await ids("agency=KW-D"),
        await ids("kind=subject_name"),
    ]
    _, url, _ = exchange.calls[-1]
    assert dict(url.query) == {"viewer_kind": "operator", "viewer": OPERATOR, "kind": "subject_name"}


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=201",
        "limit=ten",
        "limit=%EF%BC%91",  # a full-width digit one
        "limit=1&limit=2",
        "before=x",
        f"before=1.{CORRELATION}%0A",
        "agency=jo-b",
        f"agency={RECIPIENT}%26viewer_kind%3Dagency",
        "kind=Phone",
        "viewer_kind=agency",
        "debug=1",
    ],
)
async def test_an_operators_query_out_of_its_form_is_400_before_the_tracker_is_asked(
    exchange: Exchange, query: str
) -> None:
    """An unknown or repeated parameter, a limit outside 1 to 200, a cursor no page gave, an agency or kind
    not in its form: 400 `bad_query`, and nothing reaches the tracker."""
    status, body, _ = await exchange.send("GET", f"/v1/correlations?{query}", OPERATOR)
    assert ((status, body["error"]), exchange.calls) == ((400, "bad_query"), [])
