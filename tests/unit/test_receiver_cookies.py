"""A webhook receiver cannot make the dispatcher keep state for it: no cookie it sets is ever sent back.

Every delivery goes out on one HTTP session shared by all endpoints. With a cookie jar, a hostile agency's
receiver could answer `Set-Cookie: ...; Domain=<a parent domain>` and have its value sent with every delivery
to another agency's receiver under that domain (cookies are not isolated by port, and a Domain attribute
widens them to every subdomain), or answer thousands of distinct cookies and grow the dispatcher's memory
without bound. Here the two receivers are hostile.agency.test and victim.agency.test (a DNS that answers
127.0.0.1 for every name), and the hostile one plants a cookie for agency.test and 100 more besides
(aiohttp refuses a response of over 128 headers).
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestServer

from services.common.codec import Codec
from services.common.registry import WebhookEntry
from services.dispatcher.service import Dispatcher
from services.dispatcher.settings import DispatcherSettings
from tests.support.receivers import LoopbackDNS, delivery
from tests.support.world import new_secret


async def test_a_cookie_a_receiver_sets_is_sent_to_no_receiver(codec: Codec) -> None:
    seen: dict[str, list[str | None]] = {"hostile": [], "victim": []}

    async def hostile(request: web.Request) -> web.Response:
        seen["hostile"].append(request.headers.get("Cookie"))
        response = web.Response(status=204)
        response.set_cookie("planted", "hostile-value", domain="agency.test", path="/")
        for n in range(100):
            response.set_cookie(f"filler{n}", "x" * 100, path="/")
        return response

    async def victim(request: web.Request) -> web.Response:
        seen["victim"].append(request.headers.get("Cookie"))
        return web.Response(status=204)

    apps = []
    for handler in (hostile, victim):
        app = web.Application()
        app.router.add_post("/hook", handler)
        apps.append(app)
    dispatcher = Dispatcher(DispatcherSettings(allow_private_endpoints=True), codec)
    dispatcher._open_sessions(LoopbackDNS())
    secrets = [new_secret()]
    try:
        async with TestServer(apps[0], host="127.0.0.1") as bad, TestServer(apps[1], host="127.0.0.1") as good:
            hooks = [
                WebhookEntry(url=f"http://{name}.agency.test:{server.port}/hook", allow_private=True)
                for name, server in (("hostile", bad), ("victim", good))
            ]
            for n in range(3):
                for hook in hooks:
                    observed = await dispatcher._attempt(delivery(n), hook, secrets)
                    assert observed.status == 204, observed
    finally:
        for session in (dispatcher._public, dispatcher._private):
            if session is not None:
                assert len(session.cookie_jar) == 0  # nothing kept for anyone
                await session.close()
    assert seen == {"hostile": [None] * 3, "victim": [None] * 3}
