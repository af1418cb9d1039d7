"""The public HTTP API (docs/openapi.yaml). Handlers authenticate, validate, produce and answer; the state
they report is the tracker's, fetched on each request.

Every error answers with the same JSON shape, `{"error": code, "message": text, "problems": [...]}`,
aiohttp's own (no such path, wrong method) and an unexpected failure (500, logged with its traceback)
included, and every request is logged once as `http.request` with its outcome.

Calls to the tracker carry the internal credential (set on the session, service.py) and are built from
an alert id that access.py has validated plus quoted query parameters: no caller's text is spliced into
a URL (issue 13: `X%3Fviewer_kind%3Doperator` once made any agency an operator).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import msgspec
from aiohttp import web
from aiokafka.errors import KafkaError
from yarl import URL

from services.common import tracing
from services.common.codec import writer_schemas
from services.common.kafka import Outbox
from services.common.logs import get_logger
from services.common.records import AckSubmitted, OnwardAction, recipient_key, utcnow
from services.common.registry import CredentialsView, RegistryView
from services.common.registry.model import Principal, Registry
from services.common.topics import ACKS_SUBMITTED, ALERTS_SUBMITTED, REQUESTS_ONWARD
from services.gateway import intake
from services.gateway.access import (
    Refusal,
    alerts_query,
    correlations_query,
    desk_refusal,
    outstanding_scope,
    path_problem,
)
from services.gateway.idempotency import KeyReuseGuard
from services.gateway.ratelimit import RateLimiter, retry_after
from services.gateway.settings import HttpSettings
from services.gateway.submission import InvalidSubmission, parse_ack, parse_onward_answer, parse_onward_ask

log = get_logger("rctc.gateway")

PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal")


SCHEMA_FINGERPRINT = re.compile(r"[0-9a-f]{16}")


def error(
    status: int,
    code: str,
    message: str,
    problems: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body: dict[str, Any] = {"error": code, "message": message}
    if problems:
        body["problems"] = [{"field": f, "message": m} for f, m in problems]
    return web.json_response(body, status=status, headers=headers)


def refused(refusal: intake.Refused) -> web.Response:
    """The answer to a submission intake.py refused: the same body a Kafka submission's rejection carries."""
    return error(refusal.status, refusal.error, refusal.message, list(refusal.problems))


# aiohttp's exceptions (raised by its router, by request parsing, or by a handler) and the code each gets.
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


def http_error(exc: web.HTTPException) -> web.StreamResponse:
    """An aiohttp HTTPException as the documented JSON error body (its Allow header kept)."""
    if exc.status < 400:
        return exc  # a redirect is not an error
    if exc.status == 413:
        return error(413, "too_large", "the body is larger than the gateway accepts")
    code = _HTTP_CODES.get(exc.status, "http_error")
    if exc.status == 404:
        return error(404, code, "no such path")
    if exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        return error(405, code, f"this path allows {allowed or 'no method'}", headers={"Allow": allowed})
    return error(exc.status, code, exc.reason)


