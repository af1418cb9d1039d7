"""Red-team attacks on the operator console against the whole system on the real broker. Each test asserts the
secure outcome, so it fails while the hole it names is open.

Attackers: a hostile member agency (its own gateway token, any text in its alerts and acks, its own webhook
receiver); a malicious web site an operator visits while logged in (served here from another port of the
same host, which is the same *site* for cookies, and from names Chromium resolves to 127.0.0.1, which are
other sites: a DNS-rebinding attacker's); and someone who reaches the console's port with no operator token.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import web
from playwright.async_api import Browser, async_playwright, expect
from yarl import URL

from services.common.codec import Codec
from services.common.ops import bound_port
from services.common.registry.model import Agency
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings
from tests.support.browser import CHROMIUM, FLAGS, log_in
from tests.support.system import System, system
from tests.support.world import Cast, agreement, alert_json, eventually, registry

OPERATOR = "operator-token-red-team"
LIVE_MS = 30_000
# Other sites for the browser, all 127.0.0.1: the DNS-rebinding attacker's names.
EVIL_SITE = "evil.test"
REBOUND = "console.evil.test"


@asynccontextmanager
async def console_system(
    kafka: KafkaSettings, codec: Codec, cast: Cast, doc_agencies: list[Agency], **console: int
) -> AsyncIterator[System]:
    """The whole system with the console, under a registry of `doc_agencies` and the operator's token."""
    doc = registry(doc_agencies, [agreement(f"RED-{cast.suffix}", [a.code for a in doc_agencies])], OPERATOR)
    await publish_registry(kafka, codec, doc, source="test", replication_factor=1)
    async with system(
        kafka,
        codec,
        dispatcher={"retry_time_scale": 0.01},
        console={"refresh_s": 0.3, "slow_refresh_s": 1.0, **console},
    ) as sys_:
        c = sys_.console
        assert c is not None
        await eventually(lambda: c.credentials.at(c.registry.current.version) is not None)
        yield sys_


def _base(sys_: System) -> str:
    assert sys_.console is not None
    return f"http://127.0.0.1:{sys_.console.port}"


async def _login(http: aiohttp.ClientSession, base: str, token: str, **headers: str) -> aiohttp.ClientResponse:
    async with http.post(
        f"{base}/console/login",
        data={"token": token},
        headers={"Origin": base, **headers},
        allow_redirects=False,
    ) as r:
        await r.read()
        return r


def _sid(response: aiohttp.ClientResponse) -> str | None:
    morsel = response.cookies.get("__Host-rctc-console")
    return morsel.value if morsel is not None else None


