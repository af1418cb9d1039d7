"""Red-team attacks on the console's pure parts: a hostile agency's text and references, path and query
injection into the tracker's internal API, Server-Sent Event framing, and the same-origin check on POSTs.
Each asserts the secure outcome."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
from aiohttp.test_utils import make_mocked_request
from yarl import URL

from services.common.codec import Codec
from services.common.settings import KafkaSettings
from services.console.contents import Contents
from services.console.pages import Pages, _event, templates
from services.console.tracker import internal_url
from services.console.views import alert_page, board_of
from services.gateway.ratelimit import RateLimiter
from tests.unit.test_console_views import content

VICTIM = "11111111-1111-4111-8111-111111111111"
TRACKER = URL("http://127.0.0.1:8085")


def test_an_alert_that_references_another_agencys_alert_is_a_thread_of_its_own() -> None:
    """An Alert's references name no thread (as the router counts it): it is never a version of another's."""
    hostile = dataclasses.replace(content("22222222-2222-4222-8222-222222222222"), references=(VICTIM,))
    assert hostile.msg_type == "Alert"
    assert hostile.alert_id == hostile.thread_id


def test_another_agencys_update_is_not_listed_among_the_victims_versions(codec: Codec) -> None:
    """The router refuses an Update of another agency's thread, but alerts.enriched holds it: the victim's
    page lists its own origin's versions only, and the hostile Update's page does not list the victim's."""
    contents = Contents(KafkaSettings(), codec, limit=100, history_s=3600)
    own = content(VICTIM, "Convoy at the border")
    update = content("33333333-3333-4333-8333-333333333333", "Convoy turned back", references=(VICTIM,))
    spoof = dataclasses.replace(
        content("44444444-4444-4444-8444-444444444444", "STAND DOWN: false alarm", references=(VICTIM,)),
        origin="XX-HOSTILE",
    )
    hostile_alert = dataclasses.replace(
        content("55555555-5555-4555-8555-555555555555", "Disregard the convoy"), references=(VICTIM,), origin="XX"
    )
    for c in (own, update, spoof, hostile_alert):
        contents.add(c)
    assert [own.alert_id, update.alert_id] == [c.alert_id for c in contents.thread(VICTIM)]
    assert [own.alert_id, update.alert_id] == [c.alert_id for c in contents.thread(update.alert_id)]
    assert [spoof.alert_id] == [c.alert_id for c in contents.thread(spoof.alert_id)]
    # The root's content no longer held: the tracker's origin for it still filters.
    contents.by_id.pop(VICTIM)
    assert [update.alert_id] == [c.alert_id for c in contents.thread(VICTIM, "IQ-NAB")]


@pytest.mark.parametrize(
    "segment", ["..", ".", "", "../webhooks", "a/b", "a\\b", "x?viewer_kind=agency", "x#y", "%2e%2e", "%2F"]
)
def test_a_segment_cannot_leave_its_place_in_the_internal_path(segment: str) -> None:
    """An alert id that is not one path segment never becomes a request to another internal route."""
    with pytest.raises(ValueError, match="not one path segment"):
        internal_url(TRACKER, ("alerts", segment, "routing"), {})


def test_a_hostile_thread_id_stays_one_query_value() -> None:
    """An Update's reference is free text up to 64 characters (the tracker's thread id of it): quoted, it
    cannot add or repeat a parameter such as viewer_kind."""
    thread = "x&viewer_kind=agency&viewer=XX;limit=1#frag"
    url = internal_url(TRACKER, ("correlations",), {"viewer_kind": "operator", "viewer": "duty", "thread": thread})
    expected = [("viewer_kind", "operator"), ("viewer", "duty"), ("thread", thread)]
    assert expected == list(url.query.items())
    assert url.path == "/internal/correlations"
    assert url.fragment == ""


def _parse_sse(raw: bytes) -> list[tuple[str, str]]:
    """Events as a browser's EventSource reads them (the spec's line splitting, on CR, LF and CRLF)."""
    events: list[tuple[str, str]] = []
    name, data = "message", []
    for line in raw.decode().replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line == "":
            if data:
                events.append((name, "\n".join(data)))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].lstrip(" ")
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    return events


def test_an_agencys_text_cannot_forge_a_server_sent_event() -> None:
    """A title or note with blank lines, CRs and `event:` lines stays inside one fragment event: it cannot
    end the event early, inject a `logout` (which would send the operator's page elsewhere) or a fragment."""
    hostile = "a\n\nevent: logout\ndata: x\n\r\revent: fragment\rdata: <img src=x>\r\n\r\nid: 9\n"
    events = _parse_sse(_event("fragment", f"<p>{hostile}</p>"))
    assert [("fragment", f"<p>{hostile.replace(chr(13), '')}</p>")] == events


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Origin": "http://console.example:8090"}, True),
        ({"Origin": "https://console.example:8090"}, True),
        ({"Origin": "http://evil.example"}, False),
        ({"Origin": "http://console.example:8090.evil.example"}, False),
        ({"Origin": "http://console.example"}, False),  # another port of the same host: another origin
        ({"Origin": "null"}, False),  # a sandboxed frame or a data: URL
        ({"Origin": "null", "Referer": "http://evil.example/x"}, False),
        ({"Origin": "null", "Referer": "http://console.example:8090/console/now"}, True),
        ({"Referer": "http://console.example:8090@evil.example/"}, False),
        ({}, False),  # neither: refused, not assumed same-origin
        ({"Referer": ""}, False),
    ],
)
def test_a_post_is_same_origin_only_when_it_says_so(headers: dict[str, str], expected: bool) -> None:
    """Login CSRF and cross-site actions: a POST names this console's origin, or it is refused."""
    request = make_mocked_request("POST", "/console/login", headers={"Host": "console.example:8090", **headers})
    assert expected == Pages._same_origin(request)


