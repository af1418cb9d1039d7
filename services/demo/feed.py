"""`rctc demo feed`: demo agencies submit alerts through the gateway, and recipients acknowledge some.

It uses only the public API, with the demo tokens ("demo-" + lower-cased agency code), so what it does is
what an agency system would do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import random
import signal
from typing import Any

import aiohttp

from services.common.logs import configure_logging, get_logger

log = get_logger("rctc.demo.feed")

OPERATOR_TOKEN = "demo-duty-desk"

SCENARIOS: list[tuple[str, dict[str, Any]]] = [
    (
        "IQ-NAB",
        {
            "category": "terrorism.attack_plot",
            "severity": "Severe",
            "urgency": "Immediate",
            "certainty": "Likely",
            "tlp": "AMBER",
            "source_reliability": "B",
            "information_credibility": 2,
            "title": "Planned attack on a transport hub in the north",
            "summary": "A cell led by Abu Karim is preparing an attack; coordination via karim.ops@mailbox.example "
            "and the channel at hxxps://relay-cdn[.]example/k. Vehicle seen near 36.19N 44.01E.",
            "affected_countries": ["IQ", "JO"],
            "locations": [{"lat": 36.19, "lon": 44.01, "radius_km": 5}],
            "subjects": [{"kind": "person", "name": "Abu Karim", "nationality": "IQ"}],
        },
    ),
    (
        "SA-CTB",
        {
            "category": "cyber.ransomware",
            "severity": "Moderate",
            "urgency": "Expected",
            "certainty": "Observed",
            "tlp": "AMBER+STRICT",
            "source_reliability": "A",
            "information_credibility": 1,
            "title": "Ransomware campaign against Gulf port operators",
            "summary": "Initial access through phishing from invoices@shipping-notice.example; C2 at 203.0.113.45. "
            "Payload hash 5f4dcc3b5aa765d61d8327deb882cf99e3b0c44298fc1c149afbf4c8996fb924.",
            "affected_countries": ["SA", "AE", "KW"],
        },
    ),
    (
        "EG-SSD",
        {
            "category": "terrorism.financing",
            "severity": "Moderate",
            "urgency": "Expected",
            "certainty": "Possible",
            "tlp": "GREEN",
            "source_reliability": "C",
            "information_credibility": 3,
            # Written in Arabic, as an Egyptian service would: the console and the receivers show it right to left.
            "title": "جمعية خيرية واجهة لتحويل الأموال عبر شركات الصرافة",
            "summary": "تحويلات نظمها حسن فاروق إلى IBAN EG380019000500000000263180002 والمحفظة "
            "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh.",
            "affected_countries": ["EG"],
            "subjects": [
                {"kind": "person", "name": "Hassan Farouk"},
                {"kind": "organisation", "name": "Nile Relief Fund"},
            ],
        },
    ),
    (
        "JO-TAC",
        {
            "category": "terrorism.travel",
            "severity": "Severe",
            "urgency": "Expected",
            "certainty": "Likely",
            "tlp": "RED",
            "releasable_to": ["IQ-NAB"],
            "source_reliability": "B",
            "information_credibility": 2,
            "title": "Foreign fighter returning via the eastern crossing",
            "summary": "Subject travelling on a forged passport, expected at the crossing within 48 hours.",
            "affected_countries": ["JO", "IQ"],
            "subjects": [{"kind": "person", "name": "Omar Said", "identifiers": {"passport": "X1234567"}}],
        },
    ),
    (
        "AE-CIU",
        {
            "category": "cyber.intrusion",
            "severity": "Severe",
            "urgency": "Immediate",
            "certainty": "Observed",
            "tlp": "AMBER",
            "source_reliability": "A",
            "information_credibility": 1,
            "title": "Intrusion into a government mail gateway",
            "summary": "Exploitation from 198.51.100.77 and staging on update-check.example.",
            "affected_countries": ["AE"],
        },
    ),
]


async def submit(
    session: aiohttp.ClientSession, gateway: str, agency: str, alert: dict[str, Any], key: str
) -> str | None:
    headers = {"Authorization": f"Bearer demo-{agency.lower()}", "Idempotency-Key": key}
    async with session.post(f"{gateway}/v1/alerts", json=alert, headers=headers) as response:
        body = await response.json()
        if response.status != 202:
            log.warning("feed.refused", agency=agency, status=response.status, body=body)
            return None
        log.info("feed.submitted", agency=agency, alert_id=body["alert_id"], title=alert["title"])
        return str(body["alert_id"])


async def acknowledge_some(session: aiohttp.ClientSession, gateway: str, alert_id: str, rng: random.Random) -> None:
    """As recipients' duty officers would: most acknowledge within seconds, some do not."""
    await asyncio.sleep(3)
    async with session.get(
        f"{gateway}/v1/alerts/{alert_id}", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    ) as response:
        if response.status != 200:
            return
        status = await response.json()
    for agency in status["recipients"]:
        if rng.random() < 0.7:
            response_kind = rng.choice(["actioned", "no_nexus", "request_info"])
            async with session.post(
                f"{gateway}/v1/alerts/{alert_id}/ack",
                json={"response": response_kind},
                headers={"Authorization": f"Bearer demo-{agency.lower()}"},
            ) as ack:
                log.info(
                    "feed.acknowledged", alert_id=alert_id, agency=agency, status=ack.status, response=response_kind
                )


async def run(gateway: str, interval: float, count: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    rng = random.Random(7)
    acks: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for n in itertools.count(1):
            if stop.is_set() or (count and n > count):
                break
            agency, alert = SCENARIOS[(n - 1) % len(SCENARIOS)]
            try:
                alert_id = await submit(session, gateway, agency, alert, key=f"demo-{rng.random()}")
            except aiohttp.ClientError as exc:
                log.warning("feed.gateway_unavailable", error=repr(exc))
                alert_id = None
            if alert_id is not None:
                task = asyncio.create_task(acknowledge_some(session, gateway, alert_id, rng))
                acks.add(task)
                task.add_done_callback(acks.discard)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
        for task in acks:
            task.cancel()


def add_parser(sub: Any) -> None:
    p = sub.add_parser("feed", help="submit demo alerts through the gateway and acknowledge some")
    p.add_argument("--gateway", default="http://127.0.0.1:8080")
    p.add_argument("--interval", type=float, default=4.0, help="seconds between alerts")
    p.add_argument("--count", type=int, default=0, help="stop after N alerts (0: until stopped)")
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    configure_logging(args.settings.log, "feed")
    asyncio.run(run(args.gateway.rstrip("/"), args.interval, args.count))
    return 0