async def test_network_attacker_without_an_operator_token_gets_nothing(kafka: KafkaSettings, codec: Codec) -> None:
    """No session, a guessed or fixed session id, an agency's token, a cross-site log-in, traversal on the
    static route, an oversized body: no page, no stream, no action, no session cookie."""
    cast = Cast()
    agency = cast.agency("IQ-A", "IQ", webhook_url="http://127.0.0.1:9")
    other = cast.agency("JO-B", "JO")
    async with (
        console_system(kafka, codec, cast, [agency, other]) as sys_,
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http,
    ):
        base = _base(sys_)
        console = sys_.console
        assert console is not None

        # No session: pages redirect to the log-in page, streams and actions are refused without a body.
        for path in ("/console/now", "/console/endpoints", "/console/lag", "/console/quarantine", "/console/"):
            async with http.get(base + path, allow_redirects=False) as r:
                assert (r.status, r.headers["Location"]) == (303, "/console/login"), path
        for path in ("/console/stream/now", "/console/stream/endpoints", "/console/stream/lag"):
            async with http.get(base + path) as r:
                assert (r.status, r.content_type) == (401, "text/plain"), path
        async with http.post(
            f"{base}/console/endpoints/{agency.code}/disable", data={"csrf": "x"}, headers={"Origin": base}
        ) as r:
            assert r.status == 401

        # Guessed session ids (and an empty one, and a huge one): no page.
        for sid in ("", "0", secrets.token_urlsafe(32), "a" * 4000, "../../", "%00"):
            async with http.get(
                f"{base}/console/now", headers={"Cookie": f"__Host-rctc-console={sid}"}, allow_redirects=False
            ) as r:
                assert r.status == 303, sid

        # An agency's token, and a wrong one: refused, and no session cookie.
        refused = await _login(http, base, cast.tokens[agency.code])
        assert (refused.status, _sid(refused)) == (403, None)
        refused = await _login(http, base, "not-" + OPERATOR)
        assert (refused.status, _sid(refused)) == (401, None)
        # The operator's token, from another origin (login CSRF), or with no Origin or Referer at all: refused.
        for headers in ({"Origin": "http://evil.test"}, {"Origin": "null"}, {"Origin": ""}):
            refused = await _login(http, base, OPERATOR, **headers)
            assert (refused.status, _sid(refused)) == (403, None), headers

        # An oversized log-in body: refused before it is read whole, no session.
        refused = await _login(http, base, OPERATOR + "x" * 100_000)
        assert (refused.status, _sid(refused)) == (413, None)

        # Session fixation: a session id the attacker planted before log-in is not the one issued, nor valid.
        planted = secrets.token_urlsafe(32)
        ok = await _login(http, base, OPERATOR, Cookie=f"__Host-rctc-console={planted}")
        assert ok.status == 303
        sid = _sid(ok)
        assert sid is not None and sid != planted
        cookie = ok.headers["Set-Cookie"]
        for attribute in ("HttpOnly", "SameSite=Strict", "Secure", "Path=/"):
            assert attribute in cookie
        assert "Domain" not in cookie and "Max-Age" not in cookie and "expires" not in cookie.lower()
        async with http.get(
            f"{base}/console/now", headers={"Cookie": f"__Host-rctc-console={planted}"}, allow_redirects=False
        ) as r:
            assert r.status == 303

        # With the operator's session but not its form token (a forged form, a browser that sends no Origin
        # check would stop): refused, the endpoint untouched; an oversized form: refused before it is read.
        session_cookie = {"Cookie": f"__Host-rctc-console={sid}", "Origin": base}
        for form in ({"csrf": "guessed"}, {}, {"csrf": ""}, {"csrf": "x" * 16_000}):
            async with http.post(
                f"{base}/console/endpoints/{agency.code}/disable", data=form, headers=session_cookie
            ) as r:
                assert r.status in (403, 413), form
        async with http.post(
            f"{base}/console/endpoints/{agency.code}/disable", data={"csrf": "x" * 100_000}, headers=session_cookie
        ) as r:
            assert r.status == 413
        assert console.endpoints.current.get(agency.code) is None

        # The operator's session does not open with the agency's Authorization header either.
        async with http.get(f"{base}/console/now", headers=cast.bearer(agency.code), allow_redirects=False) as r:
            assert r.status == 303

        # Traversal and look-alikes on the static route: only the two files, never the package's source.
        for raw in (
            "/console/static/..%2Fpages.py",
            "/console/static/%2e%2e%2fsettings.py",
            "/console/static/..%5Csettings.py",
            "/console/static/console.js%00",
            "/console/static/console.js%2F",
            "/console/static/./console.js/../../pages.py",
            "/console/static/templates%2Fbase.html",
            "/console/static/__init__.py",
        ):
            async with http.get(URL(base + raw, encoded=True), allow_redirects=False) as r:
                text = await r.text()
                assert r.status in (303, 404), raw
                assert "import" not in text and "{%" not in text, raw
        async with http.get(f"{base}/console/static/console.js") as r:
            assert (r.status, r.content_type) == (200, "text/javascript")
            assert r.headers["X-Content-Type-Options"] == "nosniff"

        # Every answer, the refusals too, forbids framing and inline scripts and is never cached.
        async with http.get(f"{base}/console/login") as r:
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
            assert "script-src 'self'" in r.headers["Content-Security-Policy"]
            assert (r.headers["X-Frame-Options"], r.headers["Cache-Control"]) == ("DENY", "no-store")
            assert "Access-Control-Allow-Origin" not in r.headers


async def _first_event(stream: aiohttp.StreamReader) -> str:
    """The name of the next Server-Sent Event on `stream`."""
    while True:
        line = (await stream.readline()).decode()
        if not line:
            return ""
        if line.startswith("event:"):
            return line[6:].strip()


async def _stream_until(stream: aiohttp.StreamReader, name: str) -> bool:
    while True:
        event = await _first_event(stream)
        if event in (name, ""):
            return event == name


