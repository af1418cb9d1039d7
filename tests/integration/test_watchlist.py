"""The live watchlist on the real broker: an operator adds an entry with `rctc watchlist add` (as the operators'
principal, operator-cli) while the system runs; the next alert that carries the value is raised in priority and
records the entry's key for operators; its recipient's copy, webhook and status view carry neither the key nor
the reason; removing the entry stops it, and a reader started afterwards rebuilds the same state. An import
writes all of a file's entries or none.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import SecretStr

from services.common.acls import OPERATOR
from services.common.codec import Codec
from services.common.kafka import read_to_end
from services.common.kafka_admin import SecurityAdmin
from services.common.records import AlertEnriched, AlertShared
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings
from services.common.topics import ALERTS_ENRICHED, agency_topic
from services.common.watchlist import entry_key
from services.demo.receivers import Receivers
from services.enricher.watchlist import WatchlistView
from tests.support.system import system
from tests.support.world import Cast, agreement, alert_json, eventually, rctc, read_topic, registry


async def operator_principal(kafka: KafkaSettings) -> KafkaSettings:
    """`kafka` as the operators' command line, operator-cli, with a password of this test's (its ACLs are those
    topics.yaml gives `operator`, installed with the services' by tests/support/system.py)."""
    password = secrets.token_urlsafe(24)
    await SecurityAdmin(kafka).set_password(OPERATOR, password)
    return kafka.model_copy(update={"username": OPERATOR, "password": SecretStr(password), "password_file": None})


async def fresh_view(kafka: KafkaSettings, codec: Codec) -> set[str]:
    """The keys in force as a reader started now rebuilds them (an enricher's restart)."""
    view = WatchlistView(kafka, codec, name="test-restart")
    await view.start()
    try:
        return set(view.current.entries())
    finally:
        await view.stop()


async def test_an_entry_raises_the_next_matching_alert_and_no_recipient_sees_it(
    kafka: KafkaSettings, codec: Codec, receivers: tuple[str, Receivers]
) -> None:
    """Added while running: the next alert with the value is one level more urgent and names the entry on
    alerts.enriched only; removed: the next one is not. Recipients never see the entry or why it is there."""
    url, rcv = receivers
    cast = Cast()
    origin, jo = cast.agency("IQ-A", "IQ"), cast.agency("JO-B", "JO", webhook_url=url)
    for code, keys in cast.secrets.items():
        rcv.register(code, keys)
    doc = registry([origin, jo], [agreement(f"WL-{cast.suffix}", [origin.code, jo.code])])
    await publish_registry(kafka, codec, doc, source="test", replication_factor=1)
    operator = await operator_principal(kafka)
    # A number of this test's own, written one way in the alerts and another way by the operator.
    digits = f"{secrets.randbelow(10**7):07d}"
    in_alerts, by_operator = f"+964 771 {digits[:3]} {digits[3:]}", f"00964-771-{digits}"
    key = entry_key("phone", in_alerts)
    reason = f"courier of cell {cast.suffix}, per informant 7"
    assert key == f"phone:+964771{digits}" == entry_key("phone", by_operator)

    async with system(kafka, codec) as sys_, aiohttp.ClientSession() as http:

        async def submit() -> str:
            # Moderate, Expected, Likely: priority 3 without a hit.
            body = alert_json(
                severity="Moderate",
                urgency="Expected",
                summary=f"Abu Karim calls from {in_alerts}",
                affected_countries=["IQ", "JO"],
            )
            async with http.post(f"{sys_.url}/v1/alerts", json=body, headers=cast.bearer(origin.code)) as r:
                assert r.status == 202, await r.text()
                alert_id: str = (await r.json())["alert_id"]
                return alert_id

        async def enriched(alert_id: str) -> AlertEnriched:
            async def found() -> AlertEnriched | None:
                records = await read_topic(kafka, codec, ALERTS_ENRICHED, AlertEnriched)
                return next((e for _, e in records if e.alert_id == alert_id), None)

            result: AlertEnriched = await eventually(found)
            return result

        async def copy(alert_id: str) -> tuple[AlertShared, bytes]:
            """The recipient's copy on its topic, decoded and as the bytes it reads."""

            async def found() -> tuple[AlertShared, bytes] | None:
                async for r in read_to_end(kafka, agency_topic(jo.code), name="test-copy"):
                    if r.value is not None and alert_id.encode() in r.value:
                        shared = codec.decode(r.value, AlertShared)
                        if shared.alert_id == alert_id:
                            return shared, r.value
                return None

            result: tuple[AlertShared, bytes] = await eventually(found)
            return result

        async def status_for_recipient(alert_id: str) -> str:
            async def delivered() -> str | None:
                async with http.get(f"{sys_.url}/v1/alerts/{alert_id}", headers=cast.bearer(jo.code)) as r:
                    return await r.text() if r.status == 200 else None

            result: str = await eventually(delivered)
            return result

        def webhooks(alert_id: str) -> list[dict[str, Any]]:
            return [p for p in rcv.received[jo.code].values() if p["data"]["alert_id"] == alert_id]

        # Before any entry: the base priority, no hit.
        before = await enriched(await submit())
        assert (before.priority, before.watchlist_hits) == (3, [])

        # An operator adds the number, written another way, as operator-cli.
        code, out, err = await rctc(
            "watchlist", "add", "phone", by_operator, "--reason", reason, "--expires", "1d", kafka=operator
        )
        assert (code, out.split(",")[0]) == (0, f"added {key}"), err
        code, out, _ = await rctc("watchlist", "list", "--kind", "phone", kafka=operator)
        listed = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        mine = [e for e in listed if e["key"] == key]
        assert (code, [(e["reason"], e["added_by"], e["expired"]) for e in mine]) == (0, [(reason, OPERATOR, False)])
        # The enricher follows the topic: the entry is in force within a poll, with no restart.
        await eventually(lambda: key in sys_.enricher.watchlist.current)

        hit_id = await submit()
        hit = await enriched(hit_id)
        assert (hit.priority, hit.watchlist_hits) == (2, [key])
        # The recipient's copy carries the base priority (the raised one would tell it of a hit), and nothing
        # of the entry: not in its record, its
        # webhook, nor what the status API answers it.
        shared, raw = await copy(hit_id)
        assert shared.priority == 3
        await eventually(lambda: webhooks(hit_id))
        seen_by_recipient = [raw, json.dumps(webhooks(hit_id)).encode(), (await status_for_recipient(hit_id)).encode()]
        for carried in seen_by_recipient:
            assert [s for s in (key, reason, "watchlist") if s.encode() in carried.lower()] == []
        assert key in await fresh_view(kafka, codec)

        # Removed, in the spelling the alerts use: the next alert is back to its base priority.
        code, out, err = await rctc("watchlist", "remove", "phone", in_alerts, kafka=operator)
        assert (code, out) == (0, f"removed {key}\n"), err
        await eventually(lambda: key not in sys_.enricher.watchlist.current)
        after = await enriched(await submit())
        assert (after.priority, after.watchlist_hits) == (3, [])
        assert (await copy(after.alert_id))[0].priority == 3
        # A reader started now (a restarted enricher) replays the entry and its tombstone: no entry.
        assert key not in await fresh_view(kafka, codec)
        code, _, err = await rctc("watchlist", "remove", "phone", in_alerts, kafka=operator)
        assert (code, f"no entry {key}" in err) == (1, True)


async def test_an_import_writes_every_entry_or_none(kafka: KafkaSettings, codec: Codec, tmp_path: Path) -> None:
    """A JSON lines file with one bad row writes nothing; corrected, every entry is in force for a new reader."""
    operator = await operator_principal(kafka)
    tag = secrets.token_hex(4)
    rows = [
        {"kind": "domain", "value": f"relay-{tag}[.]example", "reason": "C2 relay"},
        {"kind": "name", "value": f"Rahmani{tag}, Khalid", "reason": "named by two partners", "expires": "30d"},
        {"kind": "passport", "value": "N0012345", "reason": "not a kind"},
    ]
    keys = {entry_key("domain", f"relay-{tag}.example"), entry_key("name", f"Khalid Rahmani{tag}")}
    path = tmp_path / "entries.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    code, _, err = await rctc("watchlist", "import", str(path), kafka=operator)
    assert (code, "line 3: kind 'passport'" in err, "nothing was imported" in err) == (1, True, True)
    assert keys & await fresh_view(kafka, codec) == set()

    path.write_text("\n".join(json.dumps(r) for r in rows[:2]))
    code, out, err = await rctc("watchlist", "import", str(path), kafka=operator)
    assert (code, out) == (0, "imported 2 entries (2 added, 0 replaced)\n"), err
    assert keys <= await fresh_view(kafka, codec)
    for key in keys:  # this test's entries go with it
        kind, _, value = key.partition(":")
        code, _, err = await rctc("watchlist", "remove", kind, value, kafka=operator)
        assert code == 0, err
    assert keys & await fresh_view(kafka, codec) == set()
