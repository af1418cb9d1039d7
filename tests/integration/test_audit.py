"""The audit trail through the real broker: every decision is chained, and tampering is named."""

from __future__ import annotations

import base64
import hashlib
import json

import aiohttp
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.auditor.chain import seal, verify
from services.auditor.checkpoints import UnsignedHead, sign, signature_problem
from services.auditor.service import build as build_auditor
from services.auditor.settings import AuditorSettings
from services.cli.audit import entries
from services.common.codec import Codec
from services.common.kafka import producer, read_to_end
from services.common.records import AlertShared, AuditCheckpointed, AuditRecorded, utcnow
from services.common.registry.publish import publish_registry
from services.common.runner import running
from services.common.settings import KafkaSettings
from services.common.topics import AUDIT_EVENTS, agency_topic
from tests.support.audit_key import audit_keys, signing_key_file
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
    # ... and nothing of it is exported to a partner.
    code, out, err = await rctc("audit", "export", "--agency", b.code, "--topic", tampered_topic, kafka=kafka)
    assert (code, out) == (1, "")
    assert "NOT EXPORTED" in err and "TAMPERED" in err

    code, out, _ = await rctc("audit", "verify", kafka=kafka)
    assert (code, out.startswith("intact")) == (0, True)


async def test_a_forged_append_and_a_rewritten_history_are_named(kafka: KafkaSettings, codec: Codec) -> None:
    """The broker's admin appends a chaining entry to audit.events and rewrites the history onto new topics:
    `rctc audit verify` names each, the auditor refuses to build on the forgery until an operator accepts it."""
    cast = Cast()
    a, b = cast.agency("IQ-A", "IQ"), cast.agency("JO-B", "JO")
    doc = registry([a, b], [agreement(f"AB-{cast.suffix}", [a.code, b.code])])
    await publish_registry(kafka, codec, doc, source="test", replication_factor=1)
    async with system(kafka, codec) as sys_, aiohttp.ClientSession() as http:
        async with http.post(f"{sys_.url}/v1/alerts", json=alert_json(), headers=cast.bearer(a.code)) as r:
            alert_id = (await r.json())["alert_id"]

        async def audited() -> bool:
            return any(e.alert_id == alert_id for _, e in await entries(kafka, AUDIT_EVENTS))

        await eventually(audited)
    code, out, err = await rctc("audit", "verify", kafka=kafka)
    assert (code, out.startswith("intact")) == (0, True), err

    # The admin (a super user, who may write any topic) appends an entry that chains onto the head.
    trail = await entries(kafka, AUDIT_EVENTS)
    head = trail[-1][1]
    forged = seal(msgspec.structs.replace(head, agency="SA-X", kind="delivered", reason="forged"), head)
    p = producer(kafka, "forger")
    await p.start()
    try:
        at = (await p.send_and_wait(AUDIT_EVENTS, codec.encode(forged), key=forged.alert_id.encode())).offset
    finally:
        await p.stop()
    assert verify([*trail, (at, forged)]) == []  # the keyless chain sees nothing wrong
    code, _, err = await rctc("audit", "verify", kafka=kafka)
    assert code == 1
    assert f"FORGED entry seq {forged.seq} at offset {at}: no signed checkpoint covers it" in err

    # The auditor will not sign over it: it stops at start, naming the entry.
    settings = AuditorSettings(kafka=kafka, signing_key_file=signing_key_file())
    with pytest.raises(UnsignedHead, match=f"entry seq {forged.seq} \\(head at offset {at},"):
        async with running(build_auditor(settings, codec)):
            pass
    # An operator who has looked at it lets it go on from exactly that head; the acceptance is signed.
    accepting = settings.model_copy(update={"accept_unsigned_head": f"{forged.seq}:{forged.hash}"})
    async with running(build_auditor(accepting, codec)):
        pass
    code, out, err = await rctc("audit", "verify", kafka=kafka)
    assert code == 0, err
    assert f"ACCEPTED entry seq {forged.seq} at offset {at}: not written by the auditor" in out

    # The whole history rewritten onto a new topic, consistently re-sealed, with one decision changed.
    victim = len(trail) // 2
    rewritten_topic = f"audit-rewritten-{cast.suffix.lower()}"
    await create_topic(kafka, rewritten_topic)
    p = producer(kafka, "rewriter")
    await p.start()
    try:
        previous: AuditRecorded | None = None
        for i, (_, entry) in enumerate(trail):
            if i == victim:
                entry = msgspec.structs.replace(entry, kind="withheld" if entry.kind == "delivered" else "delivered")
            previous = seal(msgspec.structs.replace(entry, hash=""), previous)
            await p.send_and_wait(rewritten_topic, codec.encode(previous))
    finally:
        await p.stop()
    code, _, err = await rctc("audit", "verify", "--topic", rewritten_topic, kafka=kafka)
    assert code == 1
    assert "REWRITTEN checkpoint at offset" in err and f"signed head seq {trail[-1][1].seq} " in err
    assert "TAMPERED" not in err  # the chain itself is consistent: only the signatures tell

    # ... with checkpoints of its own: re-signed by the admin's key under the auditor's key id, or its own id.
    checkpoints_topic = f"audit-checkpoints-{cast.suffix.lower()}"
    await create_topic(kafka, checkpoints_topic)
    own = Ed25519PrivateKey.generate()
    new_head = (await entries(kafka, rewritten_topic))[-1][1]
    resigned = sign(own, new_head, signed_at=utcnow())
    impostor = msgspec.structs.replace(resigned, key_id=audit_keys().public_keys[0].id)
    p = producer(kafka, "resigner")
    await p.start()
    try:
        for checkpoint in (resigned, impostor):
            await p.send_and_wait(checkpoints_topic, codec.encode(checkpoint))
    finally:
        await p.stop()
    code, _, err = await rctc(
        "audit", "verify", "--topic", rewritten_topic, "--checkpoints-topic", checkpoints_topic, kafka=kafka
    )
    assert code == 1
    assert f"UNKNOWN KEY checkpoint at offset 0 (seq {new_head.seq}): signed by unknown key" in err
    assert f"BAD SIGNATURE checkpoint at offset 1 (seq {new_head.seq}): its signature does not verify" in err
    assert f"FORGED entries seq 1 to {new_head.seq}" in err