async def test_a_revoked_token_or_a_removed_operator_loses_its_session_and_its_open_stream(
    kafka: KafkaSettings, codec: Codec
) -> None:
    """A session and an open stream end when the registry stops listing the operator's token, and when it
    stops listing the operator: the stream says `logout` and closes, the cookie opens nothing more."""
    cast = Cast()
    agencies = [cast.agency("IQ-A", "IQ"), cast.agency("JO-B", "JO")]
    agreements = [agreement(f"RED-{cast.suffix}", [a.code for a in agencies])]
    async with (
        console_system(kafka, codec, cast, agencies) as sys_,
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http,
    ):
        base = _base(sys_)
        console = sys_.console
        assert console is not None

        async def open_session(token: str) -> str:
            ok = await _login(http, base, token)
            assert ok.status == 303
            sid = _sid(ok)
            assert sid is not None
            return sid

        async def still_in(sid: str) -> bool:
            async with http.get(
                f"{base}/console/now", headers={"Cookie": f"__Host-rctc-console={sid}"}, allow_redirects=False
            ) as r:
                return r.status == 200

        for change in ("token revoked", "operator removed"):
            version = console.registry.current.version
            token = OPERATOR if change == "token revoked" else OPERATOR + "-rotated"
            sid = await open_session(token)
            assert await still_in(sid)
            async with http.get(
                f"{base}/console/stream/now", headers={"Cookie": f"__Host-rctc-console={sid}"}
            ) as stream:
                assert (stream.status, stream.content_type) == (200, "text/event-stream")
                assert await _first_event(stream.content) == "fragment"
                # The center rotates the operator's token, or drops the operator from the registry.
                doc = registry(agencies, agreements, OPERATOR + "-rotated" if change == "token revoked" else None)
                await publish_registry(kafka, codec, doc, source="test", replication_factor=1)
                await eventually(lambda v=version: console.registry.current.version > v)
                async with asyncio.timeout(15):
                    assert await _stream_until(stream.content, "logout"), change
                    # The rest of that event, then the end of the stream (read() returns at its end only).
                    assert (await stream.content.read()).strip() == b"data:"
            assert not await still_in(sid), change
            if change == "token revoked":
                # The revoked token cannot log in again; the new one can.
                assert (await _login(http, base, OPERATOR)).status == 401
        # No operator listed at all: nobody logs in.
        assert (await _login(http, base, OPERATOR + "-rotated")).status == 401


@asynccontextmanager
async def chromium_with_evil_names() -> AsyncIterator[Browser]:
    """Debian's Chromium (tests/support/browser.py's flags) resolving the attacker's names to 127.0.0.1."""
    rules = f"--host-resolver-rules=MAP {EVIL_SITE} 127.0.0.1,MAP {REBOUND} 127.0.0.1"
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=[*FLAGS, rules], timeout=60_000)
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield bound_port(runner)
    finally:
        await runner.cleanup()


