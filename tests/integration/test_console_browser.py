"""The operator console in a real browser (Debian's Chromium, driven by Playwright) against the whole system
on the real broker: log in, watch "now" change without a reload as an alert arrives, is acknowledged and
misses a deadline, and act on an endpoint from the page and see the dispatcher honour it.

Time is compressed (ack_deadline_scale): a Severe, Immediate alert's half-hour deadline becomes seconds.
"""

from __future__ import annotations

import aiohttp
import msgspec
import pytest
from playwright.async_api import expect

from services.common.codec import Codec
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings
from services.demo.receivers import Receivers
from tests.support.browser import chromium, log_in
from tests.support.system import system
from tests.support.world import Cast, agreement, alert_json, eventually, registry

OPERATOR = "operator-token-console"
SCALE = 0.006  # 30 min (Severe 1 h x Immediate 0.5) -> 10.8 s
LIVE_MS = 30_000  # how long a page may take to show what the pipeline did
ARABIC_AGENCY = "دائرة المخابرات العامة"


@pytest.mark.timeout(300)  # a dozen steps through the whole pipeline and a browser: about a minute on two quiet cores
async def test_the_console_shows_an_alert_live_and_acts_on_endpoints(
    kafka: KafkaSettings, codec: Codec, receivers: tuple[str, Receivers]
) -> None:
    url, rcv = receivers
    cast = Cast()
    origin = cast.agency("IQ-O", "IQ")
    hooked = msgspec.structs.replace(cast.agency("JO-W", "JO", webhook_url=url), name=ARABIC_AGENCY)
    acking = cast.agency("SA-K", "SA")
    rcv.register(hooked.code, cast.secrets[hooked.code])
    doc = registry(
        [origin, hooked, acking],
        [agreement(f"CON-{cast.suffix}", [origin.code, hooked.code, acking.code])],
        operator_token=OPERATOR,
    )
    await publish_registry(kafka, codec, doc, source="test", replication_factor=1)

    async with (
        system(
            kafka,
            codec,
            router={"ack_deadline_scale": SCALE},
            tracker={"escalation_check_s": 0.2},
            dispatcher={"retry_time_scale": 0.01},
            console={"refresh_s": 0.3, "slow_refresh_s": 1.0},
        ) as sys_,
        aiohttp.ClientSession() as http,
        chromium() as browser,
    ):
        assert sys_.console is not None
        base = f"http://127.0.0.1:{sys_.console.port}/console"
        console = sys_.console
        await eventually(lambda: console.credentials.at(console.registry.current.version) is not None)
        page = await browser.new_page()

        async def submit(title: str) -> str:
            body = alert_json(severity="Severe", urgency="Immediate", affected_countries=["IQ"], title=title)
            async with http.post(f"{sys_.url}/v1/alerts", json=body, headers=cast.bearer(origin.code)) as r:
                assert r.status == 202, await r.text()
                alert_id: str = (await r.json())["alert_id"]
                return alert_id

        # No session: every page sends the browser to the login page.
        await page.goto(f"{base}/now")
        assert page.url == f"{base}/login"
        # A wrong token and an agency's token: no access, and no session cookie.
        assert await log_in(page, base, "not-a-token") == 401
        await expect(page.locator(".problem")).to_contain_text("not an operator's token")
        assert await log_in(page, base, cast.tokens[acking.code]) == 403
        await expect(page.locator(".problem")).to_contain_text("agency's token has no access")
        assert [c for c in await page.context.cookies() if "rctc" in c["name"]] == []
        await page.goto(f"{base}/now")
        assert page.url == f"{base}/login"

        # The operator's token: a session cookie the page's script cannot read, sent to this site only.
        assert await log_in(page, base, OPERATOR) == 200
        assert page.url == f"{base}/now?login"
        [cookie] = [c for c in await page.context.cookies() if "rctc" in c["name"]]
        assert cookie["name"] == "__Host-rctc-console"
        assert (cookie["httpOnly"], cookie["sameSite"], cookie["secure"], cookie["path"]) == (True, "Strict", True, "/")
        assert await page.evaluate("document.cookie") == ""

        # An alert arrives while "now" is open: it appears without a reload. Its title is an agency's text:
        # shown as text, right to left where it is Arabic, and its markup never runs.
        await page.evaluate("window.stillTheSamePage = true")
        title = 'قافلة متجهة نحو الحدود <img src=x onerror="window.pwned=1">'
        first = await submit(title)
        row = page.locator(f'tr[data-alert="{first}"]')
        await expect(row).to_be_visible(timeout=LIVE_MS)
        assert await page.evaluate("window.stillTheSamePage") is True
        assert await page.evaluate("window.pwned") is None
        heading = row.locator(".title")
        assert await heading.inner_text() == title
        assert await heading.evaluate("el => getComputedStyle(el).direction") == "rtl"
        assert await row.locator("img").count() == 0
        await expect(row.locator("td").nth(2)).to_have_text(origin.code)
        await expect(row.locator(".tlp")).to_have_text("AMBER")
        acking_cell = row.locator(f'.cell[data-agency="{acking.code}"]')
        hooked_cell = row.locator(f'.cell[data-agency="{hooked.code}"]')
        await expect(acking_cell).to_have_attribute("data-state", "delivered", timeout=LIVE_MS)
        await expect(hooked_cell.locator(".due")).to_contain_text("due in")
        await expect(hooked_cell.locator(".channels")).to_contain_text("kafka+webhook")

        # A recipient acknowledges through the API: the matrix changes on the open page.
        async with http.post(
            f"{sys_.url}/v1/alerts/{first}/ack", json={"response": "actioned"}, headers=cast.bearer(acking.code)
        ) as r:
            assert r.status == 202
        await expect(acking_cell).to_have_attribute("data-state", "acknowledged", timeout=LIVE_MS)
        await expect(acking_cell).to_contain_text("actioned")

        # The other misses its deadline: the countdown turns overdue, and the escalation level rises.
        await expect(hooked_cell.locator(".due")).to_contain_text("overdue", timeout=LIVE_MS)
        await expect(hooked_cell).to_have_attribute("data-level", "1", timeout=LIVE_MS)
        await expect(hooked_cell).to_have_attribute("data-level", "2", timeout=LIVE_MS)
        assert await page.evaluate("window.stillTheSamePage") is True

        # The alert's page: the decision agency by agency, the acknowledgement with its response.
        await page.click(f'tr[data-alert="{first}"] a')
        await expect(page.locator("h1 .title")).to_have_text(title)
        await expect(page.locator(f'table.recipients tr[data-agency="{acking.code}"]')).to_contain_text("actioned")
        await expect(page.locator("table.decisions")).to_contain_text(hooked.code)
        await expect(page.locator(f'table.recipients tr[data-agency="{hooked.code}"]')).to_contain_text("L2")

        # Endpoints: the agency's Arabic name reads right to left; disable its webhook from the page.
        await page.goto(f"{base}/endpoints")
        endpoint = page.locator(f'tr.endpoint[data-agency="{hooked.code}"]')
        await expect(endpoint).to_have_attribute("data-state", "active")
        name = endpoint.locator("bdi")
        assert await name.inner_text() == ARABIC_AGENCY
        assert await name.evaluate("el => getComputedStyle(el).direction") == "rtl"
        await endpoint.locator("button[value=disable]").click()
        await expect(page.locator(".notice")).to_have_text(f"{hooked.code}: disabled")
        await expect(endpoint).to_have_attribute("data-state", "disabled", timeout=LIVE_MS)

        # The dispatcher honours it: the next alert's webhook is not sent, its delivery is dead at once, and
        # the page's dead count rises while it is open.
        delivered_before = set(_alerts_received(rcv, hooked.code))
        assert first in delivered_before
        second = await submit("Second convoy")
        await expect(endpoint.locator(".dead")).to_have_text("1", timeout=LIVE_MS)
        assert second not in _alerts_received(rcv, hooked.code)

        # Enabled again, and its dead delivery replayed from the page: the receiver gets it.
        await endpoint.locator("button[value=enable]").click()
        await expect(endpoint).to_have_attribute("data-state", "active", timeout=LIVE_MS)
        await endpoint.locator("button[value=replay]").click()
        await expect(page.locator(".notice")).to_contain_text(f"{hooked.code}: replayed 1 dead deliveries")
        await eventually(lambda: second in _alerts_received(rcv, hooked.code), within_s=30)
        await expect(endpoint.locator(".dead")).to_have_text("0", timeout=LIVE_MS)

        # Logging out ends the session: the pages send the browser to the login page again.
        await page.click("header button[type=submit]")
        assert page.url == f"{base}/login"
        await page.goto(f"{base}/now")
        assert page.url == f"{base}/login"
        # Arriving from a log-in without the cookie (a browser that refused it) is told why, not sent round.
        await page.goto(f"{base}/now?login")
        await expect(page.locator(".problem")).to_contain_text("did not keep the session cookie")


def _alerts_received(rcv: Receivers, agency: str) -> list[str]:
    return [p["data"]["alert_id"] for p in rcv.received.get(agency, {}).values() if p["type"] == "alert.created"]
