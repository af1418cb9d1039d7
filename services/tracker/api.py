"""The tracker's internal HTTP API, for the gateway only. It moves data: who may see what is decided by the
ledger (state.py), what a request may carry by services/common/internal.py.

    GET /internal/alerts?viewer_kind=...&viewer=...[&since=ISO8601&state=S&origin=CODE&limit=N]
                        routed alerts newest first, with what each awaits (operators only: 403); ETag, 304
    GET /internal/alerts/{alert_id}?viewer_kind=agency|operator&viewer=NAME      status as that viewer sees it
    GET /internal/alerts/{alert_id}/routing?viewer_kind=...&viewer=...           the decision, same rule
    GET /internal/alerts/{alert_id}/recipient?agency=CODE                        is CODE a recipient, its state
    GET /internal/outstanding[?agency=CODE]                                      acks still expected
    GET /internal/onward?viewer_kind=...&viewer=...                              onward-sharing requests it sees
    GET /internal/onward/{request_id}?viewer_kind=...&viewer=...                 one of them
    GET /internal/correlations?viewer_kind=...&viewer=...[&limit=N&before=CURSOR&agency=CODE&kind=K&thread=ID]
                                                          correlations newest first (operators only: 403)
    GET /internal/webhooks                                each agency's webhook copies by status, last failure
    GET /internal/correlations/{correlation_id}?viewer_kind=...&viewer=...       one of them (operators only)

An alert retired (retention.py) answers its status, routing and recipient queries from its summary, by the same
rules; it is no longer listed by GET /internal/alerts nor counted in /internal/outstanding.

Every request carries the internal credential (401 without it); a query parameter that is unknown, repeated
or missing is a 400, and so is a page that services/common/pages.py refuses; an alert, request or correlation
id that is not a canonical UUID is a 404. Each check comes before any work,
and every answer, these included, is a JSON body `{error, message}`. The list of alerts answers with
`ETag: "<ledger.version>"`, and 304 without a body to a request whose `If-None-Match` is that tag: the
operators' console asks every second, and the ledger has usually not changed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import msgspec
from aiohttp import web
from pydantic import SecretStr

from services.common.internal import is_alert_id, presented, query_problem
from services.common.logs import get_logger
from services.common.pages import key_of, limit_of, page_problem
from services.common.records import utcnow
from services.tracker.state import LIST_LIMIT, Ledger, Viewer

log = get_logger("rctc.tracker")

Answer = tuple[int, dict[str, Any]]
# Answers `query`; if the alert is unknown, again once the tracker has read what was routed until now.
Answerer = Callable[[Callable[[], Answer]], Awaitable[Answer]]

VIEWER = frozenset({"viewer_kind", "viewer"})
# The query parameters of each route: (allowed, required).
QUERIES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "/internal/outstanding": (frozenset({"agency"}), frozenset()),
    "/internal/alerts": (VIEWER | {"since", "state", "origin", "limit"}, VIEWER),
    "/internal/alerts/{alert_id}": (VIEWER, VIEWER),
    "/internal/alerts/{alert_id}/routing": (VIEWER, VIEWER),
    "/internal/alerts/{alert_id}/recipient": (frozenset({"agency"}), frozenset({"agency"})),
    "/internal/onward": (VIEWER, VIEWER),
    "/internal/onward/{request_id}": (VIEWER, VIEWER),
    "/internal/correlations": (VIEWER | {"limit", "before", "agency", "kind", "thread"}, VIEWER),
    "/internal/webhooks": (frozenset(), frozenset()),
    "/internal/correlations/{correlation_id}": (VIEWER, VIEWER),
}


_CODES = {404: "not_found", 405: "method_not_allowed"}


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


def _dumps(value: object) -> str:
    return msgspec.json.encode(value).decode()


class InternalApi:
    def __init__(self, ledger: Ledger, answer: Answerer, token: SecretStr) -> None:
        self._ledger = ledger
        self._answer = answer
        self._token = token

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/internal/outstanding", self._outstanding)
        app.router.add_get("/internal/alerts", self._alert_list)
        app.router.add_get("/internal/alerts/{alert_id}", self._status)
        app.router.add_get("/internal/alerts/{alert_id}/routing", self._routing)
        app.router.add_get("/internal/alerts/{alert_id}/recipient", self._recipient)
        app.router.add_get("/internal/onward", self._onward_list)
        app.router.add_get("/internal/onward/{request_id}", self._onward_one)
        app.router.add_get("/internal/correlations", self._correlation_list)
        app.router.add_get("/internal/webhooks", self._webhooks)
        app.router.add_get("/internal/correlations/{correlation_id}", self._correlation_one)
        return app

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not presented(request.headers.get("Authorization"), self._token):
            log.warning("internal.unauthenticated", path=request.path, peer=request.remote)
            return _error(401, "unauthenticated", "the internal credential is required")
        route = request.match_info.route.resource
        shape = QUERIES.get(route.canonical) if route is not None else None
        if shape is not None:
            # items(), not keys(): multidict's keys() lists a repeated name once.
            problem = query_problem((name for name, _ in request.query.items()), *shape)
            if problem is not None:
                return _error(400, "bad_request", problem)
            alert_id = request.match_info.get("alert_id")
            if alert_id is not None and not is_alert_id(alert_id):
                return _error(404, "not_found", "no such alert")
            request_id = request.match_info.get("request_id")
            if request_id is not None and not is_alert_id(request_id):  # a UUID too
                return _error(404, "not_found", "no such request")
            correlation_id = request.match_info.get("correlation_id")
            if correlation_id is not None and not is_alert_id(correlation_id):  # a uuid5, canonical
                return _error(404, "not_found", "no such correlation")
        try:
            return await handler(request)
        except web.HTTPException as exc:
            # No such route, or a wrong method: aiohttp's own 404/405, in the JSON shape (Allow kept).
            response = _error(exc.status, _CODES.get(exc.status, "bad_request"), exc.reason)
            response.headers.extend((k, v) for k, v in exc.headers.items() if k == "Allow")
            return response
        except Exception:
            log.exception("internal.crashed", path=request.path)
            return _error(500, "internal_error", "the tracker failed to answer; see its log")

    async def _outstanding(self, request: web.Request) -> web.Response:
        return web.json_response({"outstanding": self._ledger.outstanding(request.query.get("agency"))})

    async def _alert_list(self, request: web.Request) -> web.Response:
        viewer = _viewer(request)
        if viewer is None:
            return _error(400, "bad_request", "viewer_kind is agency or operator, and viewer is named")
        query = request.query
        since = _time(query.get("since"))
        if since is None and "since" in query:
            return _error(400, "bad_request", "since is an ISO 8601 time with its offset, such as 2026-12-03T10:00Z")
        limit = query.get("limit", str(LIST_LIMIT))
        if not (limit.isascii() and limit.isdigit()) or len(limit) > 6:
            return _error(400, "bad_request", "limit is a whole number")
        # Read before the list is built, and nothing awaits in between: the tag is the version the body shows.
        etag = f'"{self._ledger.version}"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        status, body = self._ledger.alert_list(
            viewer,
            now=utcnow(),
            since=since,
            state=query.get("state"),
            origin=query.get("origin"),
            limit=int(limit),
        )
        headers = {"ETag": etag} if status == 200 else None
        return web.json_response(body, status=status, dumps=_dumps, headers=headers)

    async def _status(self, request: web.Request) -> web.Response:
        return await self._as_viewer(request, self._ledger.status)

    async def _routing(self, request: web.Request) -> web.Response:
        return await self._as_viewer(request, self._ledger.routing_of)

    async def _onward_list(self, request: web.Request) -> web.Response:
        viewer = _viewer(request)
        if viewer is None:
            return _error(400, "bad_request", "viewer_kind is agency or operator, and viewer is named")
        return web.json_response({"requests": self._ledger.onward_requests(viewer)}, dumps=_dumps)

    async def _onward_one(self, request: web.Request) -> web.Response:
        viewer = _viewer(request)
        if viewer is None:
            return _error(400, "bad_request", "viewer_kind is agency or operator, and viewer is named")
        request_id = request.match_info["request_id"]
        status, body = await self._answer(lambda: self._ledger.onward_request(request_id, viewer))
        return web.json_response(body, status=status, dumps=_dumps)

    async def _correlation_list(self, request: web.Request) -> web.Response:
        viewer = _viewer(request)
        if viewer is None:
            return _error(400, "bad_request", "viewer_kind is agency or operator, and viewer is named")
        query = request.query
        problem = page_problem(query.get("limit"), query.get("before"))
        if problem is not None:
            return _error(400, "bad_request", problem)
        before = query.get("before")
        status, body = self._ledger.correlation_page(
            viewer,
            limit_of(query.get("limit")),
            key_of(before) if before is not None else None,
            query.get("agency"),
            query.get("kind"),
            query.get("thread"),
        )
        return web.json_response(body, status=status, dumps=_dumps)

    async def _webhooks(self, request: web.Request) -> web.Response:
        # Counts of delivery states and a failure class: nothing of any alert, for the operators' console.
        return web.json_response(self._ledger.webhook_tally())

    async def _correlation_one(self, request: web.Request) -> web.Response:
        viewer = _viewer(request)
        if viewer is None:
            return _error(400, "bad_request", "viewer_kind is agency or operator, and viewer is named")
        # Not through the answerer (which reads alerts.routed up to its end): an operator's view may lag the
        # correlator by the tracker's batch (half a second); nobody acts on a correlation's absence.
        status, body = self._ledger.correlation(request.match_info["correlation_id"], viewer)
        return web.json_response(body, status=status, dumps=_dumps)

    async def _as_viewer(self, request: web.Request, query: Callable[[str, Viewer], Answer]) -> web.Response:
        """Answer `query` for the viewer the gateway authenticated (it passes kind and name)."""
        viewer = _viewer(request)
        if viewer is None:
            return _error(400, "bad_request", "viewer_kind is agency or operator, and viewer is named")
        alert_id = request.match_info["alert_id"]
        status, body = await self._answer(lambda: query(alert_id, viewer))
        return web.json_response(body, status=status, dumps=_dumps)

    async def _recipient(self, request: web.Request) -> web.Response:
        alert_id, agency = request.match_info["alert_id"], request.query["agency"]
        status, body = await self._answer(lambda: self._ledger.recipient(alert_id, agency))
        return web.json_response(body, status=status)


def _viewer(request: web.Request) -> Viewer | None:
    """The viewer the gateway authenticated (it passes kind and name), or None if the query is not one."""
    kind, name = request.query["viewer_kind"], request.query["viewer"]
    if kind not in ("agency", "operator") or not name:
        return None
    return Viewer(kind, name)  # type: ignore[arg-type]


def _time(text: str | None) -> datetime | None:
    """An ISO 8601 time with its offset (`Z` too), or None: a time without one would be compared with the
    ledger's UTC times as if it were one."""
    try:
        at = datetime.fromisoformat(text) if text is not None else None
    except ValueError:
        return None
    return at if at is not None and at.utcoffset() is not None else None