def hostile_receiver() -> web.Application:
    """The hostile agency's webhook receiver: every delivery fails with markup in its body and headers."""

    async def receive(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(
            status=500,
            text='<script>window.pwned="receiver"</script>',
            content_type="text/html",
            headers={"X-Error": '"><img src=x onerror=window.pwned="receiver-header">'},
        )

    app = web.Application()
    app.router.add_post("/hooks/{agency}", receive)
    return app


def evil_site(console: str, agency: str) -> web.Application:
    """The malicious web site an operator visits while logged in (no CSP: its own inline scripts run)."""
    pages = {
        "frame": f'<iframe id="f" src="{console}/console/now" width="800" height="600"></iframe>',
        "csrf": (
            f'<form id="f" method="post" action="{console}/console/endpoints/{agency}/disable">'
            '<input name="csrf" value="guessed"><input name="action" value="disable"></form>'
            '<script>document.getElementById("f").submit()</script>'
        ),
        "read": f"""<script>
window.result = {{}};
fetch("{console}/console/now", {{credentials: "include"}})
  .then(r => r.text()).then(t => window.result.page = t).catch(e => window.result.page = "refused");
fetch("{console}/console/stream/endpoints", {{credentials: "include"}})
  .then(r => r.text()).then(t => window.result.stream = t).catch(e => window.result.stream = "refused");
const source = new EventSource("{console}/console/stream/endpoints", {{withCredentials: true}});
window.result.events = [];
source.addEventListener("fragment", e => window.result.events.push(e.data));
source.onerror = () => {{ window.result.sse = "refused"; source.close(); }};
</script>""",
    }

    async def page(request: web.Request) -> web.Response:
        return web.Response(
            text=f"<!doctype html><body>{pages[request.match_info['name']]}</body>", content_type="text/html"
        )

    app = web.Application()
    app.router.add_get("/{name}", page)
    return app


XSS = {
    "title": '<script>window.pwned="title"</script><img src=x onerror="window.pwned=\'title-img\'">',
    "summary": '</p><svg onload="window.pwned=\'summary\'"></svg><a href="javascript:window.pwned=1">x</a>',
    "note": "</div><iframe srcdoc=\"<script>parent.pwned='note'</script>\"></iframe>\n\nevent: logout\ndata: x",
}


async def test_hostile_agency_text_stays_inert_and_cannot_join_another_agencys_thread(
    kafka: KafkaSettings, codec: Codec
) -> None:
    """A hostile agency's title, summary, ack note and receiver's failures are shown as text and run nothing;
    its Update of another agency's alert (which the router refuses) and its Alert referencing it are not
    listed among that alert's versions on the operator's page."""
    async with serving(hostile_receiver()) as receiver_port:
        cast = Cast()
        victim = cast.agency("IQ-V", "IQ")
        hostile = cast.agency("XX-H", "JO", webhook_url=f"http://127.0.0.1:{receiver_port}")
        async with (
            console_system(kafka, codec, cast, [victim, hostile]) as sys_,
            aiohttp.ClientSession() as http,
            chromium_with_evil_names() as browser,
        ):
            base = _base(sys_)
            console = sys_.console
            assert console is not None

            async def submit(agency: str, **fields: object) -> str:
                body = alert_json(affected_countries=["IQ"], **fields)
                async with http.post(f"{sys_.url}/v1/alerts", json=body, headers=cast.bearer(agency)) as r:
                    assert r.status == 202, await r.text()
                    alert_id: str = (await r.json())["alert_id"]
                    return alert_id

            own = await submit(victim.code, title="Convoy at the border")
            xss = await submit(hostile.code, title=XSS["title"], summary=XSS["summary"])
            spoof = await submit(
                hostile.code, msg_type="Update", references=[own], title="STAND DOWN: convoy was a false alarm"
            )
            alike = await submit(hostile.code, references=[own], title="Disregard the convoy alert")
            await eventually(lambda: all(i in console.contents.by_id for i in (own, xss, spoof, alike)))

            # The hostile agency received the victim's alert: it acknowledges it with markup in its note.
            async def acknowledge() -> bool:
                async with http.post(
                    f"{sys_.url}/v1/alerts/{own}/ack",
                    json={"response": "actioned", "note": XSS["note"]},
                    headers=cast.bearer(hostile.code),
                ) as r:
                    return r.status == 202

            await eventually(acknowledge, within_s=30)

            page = await browser.new_page()
            assert await log_in(page, f"{base}/console", OPERATOR) == 200
            row = page.locator(f'tr[data-alert="{xss}"]')
            await expect(row).to_be_visible(timeout=LIVE_MS)
            assert await row.locator(".title").inner_text() == XSS["title"]

            await page.goto(f"{base}/console/alerts/{own}")
            note = page.locator(f'table.recipients tr[data-agency="{hostile.code}"] .note')
            await expect(note).to_be_attached(timeout=LIVE_MS)
            assert XSS["note"] == await note.text_content()
            # Its webhook failed: whatever the receiver answered is not markup on the page.
            await expect(page.locator(f'table.recipients tr[data-agency="{hostile.code}"]')).to_contain_text(
                "attempt", timeout=LIVE_MS
            )
            versions = page.locator("ol.versions")
            await expect(versions).to_contain_text("Convoy at the border")
            assert "STAND DOWN" not in await versions.inner_text()
            assert "Disregard" not in await versions.inner_text()
            assert page.url == f"{base}/console/alerts/{own}"  # no forged `logout` event moved the page

            await page.goto(f"{base}/console/alerts/{xss}")
            await expect(page.locator("h1 .title")).to_have_text(XSS["title"])
            await expect(page.locator(".summary")).to_have_text(XSS["summary"])
            assert await page.locator("main img, main svg, main iframe, main script").count() == 0
            assert await page.evaluate("window.pwned") is None


async def test_a_malicious_site_cannot_frame_forge_or_read_the_console(kafka: KafkaSettings, codec: Codec) -> None:
    """While an operator is logged in, another site (and another port of the console's host, which is the
    same site for cookies) cannot frame the console, post an action or a log-in, or read a page or a stream;
    a DNS-rebinding name for the console's address gets the log-in page only."""
    cast = Cast()
    agency = cast.agency("IQ-A", "IQ", webhook_url="http://127.0.0.1:9")
    other = cast.agency("JO-B", "JO")
    async with console_system(kafka, codec, cast, [agency, other]) as sys_, chromium_with_evil_names() as browser:
        base = _base(sys_)
        console = sys_.console
        assert console is not None
        async with serving(evil_site(base, agency.code)) as evil_port:
            page = await browser.new_page()
            assert await log_in(page, f"{base}/console", OPERATOR) == 200
            for evil in (f"http://127.0.0.1:{evil_port}", f"http://{EVIL_SITE}:{evil_port}"):
                # Clickjacking: the console refuses to be framed (frame-ancestors 'none', X-Frame-Options).
                await page.goto(f"{evil}/frame", wait_until="load")
                framed = [await f.content() for f in page.frames if f != page.main_frame]
                assert framed and not any("Alerts awaiting" in html for html in framed), evil

                # CSRF: the site's form posts an action; the console refuses it and the endpoint stays active.
                async with page.expect_navigation(url=f"{base}/console/endpoints/{agency.code}/disable") as nav:
                    await page.goto(f"{evil}/csrf")
                response = await nav.value
                assert response is not None and response.status in (401, 403), evil
                assert console.endpoints.current.get(agency.code) is None

                # Cross-origin reads of a page and of a stream: refused by the browser (no CORS), no fragment.
                await page.goto(f"{evil}/read")
                await page.wait_for_function(
                    "window.result && window.result.page && window.result.stream && window.result.sse"
                )
                result = await page.evaluate("window.result")
                assert (
                    result["page"],
                    result["stream"],
                    result["sse"],
                    result["events"],
                ) == ("refused", "refused", "refused", []), evil

            # The operator is still logged in on the console itself (nothing above logged them out).
            await page.goto(f"{base}/console/endpoints")
            assert page.url == f"{base}/console/endpoints"
            await expect(page.locator(f'tr.endpoint[data-agency="{agency.code}"]')).to_have_attribute(
                "data-state", "active"
            )

            # DNS rebinding: a name of the attacker's that resolves to the console's address is another site,
            # so the operator's cookie is not sent to it; the attacker reaches the log-in page, nothing more.
            rebound = f"http://{REBOUND}:{console.port}"
            await page.goto(f"{rebound}/console/now")
            assert page.url == f"{rebound}/console/login"
            status = await page.evaluate(
                "fetch('/console/stream/endpoints', {credentials: 'include'}).then(r => r.status)"
            )
            assert status == 401


async def test_a_flooding_agency_cannot_push_other_agencies_alerts_off_now(kafka: KafkaSettings, codec: Codec) -> None:
    """The tracker lists the newest open alerts up to the board's limit: a hostile agency that submits that
    many after another agency's alert must not hide it from "now" (each agency's newest stay on the board)."""
    cast = Cast()
    victim, hostile, third = cast.agency("IQ-V", "IQ"), cast.agency("XX-H", "JO"), cast.agency("SA-T", "SA")
    async with (
        console_system(kafka, codec, cast, [victim, hostile, third], board_limit=3, board_origin_limit=1) as sys_,
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http,
    ):
        base = _base(sys_)
        console = sys_.console
        assert console is not None

        async def submit(agency: str, title: str) -> str:
            body = alert_json(severity="Severe", urgency="Immediate", affected_countries=["IQ"], title=title)
            async with http.post(f"{sys_.url}/v1/alerts", json=body, headers=cast.bearer(agency)) as r:
                assert r.status == 202, await r.text()
                alert_id: str = (await r.json())["alert_id"]
                return alert_id

        own = await submit(victim.code, "Convoy at the border")
        await eventually(lambda: own in [a["alert_id"] for a in console.board])
        flood = [await submit(hostile.code, f"Noise {i}") for i in range(4)]
        await eventually(lambda: flood[-1] in [a["alert_id"] for a in console.board], within_s=30)
        sid = _sid(await _login(http, base, OPERATOR))
        async with http.get(f"{base}/console/now", headers={"Cookie": f"__Host-rctc-console={sid}"}) as r:
            html = await r.text()
        assert f'data-alert="{own}"' in html
        assert "more are open than the board holds" in html
