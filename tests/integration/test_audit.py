"""The audit trail through the real broker: every decision is chained, and tampering is named."""

from __future__ import annotations

import hashlib

import aiohttp
import msgspec

from services.auditor.chain import verify
from services.cli.audit import entries
from services.common.codec import Codec
from services.common.kafka import producer, read_to_end
from services.common.records import AlertShared, AuditRecorded
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings
from services.common.topics import AUDIT_EVENTS, agency_topic
from tests.support.system import system
from tests.support.world import Cast, agreement, alert_json, create_topic, eventually, rctc, registry


async def test_every_decision_is_chained_and_tampering_is_named(kafka: KafkaSettings, codec: Codec) -> None:
    """Entries cover every agency's decision with the digest of the delivered copy; a changed entry is named."""
    cast = Cast()
    a, b, c = cast.agency("IQ-A", "IQ"), cast.agency("JO-B", "JO"), cast.agency("SA-C", "SA")
    doc = registry([a, b, c], [agreement(f"AB-{cast.suffix}", [a.code, b.code])])
    await publish_registry(kafka, codec, doc, source="test", replication_factor=1)

    async with system(kafka, codec) as sys_, aiohttp.ClientSession() as http:
        async with http.post(f"{sys_.url}/v1/alerts", json=alert_json(), headers=cast.bearer(a.code)) as r:
            alert_id = (await r.json())["alert_id"]

        async def audited() -> list[AuditRecorded]:
            found = [e for _, e in await entries(kafka, AUDIT_EVENTS) if e.alert_id == alert_id]
            return found if len(found) == 3 else []

        mine = {e.agency: e for e in await eventually(audited)}

    # The whole trail (every test's entries so far) is one intact chain.
    trail = await entries(kafka, AUDIT_EVENTS)
    assert verify(trail) == []
    assert (mine[b.code].kind, mine[c.code].kind, mine[a.code].rule) == ("delivered", "withheld", "originator")
    # The delivered entry's digest is the digest of the exact bytes on the agency's topic.
    copies = [
        r.value
        async for r in read_to_end(kafka, agency_topic(b.code), name="t")
        if codec.decode(r.value, AlertShared).alert_id == alert_id
    ]
    assert mine[b.code].copy_sha256 == hashlib.sha256(copies[0]).hexdigest()

    # Copy the trail to another topic with one entry changed: `rctc audit verify` names it and fails.
    tampered_topic = f"audit-tampered-{cast.suffix.lower()}"
    await create_topic(kafka, tampered_topic)
    victim = len(trail) // 2
    p = producer(kafka, "tamper")
    await p.start()
    try:
        for i, (_, entry) in enumerate(trail):
            if i == victim:
                entry = msgspec.structs.replace(entry, kind="withheld" if entry.kind == "delivered" else "delivered")
            await p.send_and_wait(tampered_topic, codec.encode(entry))
    finally:
        await p.stop()
    code, _, err = await rctc("audit", "verify", "--topic", tampered_topic, kafka=kafka)
    assert code == 1
    assert f"TAMPERED entry seq {trail[victim][1].seq} at offset {victim}: its content does not match its hash" in err

    code, out, _ = await rctc("audit", "verify", kafka=kafka)
    assert (code, out.startswith("intact")) == (0, True)