def test_each_origins_newest_stay_on_the_board_beside_the_newest_of_all() -> None:
    """An agency's flood fills the tracker's newest-first list; the per-origin lists keep the others' alerts,
    each once."""
    flood = [{"alert_id": f"h{i}", "origin": "XX"} for i in range(3)]
    victim = [{"alert_id": "v1", "origin": "IQ"}]
    expected = ["h0", "h1", "h2", "v1"]
    assert expected == [a["alert_id"] for a in board_of(flood, [flood[:1], victim])]


def test_a_refusal_quoting_the_senders_text_keeps_its_direction_to_itself() -> None:
    """An Update's reference is any text (a right-to-left override among it): the refusal that quotes it is
    isolated in <bdi>, so it cannot reorder the page's words around it."""
    reference = "\u202eeurt si trela siht"
    status = {
        "origin": "XX",
        "recipients": {},
        "rejected": {
            "stage": "router",
            "reason": "thread_unknown",
            "error": "thread_unknown",
            "message": f"Update refers to {reference}, which was not routed here",
        },
    }
    page = alert_page(VICTIM, status, None, {}, [], [])
    html = templates().get_template("_alert.html").render(view=page, thread_id=VICTIM, server_now="")
    assert f'<bdi dir="auto">Update refers to {reference}, which was not routed here</bdi>' in html
    assert '<bdi dir="auto">thread_unknown</bdi>' in html


async def test_log_in_attempts_from_many_addresses_do_not_refill_the_bucket_for_everyone() -> None:
    """Past 10,000 addresses the per-address buckets are forgotten, not the one that caps all attempts."""
    console = SimpleNamespace(settings=SimpleNamespace(sessions=SimpleNamespace(secure_cookie=True)))
    pages = Pages(console)  # type: ignore[arg-type]
    # A stopped clock: the 10,001 attempts below took over 50 ms on a loaded machine, time enough for the bucket
    # for everyone to earn back the one token that let the last attempt through.
    pages._attempts = RateLimiter(clock=lambda: 1000.0)
    while not pages._attempts.admit("*", per_second=20, burst=100):
        pass  # the bucket for everyone is empty
    for i in range(10_001):
        pages._attempts.admit(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", per_second=0.5, burst=10)
    transport = SimpleNamespace(get_extra_info=lambda name, default=None: ("192.0.2.1", 40000))
    request = make_mocked_request("POST", "/console/login", transport=transport)
    response = await pages._login(request)
    assert response.status == 429


def _console_with(credentials_read: bool, holder: tuple[str, str] | None) -> tuple[Pages, str]:
    """A console whose registry is at version 2, with (or without yet) that version's credentials, and one
    operator's session; `holder` is whom the session's token belongs to under version 2."""
    from services.console.sessions import Sessions

    sessions = Sessions(idle_s=60, max_s=600, limit=10)
    credentials = SimpleNamespace(
        at=lambda version: object() if credentials_read else None,
        holder_of=lambda digest, registry: holder,
    )
    console = SimpleNamespace(
        settings=SimpleNamespace(sessions=SimpleNamespace(secure_cookie=True)),
        sessions=sessions,
        credentials=credentials,
        registry=SimpleNamespace(current=SimpleNamespace(version=2)),
    )
    pages = Pages(console)  # type: ignore[arg-type]
    import time

    sid, _ = sessions.open("duty", "d" * 64, time.monotonic())
    return pages, sid


@pytest.mark.parametrize(
    ("credentials_read", "holder", "kept"),
    [
        (True, ("operator", "duty"), True),
        (True, None, False),  # revoked, or the operator removed
        (True, ("agency", "duty"), False),  # the token is now an agency's
        (False, None, True),  # the version's credentials not read yet: judged at the next request
    ],
)
def test_a_session_ends_when_its_token_is_not_in_force_and_only_then(
    credentials_read: bool, holder: tuple[str, str] | None, kept: bool
) -> None:
    pages, sid = _console_with(credentials_read, holder)
    request = make_mocked_request("GET", "/console/now", headers={"Cookie": f"{pages.cookie}={sid}"})
    assert (pages.session_of(request) is not None) is kept
    assert (len(pages.c.sessions) == 1) is kept  # an ended session is gone, not just refused once
