"""The gateway -> tracker trust boundary with the real services on the real broker (issue 13, items 1 and 10).

Scenario: IQ originates an alert that JO receives; SA is subscribed but party to no agreement, so it is not
a recipient. Each of them then tries every hostile spelling of the alert id on every endpoint that takes
one, plays tricks with the outstanding-acks query, and asks about the alert and about an id never routed.
No answer may show a principal more than it may see, and the tracker's internal API answers nobody who
lacks the internal credential.
"""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import msgspec
from yarl import URL

from services.common.codec import Codec
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings
from tests.support.hostile import tricks
from tests.support.system import system
from tests.support.world import Cast, agreement, alert_json, eventually, registry

OPERATOR = "operator-token-trust-boundary"


async def send(
    http: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str], body: Any = None
) -> tuple[int, str, Any]:
    """`url` goes on the wire exactly as written (percent-escapes and all); a dropped connection is status 0."""
    try:
        async with http.request(method, URL(url, encoded=True), json=body, headers=headers) as r:
            text = await r.text()
            return r.status, r.content_type, msgspec.json.decode(text) if r.content_type == "application/json" else text
    except aiohttp.ServerDisconnectedError:
        return 0, "", "the server dropped the connection"


async def test_no_path_query_or_missing_credential_shows_more_than_the_principal_may_see(
    kafka: KafkaSettings, codec: Codec
) -> None:
    """Hostile alert ids are 404 for everyone, strangers cannot tell hidden from missing, and the tracker
    refuses calls without the internal credential."""
    cast = Cast()
    origin = cast.agency("IQ-A", "IQ")
    jo = cast.agency("JO-B", "JO")
    sa = cast.agency("SA-C", "SA")
    doc = registry([origin, jo, sa], [agreement(f"TRUST-{cast.suffix}", [origin.code, jo.code])], OPERATOR)
    await publish_registry(kafka, codec, doc, source="test", replication_factor=1)

    async with system(kafka, codec) as sys_, aiohttp.ClientSession() as http:
        body = alert_json(severity="Severe", urgency="Immediate", affected_countries=["IQ", "JO", "SA"])
        async with http.post(f"{sys_.url}/v1/alerts", json=body, headers=cast.bearer(origin.code)) as r:
            assert r.status == 202, await r.text()
            alert_id = (await r.json())["alert_id"]

        async def tracked() -> bool:
            status, _, answer = await send(http, "GET", f"{sys_.url}/v1/alerts/{alert_id}", cast.bearer(origin.code))
            return status == 200 and set(answer["recipients"]) == {jo.code}

        await eventually(tracked)

        # Every hostile spelling of the id, on every endpoint that takes one, as each agency: the JSON 404.
        unexpected: dict[tuple[str, str, str], tuple[int, Any]] = {}
        for who in (origin.code, jo.code, sa.code):
            for method, suffix in (("GET", ""), ("GET", "/routing"), ("POST", "/ack")):
                for trick in tricks(alert_id, str(uuid.uuid4()), sa.code if who != sa.code else jo.code):
                    ack = {"response": "actioned"} if method == "POST" else None
                    url = f"{sys_.url}/v1/alerts/{trick}{suffix}"
                    status, content_type, answer = await send(http, method, url, cast.bearer(who), ack)
                    if (status, content_type, answer.get("error") if isinstance(answer, dict) else None) != (
                        404,
                        "application/json",
                        "not_found",
                    ):
                        unexpected[(who, method + suffix, trick)] = (status, answer)
        assert unexpected == {}

        # What each may see through the proper paths.
        seen = {}
        for who in (origin.code, jo.code, sa.code):
            status, _, answer = await send(http, "GET", f"{sys_.url}/v1/alerts/{alert_id}", cast.bearer(who))
            routing, _, _ = await send(http, "GET", f"{sys_.url}/v1/alerts/{alert_id}/routing", cast.bearer(who))
            seen[who] = (status, sorted(answer["recipients"]) if status == 200 else answer["error"], routing)
        assert seen == {
            origin.code: (200, [jo.code], 200),
            jo.code: (200, [jo.code], 403),
            sa.code: (404, "not_found", 404),
        }

        # A stranger gets for the alert exactly what it gets for an id never routed (the id aside).
        missing = str(uuid.uuid4())
        for method, suffix in (("GET", ""), ("GET", "/routing"), ("POST", "/ack")):
            ack = {"response": "actioned"} if method == "POST" else None
            hidden = await send(http, method, f"{sys_.url}/v1/alerts/{alert_id}{suffix}", cast.bearer(sa.code), ack)
            unknown = await send(http, method, f"{sys_.url}/v1/alerts/{missing}{suffix}", cast.bearer(sa.code), ack)
            as_hidden = msgspec.json.decode(
                msgspec.json.encode(unknown[2]).replace(missing.encode(), alert_id.encode())
            )
            assert (unknown[0], as_hidden) == (hidden[0], hidden[2])
            assert hidden[0] == (403 if method == "POST" else 404)

        # Outstanding acks: an agency sees its own whatever it writes in the query.
        for query in (
            "",
            f"?agency={jo.code}",
            f"?agency={origin.code}",
            f"?agency={jo.code}&agency={origin.code}",
            f"?agency={origin.code}&agency={jo.code}",
            f"?agency={jo.code}%26agency%3D{origin.code}",
            "?viewer_kind=operator&viewer=desk",
        ):
            for who in (jo.code, sa.code):
                status, _, answer = await send(http, "GET", f"{sys_.url}/v1/acks/outstanding{query}", cast.bearer(who))
                if status == 200:
                    assert {row["agency"] for row in answer["outstanding"]} <= {who}, (who, query)
                else:
                    assert (status, answer["error"]) in ((400, "bad_query"), (403, "forbidden")), (who, query)

        # The recipient's own ack still goes through.
        status, _, answer = await send(
            http, "POST", f"{sys_.url}/v1/alerts/{alert_id}/ack", cast.bearer(jo.code), {"response": "actioned"}
        )
        assert (status, answer["status"]) == (202, "accepted")

        # The tracker itself: nothing without the internal credential, even from loopback.
        tracker = f"http://127.0.0.1:{sys_.tracker.port}/internal/alerts/{alert_id}?viewer_kind=operator&viewer=x"
        refused = [
            (await send(http, "GET", tracker, headers))[0]
            for headers in ({}, {"Authorization": "Bearer wrong-token-of-forty-characters-xxxxxxxx"})
        ]
        token = sys_.internal_token.get_secret_value()
        allowed = await send(http, "GET", tracker, {"Authorization": f"Bearer {token}"})
        assert (refused, allowed[0]) == ([401, 401], 200)