async def test_a_partners_export_holds_only_its_own_entries(kafka: KafkaSettings, codec: Codec) -> None:
    """`rctc audit export --agency B` holds the copy B received and every entry of B's own alert, and nothing
    about A's alert withheld from B: no entry, no reason naming the agencies it was releasable to; nor does
    any other view B has (status, routing, its topic)."""
    cast = Cast()
    a, b, c = cast.agency("IQ-A", "IQ"), cast.agency("JO-B", "JO"), cast.agency("SA-C", "SA")
    elsewhere = f"KW-Z{cast.suffix}"  # named only in the withheld alert's releasable_to
    doc = registry([a, b, c], [agreement(f"MULTI-{cast.suffix}", [a.code, b.code, c.code])])
    await publish_registry(kafka, codec, doc, source="test", replication_factor=1)
    everywhere = ["IQ", "JO", "SA"]

    async with system(kafka, codec) as sys_, aiohttp.ClientSession() as http:

        async def submit(agency: str, **overrides: object) -> str:
            body = alert_json(affected_countries=everywhere, **overrides)
            async with http.post(f"{sys_.url}/v1/alerts", json=body, headers=cast.bearer(agency)) as r:
                assert r.status == 202, await r.text()
                return str((await r.json())["alert_id"])

        # Scenario: A's alert releasable only to C and another agency (withheld from B, the reason naming
        # them), A's alert delivered to B, and B's own alert.
        withheld = await submit(a.code, releasable_to=[c.code, elsewhere])
        delivered = await submit(a.code)
        own = await submit(b.code)

        async def audited() -> list[AuditRecorded]:
            ids = {withheld, delivered, own}
            found = [e for _, e in await entries(kafka, AUDIT_EVENTS) if e.alert_id in ids]
            return found if len(found) == 9 else []

        trail = {(e.alert_id, e.agency): e for e in await eventually(audited)}

        async def seen_by_b(url: str) -> tuple[int, str]:
            async with http.get(url, headers=cast.bearer(b.code)) as r:
                return r.status, await r.text()

        # Every other view B has names nobody else either: its status and routing answers, its topic.
        urls = [f"{sys_.url}/v1/alerts/{i}{p}" for i in (withheld, delivered) for p in ("", "/routing")]

        async def views_of_b() -> list[tuple[int, str]] | None:
            views = [await seen_by_b(url) for url in urls]
            return views if views[2][0] == 200 else None  # once the tracker has the decisions

        views = await eventually(views_of_b)
        statuses = [404, 404, 200, 403]  # a withheld alert is unknown to B; the routing is the originator's
        assert statuses == [status for status, _ in views]
        on_b_topic = [r.value async for r in read_to_end(kafka, agency_topic(b.code), name="t")]
        assert [delivered] == [codec.decode(v, AlertShared).alert_id for v in on_b_topic]
        nobody = (False, False)
        for text in [body for _, body in views] + [v.decode(errors="replace") for v in on_b_topic]:
            assert nobody == (c.code in text, elsewhere in text)

    # What the center holds: B's withheld entry names the agencies A's alert was releasable to.
    assert trail[withheld, b.code].rule == "not_releasable" and elsewhere in trail[withheld, b.code].reason

    code, out, err = await rctc("audit", "export", "--agency", b.code, kafka=kafka)
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    exported = [line["entry"] for line in lines if "entry" in line]
    expected = [
        (delivered, b.code, "delivered", f"shared under MULTI-{cast.suffix}"),
        (own, a.code, "delivered", f"shared under MULTI-{cast.suffix}"),
        (own, b.code, "withheld", "submitted the alert"),
        (own, c.code, "delivered", f"shared under MULTI-{cast.suffix}"),
    ]
    assert sorted(expected) == sorted(
        (e["alert_id"], e["agency"], e["kind"], e["reason"]) for e in exported if e["alert_id"] in {delivered, own}
    )
    # Nothing else of this test's alerts, and nothing at all about the withheld one.
    assert len(expected) == len(exported)
    assert withheld not in out and elsewhere not in out
    # The copy B received names B and its originator only.
    received = next(e for e in exported if e["alert_id"] == delivered)
    assert {a.code, b.code} == {code for code in (a.code, b.code, c.code) if code in json.dumps(received)}
    # The partner recomputes every entry's hash from the line alone, and keeps the last signed head.
    for e in exported:
        fields = {k: v for k, v in e.items() if k != "hash"}
        body = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert e["hash"] == hashlib.sha256(f"{e['prev_hash']}\n{body}".encode()).hexdigest()
    assert [[]] * len(exported) == [line["reduced"] for line in lines if "entry" in line]
    head = msgspec.convert(lines[-1]["checkpoint"], AuditCheckpointed, strict=False)
    keys = {k.id: base64.b64decode(k.ed25519) for k in audit_keys().public_keys}
    assert signature_problem(head, keys) is None
    assert head.seq >= max(e["seq"] for e in exported)
