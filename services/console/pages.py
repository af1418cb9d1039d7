"""The console's HTTP surface: login, the pages, their live streams and the operators' actions.

| route                                    | who                        | what                                       |
|------------------------------------------|----------------------------|--------------------------------------------|
| GET  /console/login, POST /console/login | anyone                     | an operator's bearer token -> a session    |
| POST /console/logout                     | a session, its form token  | ends the session                           |
| GET  /console/now, /alerts/{id},         | a session                  | the pages                                  |
|      /endpoints, /lag, /quarantine       |                            |                                            |
| GET  /console/stream/{page}[/{id}]       | a session (checked at      | Server-Sent Events: the page's live part,  |
|                                          | every tick)                | re-rendered when it changes                |
| POST /console/endpoints/{code}/{action}  | a session, its form token, | enable, disable, replay (dead deliveries)  |
|                                          | this origin                |                                            |
| GET  /console/static/{file}              | anyone                     | the stylesheet and the script              |

Who gets in: a token that authenticates as an operator of the registry in force (registry.credentials, the
gateway's check). An agency's token is refused (403) like a wrong one is (401): the console shows every
agency's alerts. The session cookie is HttpOnly, SameSite=Strict and, by default, Secure under the __Host-
prefix; the session keeps the token's SHA-256 and checks it against the credentials in force on every
request and every stream tick, so a revoked token or a removed operator is logged out at once.

Cross-site requests: every POST must come from this origin (Origin, else Referer) and carry the session's
form token (sessions.py says why both). Every answer forbids framing and inline scripts (CSP), and is never
cached. Agencies' text (titles, notes, receivers' errors) reaches pages only through autoescaping
templates, and the one script never builds HTML from data.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jinja2
import markupsafe
from aiohttp import web
from prometheus_client import Counter, Gauge

from services.common.errors import RctcError
from services.common.internal import is_alert_id
from services.common.logs import get_logger
from services.common.records import EndpointState
from services.common.registry.model import token_digest
from services.console.sessions import Session
from services.console.tracker import TrackerUnavailable
from services.console.views import alert_page, endpoint_rows, now_rows
from services.gateway.ratelimit import RateLimiter

if TYPE_CHECKING:
    from services.console.service import Console

log = get_logger("rctc.console")

LOGINS = Counter("rctc_console_logins_total", "Console log-in attempts, by outcome.", ["outcome"])
ACTIONS = Counter(
    "rctc_console_actions_total", "Operators' actions from the console, by action and outcome.", ["action", "outcome"]
)
STREAMS = Gauge("rctc_console_streams", "Live console pages open (Server-Sent Event streams).")

SESSION = web.RequestKey("session", Session)
_STATIC = {"console.css": "text/css", "console.js": "text/javascript"}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_PUBLIC = frozenset({"/console/login", "/console/static/console.css", "/console/static/console.js"})
_TOKEN_MAX = 512  # longer than any token `rctc token` makes: a bigger field is not a token
_HEARTBEAT_S = 15.0  # a comment line on a quiet stream, so proxies and the browser keep it open
ACTIONS_ALLOWED = ("enable", "disable", "replay")
_NO_COOKIE = (
    "Your browser did not keep the session cookie. The console's cookie is Secure: serve it over HTTPS (or on "
    "127.0.0.1), or, in a lab behind plain HTTP only, set RCTC_SESSIONS__SECURE_COOKIE=false."
)


def templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("services.console", "templates"),
        autoescape=True,  # every template, whatever its name: agencies' text is in all of them
        undefined=jinja2.StrictUndefined,
    )


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


class Pages:
    def __init__(self, console: Console) -> None:
        self.c = console
        self._env = templates()
        self._static = {
            name: resources.files("services.console").joinpath("static", name).read_bytes() for name in _STATIC
        }
        secure = console.settings.sessions.secure_cookie
        self.cookie = "__Host-rctc-console" if secure else "rctc-console"
        self._secure = secure
        # Log-in attempts: a bucket per address and one for everyone (tokens are 256-bit, so this guards the
        # service's CPU and the log, not the tokens).
        self._attempts = RateLimiter()
        self.now_html = ""  # "now"'s live fragment, rendered once per change for every open page

    # -- the application --------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=16 * 1024)
        app.on_response_prepare.append(_harden)
        r = app.router
        r.add_get("/console", self._home)
        r.add_get("/console/", self._home)
        r.add_get("/console/login", self._login_page)
        r.add_post("/console/login", self._login)
        r.add_post("/console/logout", self._logout)
        r.add_get("/console/now", self._now)
        r.add_get("/console/alerts/{alert_id}", self._alert)
        r.add_get("/console/endpoints", self._endpoints)
        r.add_post("/console/endpoints/{agency}/{action}", self._endpoint_action)
        r.add_get("/console/lag", self._lag)
        r.add_get("/console/quarantine", self._quarantine)
        r.add_get("/console/stream/now", self._stream_now)
        r.add_get("/console/stream/alerts/{alert_id}", self._stream_alert)
        r.add_get("/console/stream/endpoints", self._stream_endpoints)
        r.add_get("/console/stream/lag", self._stream_lag)
        r.add_get("/console/static/{name}", self._static_file)
        return app

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            if request.method == "POST" and not self._same_origin(request):
                log.warning("console.cross_origin", path=request.path, origin=request.headers.get("Origin"))
                return self._error(request, 403, "This form did not come from the console.")
            if request.path in _PUBLIC:
                return await handler(request)
            session = self.session_of(request)
            if session is None:
                if request.path.startswith("/console/stream/") or request.method == "POST":
                    return self._error(request, 401, "Your session has ended: log in again.")
                if "login" in request.query:
                    # Just logged in, yet no cookie came back: the browser refused a Secure cookie over plain
                    # HTTP from a host it does not count as secure (anything but loopback). Say so, rather
                    # than send the operator round the login page for ever.
                    return self._render(request, "login.html", status=401, page="login", problem=_NO_COOKIE)
                raise web.HTTPSeeOther("/console/login")
            if request.method == "POST":
                form = await request.post()
                csrf = form.get("csrf")
                if not session.accepts(csrf if isinstance(csrf, str) else None):
                    log.warning("console.bad_form_token", path=request.path, operator=session.operator)
                    return self._error(request, 403, "This form is stale or did not come from your session.")
            request[SESSION] = session
            return await handler(request)
        except web.HTTPRedirection:
            raise
        except web.HTTPException as exc:
            return self._error(request, exc.status, exc.reason)

    def session_of(self, request: web.Request) -> Session | None:
        """The request's live session, its operator and token still in force; None otherwise (and it ends)."""
        sid = request.cookies.get(self.cookie)
        session = self.c.sessions.find(sid, time.monotonic())
        if session is None:
            return None
        registry = self.c.registry.current
        if self.c.credentials.at(registry.version) is None:
            # This registry version's credentials are not read yet: the two topics are followed apart, and for
            # a moment after an apply one may lead. The session stands as last judged (for that moment) rather
            # than every operator being logged out by a republish; it is judged again at the next request.
            return session
        holder = self.c.credentials.holder_of(session.token_sha256, registry)
        if holder != ("operator", session.operator):
            self.c.sessions.close(sid)
            log.info("console.session_ended", operator=session.operator, reason="credential_not_in_force")
            return None
        return session

    @staticmethod
    def _same_origin(request: web.Request) -> bool:
        """True when a POST names this console as its origin (Origin, or Referer when a browser sent none)."""
        claimed = request.headers.get("Origin")
        if claimed is None or claimed == "null":
            referer = request.headers.get("Referer")
            if not referer:
                return False
            parts = urlsplit(referer)
            claimed = f"{parts.scheme}://{parts.netloc}"
        return claimed in (f"http://{request.host}", f"https://{request.host}")

    def _render(self, request: web.Request, template: str, status: int = 200, **values: Any) -> web.Response:
        session = request.get(SESSION)
        html = self._env.get_template(template).render(
            operator=session.operator if session else None,
            csrf=session.csrf if session else "",
            server_now=_now_iso(),
            **values,
        )
        return web.Response(text=html, status=status, content_type="text/html")

    def _error(self, request: web.Request, status: int, message: str) -> web.Response:
        if request.path.startswith("/console/stream/"):
            return web.Response(text=message, status=status, content_type="text/plain")
        return self._render(request, "error.html", status=status, page="", message=message, code=status)

    # -- log in, log out ----------------------------------------------------------------------------------

    async def _home(self, request: web.Request) -> web.Response:
        raise web.HTTPSeeOther("/console/now")

    async def _login_page(self, request: web.Request) -> web.Response:
        if self.session_of(request) is not None:
            raise web.HTTPSeeOther("/console/now")
        return self._render(request, "login.html", page="login", problem=None)

    async def _login(self, request: web.Request) -> web.Response:
        peer = request.remote or "?"
        if len(self._attempts) > 10_000:
            # Forget the addresses, never the bucket for everyone: otherwise attempts from 10,000 addresses
            # (each costs a bucket, even refused) would refill it, and the cap on all attempts would not hold.
            self._attempts.retain(("*",))
        if self._attempts.admit(peer, per_second=0.5, burst=10) or self._attempts.admit("*", per_second=20, burst=100):
            LOGINS.labels("rate_limited").inc()
            return self._render(request, "login.html", status=429, page="login", problem="Too many attempts: wait.")
        form = await request.post()
        token = form.get("token")
        token = token.strip() if isinstance(token, str) and len(token) <= _TOKEN_MAX else ""
        registry = self.c.registry.current
        if registry.version == 0:
            return self._render(
                request,
                "login.html",
                status=503,
                page="login",
                problem="No registry is in force yet: nobody can log in.",
            )
        principal = self.c.credentials.authenticate(token, registry) if token else None
        if principal is None:
            LOGINS.labels("refused").inc()
            log.warning("console.login_refused", peer=peer, reason="unknown_token")
            return self._render(
                request,
                "login.html",
                status=401,
                page="login",
                problem="That token is not an operator's token in the registry in force.",
            )
        kind, name = principal
        if kind != "operator":
            LOGINS.labels("not_operator").inc()
            log.warning("console.login_refused", peer=peer, reason="agency_token", agency=name)
            return self._render(
                request,
                "login.html",
                status=403,
                page="login",
                problem="This console is for the center's operators: an agency's token has no access.",
            )
        self.c.sessions.close(request.cookies.get(self.cookie))  # never keep a session id from before log-in
        sid, _ = self.c.sessions.open(name, token_digest(token), time.monotonic())
        LOGINS.labels("ok").inc()
        log.info("console.login", operator=name, peer=peer)
        response = web.HTTPSeeOther("/console/now?login")
        response.set_cookie(self.cookie, sid, path="/", httponly=True, samesite="Strict", secure=self._secure)
        raise response

    async def _logout(self, request: web.Request) -> web.Response:
        self.c.sessions.close(request.cookies.get(self.cookie))
        log.info("console.logout", operator=request[SESSION].operator)
        response = web.HTTPSeeOther("/console/login")
        response.del_cookie(self.cookie, path="/")
        raise response

    # -- pages ----------------------------------------------------------------------------------------------

    def board_changed(self) -> None:
        """Render "now" again from the latest board (called after each poll of the tracker)."""
        rows = now_rows(self.c.board, self.c.contents.by_id)
        self.now_html = self._env.get_template("_now.html").render(
            rows=rows, stale=not self.c.board_ok, full=self.c.board_full, server_now=_now_iso()
        )

    async def _now(self, request: web.Request) -> web.Response:
        rows = now_rows(self.c.board, self.c.contents.by_id)
        return self._render(
            request, "now.html", page="now", rows=rows, stale=not self.c.board_ok, full=self.c.board_full
        )

    async def _alert_view(self, request: web.Request, alert_id: str) -> tuple[int, dict[str, Any]]:
        viewer = {"viewer_kind": "operator", "viewer": request[SESSION].operator}
        status, body, _ = await self.c.tracker.get(("alerts", alert_id), viewer)
        if status != 200:
            return status, {"message": (body or {}).get("message", "no such alert")}
        routing_status, routing, _ = await self.c.tracker.get(("alerts", alert_id, "routing"), viewer)
        thread = self.c.contents.thread(alert_id, body.get("origin"))
        thread_id = body.get("thread_id") or (thread[0].thread_id if thread else alert_id)
        _, correlated, _ = await self.c.tracker.get(("correlations",), {**viewer, "thread": thread_id, "limit": "100"})
        view = alert_page(
            alert_id,
            body,
            routing if routing_status == 200 else None,
            self.c.contents.by_id,
            thread,
            (correlated or {}).get("correlations", ()),
        )
        return 200, {"view": view, "thread_id": thread_id}

    async def _alert(self, request: web.Request) -> web.Response:
        alert_id = request.match_info["alert_id"]
        if not is_alert_id(alert_id):
            return self._error(request, 404, "No such alert: an alert id is a UUID.")
        try:
            status, values = await self._alert_view(request, alert_id)
        except TrackerUnavailable as exc:
            return self._error(request, 502, f"The tracker cannot answer now ({exc}).")
        if status != 200:
            return self._error(request, 404, values["message"])
        return self._render(request, "alert.html", page="alert", alert_id=alert_id, **values)

    async def _endpoint_values(self) -> dict[str, Any]:
        registry = self.c.registry.current
        try:
            _, body, _ = await self.c.tracker.get(("webhooks",), {})
            tally, problem = (body or {}).get("agencies", {}), None
        except TrackerUnavailable as exc:
            tally, problem = {}, f"Delivery counts are unavailable: {exc}."
        rows = endpoint_rows(registry if registry.version else None, self.c.endpoints.current, tally)
        names = {code: a.name for code, a in registry.agencies.items()}
        return {"rows": rows, "names": names, "tally_problem": problem}

    async def _endpoints(self, request: web.Request) -> web.Response:
        session = request[SESSION]
        notice, problem = session.flash
        session.flash = (None, None)
        values = await self._endpoint_values()
        return self._render(
            request,
            "endpoints.html",
            page="endpoints",
            notice=notice,
            problem=problem or values.pop("tally_problem"),
            **values,
        )

    async def _endpoint_action(self, request: web.Request) -> web.Response:
        """Enable, disable or replay through the same functions as `rctc endpoints` and `rctc deliveries`."""
        from services.cli.deliveries import change_endpoint, replay_dead

        session = request[SESSION]
        agency, action = request.match_info["agency"], request.match_info["action"]
        registry = self.c.registry.current
        if action not in ACTIONS_ALLOWED or agency not in registry.agencies:
            return self._error(request, 404, "No such endpoint action.")
        kafka = self.c.settings.kafka
        by = f"operator:{session.operator}"
        try:
            if action == "replay":
                result = await replay_dead(kafka, agency, None, None)
                notice = f"{agency}: replayed {result.replayed} dead deliveries" + (
                    f", dropped {len(result.dropped)} no longer permitted" if result.dropped else ""
                )
            else:
                state: EndpointState = "active" if action == "enable" else "disabled"
                await change_endpoint(kafka, agency, state, f"{action}d by {session.operator} (console)", by=by)
                notice = f"{agency}: {state}"
            session.flash = (notice, None)
            ACTIONS.labels(action, "ok").inc()
            log.info("console.action", operator=session.operator, action=action, agency=agency, outcome="ok")
        except RctcError as exc:
            session.flash = (None, str(exc))
            ACTIONS.labels(action, "refused").inc()
            log.warning(
                "console.action",
                operator=session.operator,
                action=action,
                agency=agency,
                outcome="refused",
                error=str(exc),
            )
        raise web.HTTPSeeOther("/console/endpoints")

    async def _lag_values(self) -> dict[str, Any]:
        from services.common.lag import fetch_lag

        try:
            rows, problem = await fetch_lag(self.c.settings.kafka), None
        except Exception as exc:  # the broker's answer, shown to the operator rather than a broken page
            log.warning("console.lag_unavailable", error=repr(exc))
            rows, problem = [], f"Lag is unavailable: {exc}"
        return {"rows": rows, "problem": problem, "read_at": _now_iso()}

    async def _lag(self, request: web.Request) -> web.Response:
        return self._render(request, "lag.html", page="lag", **await self._lag_values())

    async def _quarantine(self, request: web.Request) -> web.Response:
        from services.cli.quarantine import latest_quarantined

        try:
            rows, problem = await latest_quarantined(self.c.settings.kafka, self.c.codec, None, 200), None
        except Exception as exc:
            log.warning("console.quarantine_unavailable", error=repr(exc))
            rows, problem = [], f"The quarantine is unavailable: {exc}"
        return self._render(request, "quarantine.html", page="quarantine", rows=rows, problem=problem)

    async def _static_file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in _STATIC:
            raise web.HTTPNotFound()
        return web.Response(body=self._static[name], content_type=_STATIC[name])

    # -- live streams ---------------------------------------------------------------------------------------

    async def _stream(
        self, request: web.Request, render: Callable[[], Awaitable[str]], period_s: float
    ) -> web.StreamResponse:
        """Server-Sent Events: `render()`'s fragment whenever it differs from the last one sent. The session is
        checked at every tick; once it has ended the page is told to log in again and the stream ends."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
        await response.prepare(request)
        STREAMS.inc()
        sent: str | None = None
        quiet_since = time.monotonic()
        try:
            while not self.c.closing.is_set():
                if self.session_of(request) is None:
                    await response.write(b"event: logout\ndata: \n\n")
                    break
                try:
                    html = await render()
                except TrackerUnavailable:
                    html = sent or ""
                if html != sent:
                    await response.write(_event("fragment", html))
                    sent, quiet_since = html, time.monotonic()
                elif time.monotonic() - quiet_since > _HEARTBEAT_S:
                    await response.write(b": still here\n\n")
                    quiet_since = time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.c.closing.wait(), period_s)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            STREAMS.dec()
        return response

    async def _stream_now(self, request: web.Request) -> web.StreamResponse:
        async def render() -> str:
            return self.now_html

        return await self._stream(request, render, min(0.5, self.c.settings.refresh_s))

    async def _stream_alert(self, request: web.Request) -> web.StreamResponse:
        alert_id = request.match_info["alert_id"]
        if not is_alert_id(alert_id):
            return self._error(request, 404, "no such alert")
        template = self._env.get_template("_alert.html")

        async def render() -> str:
            status, values = await self._alert_view(request, alert_id)
            if status != 200:
                return f'<p class="problem">{markupsafe.escape(values["message"])}</p>'
            return template.render(server_now=_now_iso(), **values)

        return await self._stream(request, render, self.c.settings.refresh_s)

    async def _stream_endpoints(self, request: web.Request) -> web.StreamResponse:
        template = self._env.get_template("_endpoints.html")
        csrf = request[SESSION].csrf

        async def render() -> str:
            values = await self._endpoint_values()
            values.pop("tally_problem")
            return template.render(server_now=_now_iso(), csrf=csrf, **values)

        return await self._stream(request, render, self.c.settings.refresh_s)

    async def _stream_lag(self, request: web.Request) -> web.StreamResponse:
        template = self._env.get_template("_lag.html")

        async def render() -> str:
            values = await self._lag_values()
            values["read_at"] = ""  # unchanged lag is not news
            return template.render(server_now=_now_iso(), **values)

        return await self._stream(request, render, self.c.settings.slow_refresh_s)


def _event(name: str, data: str) -> bytes:
    """One Server-Sent Event; each line of `data` on a `data:` line of its own (the spec joins them with \\n)."""
    lines = "".join(f"data: {line}\n" for line in data.replace("\r", "").split("\n"))
    return f"event: {name}\n{lines}\n".encode()


async def _harden(request: web.Request, response: web.StreamResponse) -> None:
    """Headers on every answer: no framing, scripts and styles from this origin only, nothing cached."""
    h = response.headers
    h["Content-Security-Policy"] = _CSP
    h["X-Content-Type-Options"] = "nosniff"
    h["X-Frame-Options"] = "DENY"
    # same-origin, not no-referrer: under no-referrer a browser sends `Origin: null` with a form's POST, and
    # the same-origin check above could tell the console's own forms from nobody's. Nothing leaves the site.
    h["Referrer-Policy"] = "same-origin"
    h["Cache-Control"] = "no-store"
    h["Cross-Origin-Opener-Policy"] = "same-origin"
    h["Cross-Origin-Resource-Policy"] = "same-origin"