class GatewayApi:
    def __init__(
        self,
        registry: RegistryView,
        credentials: CredentialsView,
        outbox_factory: Callable[[], Outbox],
        tracker: aiohttp.ClientSession,
        tracker_url: str,
        key_guard: KeyReuseGuard,
        *,
        limiter: RateLimiter | None = None,
        max_body_bytes: int = HttpSettings().max_body_bytes,
    ) -> None:
        self._registry = registry
        self._credentials = credentials
        self._outbox = outbox_factory
        self._tracker = tracker
        self._tracker_url = URL(tracker_url)
        self._keys = key_guard
        self._limiter = limiter if limiter is not None else RateLimiter()
        self._limited_version = -1  # the registry version whose agencies the limiter keeps buckets for
        # aiohttp refuses a larger body first (client_max_size); intake.admit states the rule for both channels.
        self._max_body_bytes = max_body_bytes
        self._schemas = writer_schemas()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/alerts", self.submit_alert),
            web.get("/v1/alerts", self.alert_list),
            web.post("/v1/alerts/{alert_id}/ack", _checked(self.acknowledge)),
            web.get("/v1/alerts/{alert_id}", _checked(self.alert_status)),
            web.get("/v1/alerts/{alert_id}/routing", _checked(self.alert_routing)),
            web.get("/v1/acks/outstanding", self.outstanding),
            web.post("/v1/alerts/{alert_id}/onward", _checked(self.ask_onward)),
            web.get("/v1/onward", self.onward_requests),
            web.get("/v1/onward/{request_id}", _checked(self.onward_request)),
            web.post("/v1/onward/{request_id}", _checked(self.answer_onward)),
            web.get("/v1/correlations", self.correlations),
            # Not _checked: an agency is refused (403) whatever id it names (correlation below).
            web.get("/v1/correlations/{correlation_id}", self.correlation),
            web.get("/v1/schemas/{fingerprint}", self.schema),
        ]

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.perf_counter()
        # As received (percent-encoded), never decoded: a decoded path can carry control characters and line
        # breaks into the log. Bounded: the log is no sink for whatever a client sends.
        fields: dict[str, Any] = {"method": request.method, "path": request.raw_path[:512]}
        try:
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            registry = self._registry.current
            bearer = scheme.lower() == "bearer"
            principal = self._credentials.authenticate(token.strip(), registry) if bearer else None
            if principal is None:
                response: web.StreamResponse = error(
                    401,
                    "unauthenticated",
                    "a valid bearer token is required (Authorization: Bearer ...)",
                    headers={"WWW-Authenticate": 'Bearer realm="rctc"'},
                )
            else:
                fields["principal"] = f"{principal[0]}:{principal[1]}"
                request[PRINCIPAL] = principal
                refused = self._refusal(principal, registry)
                response = refused if refused is not None else await handler(request)
        except web.HTTPRequestEntityTooLarge:
            response = error(413, "too_large", "the body is larger than the gateway accepts")
        except web.HTTPException as exc:
            response = http_error(exc)
        except Exception:
            log.exception("http.crashed", **fields)
            response = error(500, "internal_error", "the gateway failed to answer; the failure is logged")
        fields.update(status=response.status, duration_ms=round((time.perf_counter() - started) * 1000, 2))
        if path_problem(request.match_info) is None and "alert_id" in request.match_info:
            fields["alert_id"] = request.match_info["alert_id"]  # only a valid one: the log is no sink for text
        log.info("http.request", **fields)
        return response

    def _refusal(self, principal: Principal, registry: Registry) -> web.Response | None:
        """403 for a suspended agency, 429 for an agency over its rate limit, else None (go ahead).

        Operators are not rate limited: they are the center's own few people, and an operator's token
        already sees everything, so a limit would protect nothing that matters more than their work.
        """
        kind, name = principal
        if kind != "agency":
            return None
        if registry.is_suspended(principal):
            return refused(intake.suspended(name))
        if registry.version != self._limited_version:
            self._limiter.retain(registry.agencies)
            self._limited_version = registry.version
        limit = registry.rate_limit_of(name)
        wait = self._limiter.admit(name, per_second=limit.per_second, burst=limit.burst)
        if wait:
            return error(
                429,
                "rate_limited",
                f"{name} may make {limit.per_second:g} requests a second (bursts of {limit.burst}); retry later",
                headers={"Retry-After": retry_after(wait)},
            )
        return None

    @staticmethod
    def _principal(request: web.Request) -> Principal:
        return request[PRINCIPAL]

    async def submit_alert(self, request: web.Request) -> web.Response:
        kind, agency = self._principal(request)
        if kind != "agency":
            return error(403, "forbidden", "only agencies submit alerts; operators do not originate them")
        if request.content_type != "application/json":
            return error(415, "unsupported_media_type", "send the alert as application/json")
        body = await request.read()
        outcome = intake.admit(
            agency,
            body,
            request.headers.get("Idempotency-Key"),
            now=utcnow(),
            keys=self._keys,
            max_body_bytes=self._max_body_bytes,
        )
        if isinstance(outcome, intake.Refused):
            return refused(outcome)
        record, alert = outcome.record, outcome.record.alert
        alert_id = record.alert_id
        traceparent = tracing.child_of(request.headers.get("traceparent"))
        if not await self._publish(ALERTS_SUBMITTED, outcome.partition_key, record, traceparent):
            return error(
                503,
                "unavailable",
                "the alert could not be stored; retry with the same Idempotency-Key",
                headers={"Retry-After": "5"},
            )
        log.info(
            "alert.submitted",
            alert_id=alert_id,
            agency=agency,
            category=alert.category,
            severity=alert.severity,
            tlp=alert.tlp,
            channel="http",
            trace_id=tracing.trace_id(traceparent),
        )
        return web.json_response(
            {
                "alert_id": alert_id,
                "status": "accepted",
                "links": {"self": f"/v1/alerts/{alert_id}", "routing": f"/v1/alerts/{alert_id}/routing"},
            },
            status=202,
            headers={"traceparent": traceparent, "Location": f"/v1/alerts/{alert_id}"},
        )

    async def acknowledge(self, request: web.Request) -> web.Response:
        kind, agency = self._principal(request)
        alert_id = request.match_info["alert_id"]
        if kind != "agency":
            return error(403, "forbidden", "only a recipient agency acknowledges an alert")
        body = await request.read()
        try:
            ack = parse_ack(body)
        except InvalidSubmission as exc:
            if exc.malformed:
                return error(400, "invalid_ack", exc.problems[0][1])
            return error(422, "invalid_ack", "the acknowledgement was not accepted", exc.problems)
        status, state = await self._tracker_get(("alerts", alert_id, "recipient"), {"agency": agency})
        if status not in (200, 404):
            return error(503, "unavailable", "the tracker cannot answer now; retry")
        # An unknown alert gets the answer a stranger's gets: acking cannot probe which ids exist.
        if status == 404 or not state.get("recipient"):
            return error(403, "not_a_recipient", f"{agency} did not receive alert {alert_id}")
        if state.get("state") == "acknowledged":
            return web.json_response({"alert_id": alert_id, "agency": agency, "status": "already_acknowledged"})
        record = AckSubmitted(
            ack_id=str(uuid.uuid4()),
            alert_id=alert_id,
            agency=agency,
            response=ack.response,
            note=ack.note,
            channel="http",
            submitted_at=utcnow(),
        )
        if not await self._publish(
            ACKS_SUBMITTED,
            recipient_key(alert_id, agency),
            record,
            tracing.child_of(request.headers.get("traceparent")),
        ):
            return error(
                503, "unavailable", "the acknowledgement could not be stored; retry", headers={"Retry-After": "5"}
            )
        log.info("ack.submitted", alert_id=alert_id, agency=agency, response=ack.response, channel="http")
        return web.json_response({"alert_id": alert_id, "agency": agency, "status": "accepted"}, status=202)

    async def ask_onward(self, request: web.Request) -> web.Response:
        """A recipient asks the originator to let the system share an originator-controlled thread with an agency
        it names (router/onward.py decides it). Only a recipient that holds a copy may ask; anyone else gets
        the answer a stranger to the alert gets."""
        kind, agency = self._principal(request)
        alert_id = request.match_info["alert_id"]
        if kind != "agency":
            return error(403, "forbidden", "only a recipient agency asks to share an alert onward")
        try:
            ask = parse_onward_ask(await request.read())
        except InvalidSubmission as exc:
            if exc.malformed:
                return error(400, "invalid_request", exc.problems[0][1])
            return error(422, "invalid_request", "the request was not accepted", exc.problems)
        registry = self._registry.current
        if ask.agency not in registry.agencies:
            return error(
                422, "invalid_request", "no such agency", [("$.agency", f"{ask.agency} is not a member agency")]
            )
        if ask.agency == agency:
            return error(422, "invalid_request", "an agency holds its own copy", [("$.agency", "names the asker")])
        status, state = await self._tracker_get(("alerts", alert_id, "recipient"), {"agency": agency})
        if status not in (200, 404):
            return error(503, "unavailable", "the tracker cannot answer now; retry")
        if status == 404 or not state.get("recipient") or state.get("state") in ("withdrawn", "cancelled"):
            return error(403, "not_a_recipient", f"{agency} does not hold alert {alert_id}")
        thread_id = str(state.get("thread_id") or alert_id)
        status, mine = await self._tracker_get(("onward",), {"viewer_kind": kind, "viewer": agency})
        if status != 200:
            return error(503, "unavailable", "the tracker cannot answer now; retry")
        for earlier in mine.get("requests", ()):
            same = (earlier.get("thread_id"), earlier.get("requester"), earlier.get("target"))
            if same == (thread_id, agency, ask.agency) and earlier.get("state") == "requested":
                return error(
                    409, "conflict", f"request {earlier.get('request_id')} for {ask.agency} is pending already"
                )
        request_id = str(uuid.uuid4())
        action = OnwardAction(
            action_id=request_id,
            request_id=request_id,
            thread_id=thread_id,
            action="ask",
            agency=agency,
            target=ask.agency,
            text=ask.reason,
            at=utcnow(),
        )
        return await self._onward_accepted(request, action)

    async def onward_requests(self, request: web.Request) -> web.Response:
        """The onward-sharing requests the caller may see: an agency those it asked and those about its own
        alerts, an operator all."""
        if request.query:
            return error(400, "bad_query", "this path takes no query parameters")
        kind, name = self._principal(request)
        status, body = await self._tracker_get(("onward",), {"viewer_kind": kind, "viewer": name})
        if status != 200:
            return error(503, "unavailable", "the tracker cannot answer now; retry")
        return web.json_response(body)

    async def onward_request(self, request: web.Request) -> web.Response:
        status, body = await self._onward_view(request)
        if status == 503:
            return error(503, "unavailable", "the tracker cannot answer now; retry")
        return web.json_response(body, status=status)

    async def answer_onward(self, request: web.Request) -> web.Response:
        """The originator approves, refuses or revokes a request about its alert."""
        kind, agency = self._principal(request)
        if kind != "agency":
            return error(403, "forbidden", "only the originator decides a request to share its alert")
        try:
            answer = parse_onward_answer(await request.read())
        except InvalidSubmission as exc:
            if exc.malformed:
                return error(400, "invalid_request", exc.problems[0][1])
            return error(422, "invalid_request", "the decision was not accepted", exc.problems)
        status, view = await self._onward_view(request)
        if status == 503:
            return error(503, "unavailable", "the tracker cannot answer now; retry")
        if status != 200:
            return web.json_response(view, status=status)
        if view.get("origin") != agency:
            return error(403, "forbidden", "only the originator of the alert decides this request")
        wanted = "approved" if answer.decision == "revoke" else "requested"
        if view.get("state") != wanted:
            return error(
                409, "conflict", f"the request is {view.get('state')}: only a {wanted} one can be {answer.decision}d"
            )
        action = OnwardAction(
            action_id=str(uuid.uuid4()),
            request_id=request.match_info["request_id"],
            thread_id=str(view["thread_id"]),
            action=answer.decision,
            agency=agency,
            text=answer.note,
            at=utcnow(),
        )
        return await self._onward_accepted(request, action)

    async def _onward_view(self, request: web.Request) -> tuple[int, Any]:
        kind, name = self._principal(request)
        segments = ("onward", request.match_info["request_id"])
        return await self._tracker_get(segments, {"viewer_kind": kind, "viewer": name})

    async def _onward_accepted(self, request: web.Request, action: OnwardAction) -> web.Response:
        """Store a step for the router (keyed by its thread, so it reaches the thread's partition), and say so."""
        traceparent = tracing.child_of(request.headers.get("traceparent"))
        if not await self._publish(REQUESTS_ONWARD, action.thread_id.encode(), action, traceparent):
            return error(503, "unavailable", "the request could not be stored; retry", headers={"Retry-After": "5"})
        log.info(
            "onward.submitted",
            request_id=action.request_id,
            action=action.action,
            agency=action.agency,
            thread_id=action.thread_id,
        )
        link = f"/v1/onward/{action.request_id}"
        return web.json_response(
            {"request_id": action.request_id, "action": action.action, "status": "accepted", "links": {"self": link}},
            status=202,
            headers={"Location": link},
        )

    async def _publish(self, topic: str, key: bytes, record: msgspec.Struct, traceparent: str) -> bool:
        """Produce and wait for the broker's acknowledgement; False (logged) when Kafka cannot take it.

        A 202 is only ever answered for a record the broker acknowledged (acks=all), so an accepted
        alert is never lost; a failure is a 503 the client retries, safely with its Idempotency-Key.
        """
        outbox = self._outbox()
        try:
            await outbox.send(topic, key, record, traceparent)
            await outbox.flush()
        except (KafkaError, TimeoutError, OSError) as exc:
            log.error("kafka.produce_failed", topic=topic, key=key.decode(errors="replace"), error=repr(exc))
            return False
        return True

    async def alert_status(self, request: web.Request) -> web.Response:
        return await self._forward(request, ())

    async def alert_routing(self, request: web.Request) -> web.Response:
        return await self._forward(request, ("routing",))

    async def outstanding(self, request: web.Request) -> web.Response:
        """Acks still expected: an agency sees its own; an operator sees all, or one agency's with ?agency=."""
        scope = outstanding_scope(self._principal(request), request.query.items())
        if isinstance(scope, Refusal):
            return error(scope.status, scope.error, scope.message)
        params = {"agency": scope.agency} if scope.agency else {}
        status, body = await self._tracker_get(("outstanding",), params)
        if status != 200:
            return error(503, "unavailable", "the tracker cannot answer now; retry")
        return web.json_response(body)

    async def alert_list(self, request: web.Request) -> web.Response:
        """Routed alerts newest first with what each awaits, for operators only (access.py). The tracker's ETag
        passes through, and a request naming it in If-None-Match gets the tracker's 304 (a console polls this)."""
        principal = self._principal(request)
        query = alerts_query(principal, request.query.items())
        if isinstance(query, Refusal):
            return error(query.status, query.error, query.message)
        viewer = {"viewer_kind": principal[0], "viewer": principal[1]}
        tag = request.headers.get("If-None-Match")
        status, body, etag = await self._tracker_fetch(
            ("alerts",), {**viewer, **query.params}, {"If-None-Match": tag} if tag else {}
        )
        headers = {"ETag": etag} if etag else {}
        if status == 304:
            return web.Response(status=304, headers=headers)
        if status != 200:
            return error(503, "unavailable", "the tracker cannot answer now; retry")
        return web.json_response(body, headers=headers)

    async def correlations(self, request: web.Request) -> web.Response:
        """The duty desk's view: correlations newest first, for operators only (access.py)."""
        principal = self._principal(request)
        query = correlations_query(principal, request.query.items())
        if isinstance(query, Refusal):
            return error(query.status, query.error, query.message)
        viewer = {"viewer_kind": principal[0], "viewer": principal[1]}
        status, body = await self._tracker_get(("correlations",), {**viewer, **query.params})
        if status != 200:
            return error(503, "unavailable", "the tracker cannot answer now; retry")
        return web.json_response(body)

    async def correlation(self, request: web.Request) -> web.Response:
        """One correlation and whom the router told of it, for operators only."""
        kind, name = self._principal(request)
        refusal = desk_refusal((kind, name))
        if refusal is not None:
            return error(refusal.status, refusal.error, refusal.message)
        problem = path_problem(request.match_info)
        if problem is not None:
            return error(404, "not_found", problem)
        segments = ("correlations", request.match_info["correlation_id"])
        status, body = await self._tracker_get(segments, {"viewer_kind": kind, "viewer": name})
        if status not in (200, 404):
            return error(503, "unavailable", "the tracker cannot answer now; retry")
        return web.json_response(body, status=status)

    async def schema(self, request: web.Request) -> web.Response:
        """The writer schema a record's header names (its 8 fingerprint bytes in hex), self-contained."""
        fp = request.match_info["fingerprint"]
        schema = self._schemas.get(bytes.fromhex(fp)) if SCHEMA_FINGERPRINT.fullmatch(fp) else None
        if schema is None:
            return error(404, "not_found", "no schema has this fingerprint (16 hex digits, as in the header)")
        return web.json_response(schema)

    async def _forward(self, request: web.Request, suffix: tuple[str, ...]) -> web.Response:
        kind, name = self._principal(request)
        alert_id = request.match_info["alert_id"]
        status, body = await self._tracker_get(("alerts", alert_id, *suffix), {"viewer_kind": kind, "viewer": name})
        if status not in (200, 403, 404):
            return error(503, "unavailable", "the tracker cannot answer now; retry")
        return web.json_response(body, status=status)

    async def _tracker_get(self, segments: tuple[str, ...], params: dict[str, str]) -> tuple[int, Any]:
        """GET the tracker's /internal/<segments> with `params` quoted by yarl (segments are fixed names and
        validated alert ids). Any status but 200, 403 and 404 is the gateway's or the deployment's fault (a wrong
        internal token is a 401 here): logged, and the caller gets a 503."""
        status, body, _ = await self._tracker_fetch(segments, params)
        return status, body

    async def _tracker_fetch(
        self, segments: tuple[str, ...], params: dict[str, str], headers: dict[str, str] | None = None
    ) -> tuple[int, Any, str | None]:
        """_tracker_get with request headers, and the answer's ETag; a 304 (asked for with If-None-Match) has
        no body."""
        url = self._tracker_url.joinpath("internal", *segments).with_query(params)
        try:
            async with self._tracker.get(url, allow_redirects=False, headers=headers) as response:
                etag = response.headers.get("ETag")
                if response.status == 304 and headers and "If-None-Match" in headers:
                    return 304, None, etag
                if response.status not in (200, 403, 404):
                    log.error("tracker.refused", path=url.path, status=response.status, body=await response.text())
                    return 503, None, None
                return response.status, await response.json(), etag
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("tracker.unavailable", path=url.path, error=repr(exc))
            return 503, None, None


def _checked(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """`handler`, reached only when every path parameter has its exact form (access.py); 404 otherwise."""

    async def checked(request: web.Request) -> web.StreamResponse:
        problem = path_problem(request.match_info)
        if problem is not None:
            return error(404, "not_found", problem)
        return await handler(request)

    return checked
