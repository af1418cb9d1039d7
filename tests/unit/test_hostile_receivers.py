"""What a hostile agency's webhook receiver can do to the dispatcher that every agency's deliveries share, one test
per class of attack the red team found (the cookie jar: test_receiver_cookies.py; the SSRF guard: test_ssrf.py).

Each drives `Dispatcher._attempt` against receivers on 127.0.0.1 (no Kafka): a flood of interim responses, a
receiver slow to answer, a half-open circuit whose probe is held, and a probe refused at connect time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import random
import socket
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import ResolveResult
from aiohttp.client_proto import ResponseHandler
from aiohttp.test_utils import TestServer

from services.common.codec import Codec
from services.common.records import EndpointChanged
from services.common.registry import WebhookEntry
from services.dispatcher.breaker import CircuitBreaker
from services.dispatcher.connections import SLICE, IdleGuard
from services.dispatcher.endpoints import endpoint_change
from services.dispatcher.interim import MAX_INTERIM
from services.dispatcher.outcome import Observed, decide
from services.dispatcher.queueing import FLOOR
from services.dispatcher.safety import USER_TIMEOUT_MS, UnsafeDestination, guarded_socket
from services.dispatcher.schedule import TIERS, slowest_recent, tier_for
from services.dispatcher.service import Dispatcher
from services.dispatcher.settings import DispatcherSettings
from tests.support.receivers import LoopbackDNS, delivery
from tests.support.world import new_secret

SECRETS = [new_secret()]


@asynccontextmanager
async def dispatching(codec: Codec, dns: LoopbackDNS | None = None, **settings: Any) -> AsyncIterator[Dispatcher]:
    dispatcher = Dispatcher(DispatcherSettings(allow_private_endpoints=True, **settings), codec)
    dispatcher._open_sessions(dns or LoopbackDNS())
    try:
        yield dispatcher
    finally:
        for session in (dispatcher._public, dispatcher._private):
            if session is not None:
                await session.close()


@asynccontextmanager
async def receiver(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> AsyncIterator[WebhookEntry]:
    app = web.Application()
    app.router.add_post("/hook", handler)
    async with TestServer(app, host="127.0.0.1") as server:
        yield WebhookEntry(url=f"http://hostile.agency.test:{server.port}/hook", allow_private=True)


@asynccontextmanager
async def raw_receiver(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[WebhookEntry]:
    """A receiver writing whatever bytes `handler` writes: answers no HTTP server would send."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield WebhookEntry(url=f"http://hostile.agency.test:{port}/hook", allow_private=True)
    finally:
        server.close()
        await server.wait_closed()


async def each_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answer: Callable[[], Awaitable[None]]
) -> None:
    """`answer` each request read on the connection (a POST of the body `{}`), until the dispatcher hangs up."""
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        while True:
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(2)
            await answer()
    writer.close()


async def test_a_stream_of_interim_responses_ends_the_attempt_at_once(codec: Codec) -> None:
    """100 Continue after 100 Continue, then a 200: the attempt fails as soon as the stream passes the bound,
    neither counted delivered nor holding the event loop for the stream's length (aiohttp reads 1xx unbounded)."""

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        end = time.monotonic() + 3.0
        with contextlib.suppress(ConnectionError):  # the dispatcher hangs up on it
            while time.monotonic() < end:
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" * 500)
                await writer.drain()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        writer.close()

    async with raw_receiver(flood) as hook, dispatching(codec) as dispatcher:
        started = time.monotonic()
        observed = await dispatcher._attempt(delivery(1), hook, SECRETS)
        took = time.monotonic() - started
    assert observed.status is None and observed.failure == "connection_error", observed
    assert "interim" in (observed.detail or "")  # interim.py's bound, or connections.py's on one read's messages
    assert took < 1.5  # not the 3 s of the stream


async def test_a_few_interim_responses_are_still_answered(codec: Codec) -> None:
    """103 Early Hints before the answer is allowed: the bound is on a stream, not on HTTP."""

    async def hints(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" * MAX_INTERIM)
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        writer.close()

    async with raw_receiver(hints) as hook, dispatching(codec) as dispatcher:
        observed = await dispatcher._attempt(delivery(1), hook, SECRETS)
    assert observed.status == 204, observed


async def test_a_slow_receivers_backlog_waits_in_a_retry_tier_not_in_the_shared_lane(codec: Codec) -> None:
    """A receiver that takes its time (and answers 2xx, so its circuit never opens) gets its slots and a queue
    of per_endpoint_queue; the deliveries past that are put off at once (`endpoint_busy`, not an attempt) for
    about the time its queue takes to drain, instead of waiting in the lane's in-flight limit that every agency
    shares. Its pace not known yet (no answer has come back), the shortest retry tier: 5 s, with a fifth either
    way of jitter."""
    release = asyncio.Event()
    answered = 0

    async def slow(_: web.Request) -> web.Response:
        nonlocal answered
        await release.wait()
        answered += 1
        return web.Response(status=204)

    async with (
        receiver(slow) as hook,
        dispatching(codec, per_endpoint_concurrency=1, per_endpoint_queue=2) as dispatcher,
    ):
        attempts = [asyncio.create_task(dispatcher._attempt(delivery(n), hook, SECRETS)) for n in range(6)]
        done, pending = await asyncio.wait(attempts, timeout=2.0)
        put_off = [t.result() for t in done]
        release.set()
        answers = [await t for t in pending]
    assert len(put_off) == 3 and len(answers) == 3  # one in flight and two waiting; the other three put off
    assert {o.failure for o in put_off} == {"endpoint_busy"}
    waits = [o.retry_after or 0.0 for o in put_off]
    assert all(4.0 <= w <= 6.0 for w in waits) and len(set(waits)) == 3, waits
    decision = decide(put_off[0], attempt=1, urgency="Immediate", waited_s=0.0, rng=random.Random())
    assert (decision.outcome, decision.delay_s, decision.endpoint) == ("deferred", waits[0], None)
    assert {o.status for o in answers} == {204} and answered == 3
    assert dispatcher._waiting[("JO-B", hook.url)] == 0


async def test_slow_receivers_together_cannot_fill_a_lane(codec: Codec) -> None:
    """Five agencies' receivers slow at once: each may queue per_endpoint_queue alone, but past its FLOOR only
    its share of half a lane and while three quarters of it are free, so the lane every agency shares keeps
    room (before, 4 x 500 filled its 2,000 and stalled everyone; here 5 x 50 would fill 200)."""
    release = asyncio.Event()

    async def slow(_: web.Request) -> web.Response:
        await release.wait()
        return web.Response(status=204)

    async def fast(_: web.Request) -> web.Response:
        return web.Response(status=204)

    limits = {"per_endpoint_concurrency": 1, "per_endpoint_queue": 50, "max_in_flight": 200}
    async with receiver(slow) as hook, receiver(fast) as honest, dispatching(codec, **limits) as dispatcher:
        attempts = [
            asyncio.create_task(dispatcher._attempt(delivery(n, agency=f"X{a}-SLOW"), hook, SECRETS))
            for a in range(5)
            for n in range(60)
        ]
        done, _ = await asyncio.wait(attempts, timeout=2.0)
        holding = sum(dispatcher._waiting.values()) + 5  # waiting for a slot, and the one in each slot
        put_off = [t.result() for t in done]
        started = time.monotonic()
        delivered = await dispatcher._attempt(delivery(1, agency="JO-B"), honest, SECRETS)
        took = time.monotonic() - started
        release.set()
        await asyncio.gather(*attempts)
    assert holding <= 200 * 3 // 4 + 2 * FLOOR + 5 < 200, holding  # to three quarters, and a floor or two past it
    assert {o.failure for o in put_off} == {"endpoint_busy"} and len(put_off) == 300 - holding
    assert delivered.status == 204 and took < 2.0
    assert dispatcher._queued == 0


async def test_while_a_probe_is_out_the_other_deliveries_wait_a_retry_tier(codec: Codec) -> None:
    """A half-open circuit lets one probe through; the rest are put off for the shortest retry tier (5 s), not
    for the 50 ms that had them cycle through it for as long as the receiver held its probe."""
    release = asyncio.Event()

    async def holds_the_probe(_: web.Request) -> web.Response:
        await release.wait()
        return web.Response(status=204)

    async with receiver(holds_the_probe) as hook, dispatching(codec, breaker_cooldown_s=0.2) as dispatcher:
        breaker = dispatcher._breakers[("JO-B", hook.url)] = CircuitBreaker(
            threshold=1, cooldown_s=0.2, clock=time.monotonic
        )
        breaker.failure()
        await asyncio.sleep(0.25)
        probe = asyncio.create_task(dispatcher._attempt(delivery(1), hook, SECRETS))
        await asyncio.sleep(0.2)
        other = await dispatcher._attempt(delivery(2), hook, SECRETS)
        release.set()
        assert (await probe).status == 204
    assert other.failure == "circuit_open" and other.retry_after == 5.0
    assert breaker.state == "half_open"  # until _endpoint_learned is told of the probe's success


async def test_a_backlog_put_off_by_an_open_circuit_stays_in_the_tier_of_its_wait(codec: Codec) -> None:
    """Deliveries refused while a circuit is open wait until it lets a probe through, and no longer: a fifth of
    jitter past it sent a 30 s wait to the 2m tier, behind that tier's longer waits (red team, round 6), and
    a fifth short of it had each refused again, four times the put-offs."""

    async def answers(_: web.Request) -> web.Response:
        return web.Response(status=204)

    async with receiver(answers) as hook, dispatching(codec) as dispatcher:
        breaker = dispatcher._breakers[("JO-B", hook.url)] = CircuitBreaker(
            threshold=1, cooldown_s=30.0, clock=time.monotonic
        )
        breaker.failure()
        put_off = [await dispatcher._attempt(delivery(n), hook, SECRETS) for n in range(50)]
    assert {o.failure for o in put_off} == {"circuit_open"}
    waits = sorted(o.retry_after or 0.0 for o in put_off)
    assert waits[0] >= 29.0 and waits[-1] <= 30.0, waits
    assert {tier_for(w) for w in waits} == {"30s"}


class SwitchableDNS(LoopbackDNS):
    """The agency's own zone: its name can answer an internal address (refused by the guard) for a while."""

    internal = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self.internal:
            raise UnsafeDestination("the name resolves only to non-public addresses")
        return await super().resolve(host, port, family)


async def test_a_probe_refused_at_connect_time_does_not_wedge_the_circuit(codec: Codec) -> None:
    """The probe's name resolves to an internal address: refused, it still counts against the endpoint, so once
    the name is fixed and the cooldown has passed, the next probe reaches the receiver (before, the breaker
    waited for the refused probe's verdict for good and put every delivery off until a restart)."""
    hits = 0

    async def healthy(_: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        return web.Response(status=204)

    dns = SwitchableDNS()
    async with receiver(healthy) as hook, dispatching(codec, dns) as dispatcher:
        published = told(dispatcher)
        breaker = dispatcher._breakers[("JO-B", hook.url)] = CircuitBreaker(
            threshold=1, cooldown_s=0.1, clock=time.monotonic
        )
        breaker.failure()
        await asyncio.sleep(0.15)
        dns.internal = True
        refused = await dispatcher._attempt(delivery(1), hook, SECRETS)
        dns.internal = False
        await asyncio.sleep(0.25)  # its second cooldown is twice the first (breaker.py)
        probe = await dispatcher._attempt(delivery(2), hook, SECRETS)
    assert refused.failure == "refused_destination"
    assert published == ["failing"]  # the circuit it opened again is told, as any other failure's
    assert probe.status == 204 and hits == 1


def told(dispatcher: Dispatcher) -> list[str]:
    """The endpoint states the dispatcher tells the other replicas of (no Kafka here)."""
    states: list[str] = []

    async def publish(change: EndpointChanged) -> None:
        states.append(change.state)

    dispatcher._publish = publish  # type: ignore[method-assign]
    return states


async def test_an_endpoint_re_enabled_after_its_probe_was_answered_410_gets_deliveries(codec: Codec) -> None:
    """The probe of an open circuit is answered 410 Gone: the endpoint is disabled, and its breaker with it, so
    when an operator enables it again its deliveries go (the half-open breaker had waited for that probe for good,
    every delivery put off until a restart)."""
    status = 503

    async def flaky(_: web.Request) -> web.Response:
        return web.Response(status=status)

    async def attempt(n: int) -> Observed:
        observed = await dispatcher._attempt(delivery(n), hook, SECRETS)
        decision = decide(observed, attempt=1, urgency="Immediate", waited_s=0.0, rng=random.Random())
        await dispatcher._endpoint_learned("JO-B", hook.url, decision)
        return observed

    async with receiver(flaky) as hook, dispatching(codec, breaker_threshold=1, breaker_cooldown_s=0.1) as dispatcher:
        published = told(dispatcher)
        assert (await attempt(1)).status == 503  # the circuit opens
        await asyncio.sleep(0.15)
        status = 410
        assert (await attempt(2)).status == 410  # the probe
        dispatcher.endpoints.current["JO-B"] = endpoint_change("JO-B", hook.url, "active", "fixed", by="operator")
        status = 204
        after = await attempt(3)
    assert published == ["failing", "disabled"]
    assert after.status == 204, after


async def test_a_receiver_that_stops_reading_cannot_keep_a_connection_for_good(codec: Codec) -> None:
    """Every delivery's socket, guarded or private, has the kernel drop it once what was sent goes unacknowledged
    for USER_TIMEOUT_MS (a receiver advertising a zero window held each socket past every timeout of ours)."""
    seen: list[int] = []

    async def ok(_: web.Request) -> web.Response:
        return web.Response(status=204)

    async with receiver(ok) as hook, dispatching(codec) as dispatcher:
        assert (await dispatcher._attempt(delivery(1), hook, SECRETS)).status == 204
        session = dispatcher._private
        assert session is not None
        for conns in session.connector._conns.values():  # type: ignore[union-attr]  # the kept-alive one
            for protocol, _ in conns:
                sock = protocol.transport.get_extra_info("socket")
                seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT))
    public = guarded_socket((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 443)))
    try:
        seen.append(public.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT))
    finally:
        public.close()
    assert seen == [USER_TIMEOUT_MS, USER_TIMEOUT_MS]


async def test_what_a_receiver_writes_on_an_idle_connection_is_neither_kept_nor_taken_for_an_answer(
    codec: Codec,
) -> None:
    """The receiver answers, then (the connection back in the pool) writes a stale 200 and 2 MB of interim
    responses. aiohttp parsed and queued all of it, without bound (30 MB of them grew the dispatcher by 525 MB),
    and the next request on the connection took the stale 200 for its answer. Now the connection is dropped at
    the first unasked byte: the next delivery opens another and gets a real answer. An honest receiver's
    connection is still kept alive and reused."""
    connections = 0
    requests = 0

    async def answers_then_writes_on(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        hostile = connections == 1

        async def answer() -> None:
            nonlocal requests
            requests += 1
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()
            if hostile:
                await asyncio.sleep(0.2)  # back in the pool by now
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                for _ in range(20):
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" * 4000)
                    await writer.drain()

        await each_request(reader, writer, answer)

    async with raw_receiver(answers_then_writes_on) as hook, dispatching(codec) as dispatcher:
        assert (await dispatcher._attempt(delivery(1), hook, SECRETS)).status == 204
        await asyncio.sleep(0.5)
        session = dispatcher._private
        assert session is not None
        pooled = [p for conns in session.connector._conns.values() for p, _ in conns]  # type: ignore[union-attr]
        assert all(len(p._buffer) == 0 for p in pooled)
        second = await dispatcher._attempt(delivery(2, agency="IQ-A"), hook, SECRETS)
        third = await dispatcher._attempt(delivery(3, agency="IQ-A"), hook, SECRETS)
    assert (second.status, third.status) == (204, 204)
    assert (requests, connections) == (3, 2)  # each answered for real; the honest connection reused


def test_a_busy_endpoint_is_put_off_for_about_as_long_as_its_queue_takes_to_drain(codec: Codec) -> None:
    """An honest endpoint answering in 20 ms, 500 deep in a burst: the shortest tier (its queue drains in 2.5 s).
    One answering in 9 s: 500 x 9 s / 4 at a time, about 19 minutes, so its backlog does not cycle through a
    retry tier every few seconds until it dies. Never past the longest tier; a fifth of jitter either way."""
    dispatcher = Dispatcher(DispatcherSettings(), codec)
    fast, slow = ("JO-B", "https://fast.example/hook"), ("IQ-A", "https://slow.example/hook")
    now = time.monotonic()
    dispatcher._latency[fast], dispatcher._latency[slow] = (0.02, now), (9.0, now)
    assert 0.8 * 5 <= dispatcher._busy_wait(fast, 500) <= 1.2 * 5
    assert 0.8 * 1125 * 0.99 <= dispatcher._busy_wait(slow, 500) <= 1.2 * 1125
    assert dispatcher._busy_wait(slow, 100_000) <= 1.2 * max(TIERS.values())
    assert 0.8 * 5 <= dispatcher._busy_wait(("NEW", "https://cold.example/hook"), 500) <= 1.2 * 5  # no answer yet


def test_a_receiver_cannot_average_its_slow_answers_away() -> None:
    """40 answers at once, then 4 held 9.5 s, again and again: its latency for pacing is the held answers', not
    the millisecond an average of the two made of it; it fades by half in 30 s once the receiver is fast."""
    known: tuple[float, float] | None = None
    now = 0.0
    for _ in range(5):
        for _ in range(4):
            known = (slowest_recent(known, 9.5, now), now)
        for _ in range(40):
            now += 0.001
            known = (slowest_recent(known, 0.001, now), now)
        now += 9.5
    assert known is not None and 9.4 <= known[0] <= 9.5
    assert 4.7 <= slowest_recent(known, 0.001, known[1] + 30.0) <= 4.8


async def test_answers_written_behind_a_body_in_one_read_are_not_kept_for_the_next_request(codec: Codec) -> None:
    """The body's last bytes come in a later read, followed there by 3,000 more answers: the body's end releases
    the connection into the pool in the middle of that read, and aiohttp parsed and queued the rest on it (6 MB
    a connection; the next request, another agency's, took a stale answer). Parsed a slice at a time, the read
    stops there and the connection is dropped."""
    connections = 0
    requests = 0

    async def splits_its_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        hostile = connections == 1

        async def answer() -> None:
            nonlocal requests
            requests += 1
            if not hostile:
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"hello" + b"HTTP/1.1 418 Stale\r\nContent-Length: 0\r\n\r\n" * 3000)
            await writer.drain()

        await each_request(reader, writer, answer)

    async with raw_receiver(splits_its_answer) as hook, dispatching(codec) as dispatcher:
        first = await dispatcher._attempt(delivery(1), hook, SECRETS)
        await asyncio.sleep(0.2)
        session = dispatcher._private
        assert session is not None
        pooled = [p for conns in session.connector._conns.values() for p, _ in conns]  # type: ignore[union-attr]
        queued = [len(p._buffer) for p in pooled if p.is_connected()]
        second = await dispatcher._attempt(delivery(2, agency="IQ-A"), hook, SECRETS)
    assert first.status == 200
    assert queued in ([], [0]), queued
    assert second.status == 204 and (requests, connections) == (2, 2)


def test_the_guard_passes_on_aiohttps_own_empty_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiohttp calls data_received with nothing to resume a paused decompression: that reaches its parser, as
    a read does a slice at a time (sliced to nothing, a paused compressed answer would wait for its timeout)."""
    seen: list[bytes] = []
    monkeypatch.setattr(ResponseHandler, "data_received", lambda self, data: seen.append(data))
    loop = asyncio.new_event_loop()
    try:
        guard = IdleGuard(loop)
        guard.data_received(b"")
        guard.data_received(b"x" * (SLICE + 1))
    finally:
        loop.close()
    assert seen == [b"", b"x" * SLICE, b"x"]


@pytest.mark.parametrize(
    ("name", "flood"),
    [
        ("CRLF before the status line", (b"", b"\r\n" * 32768)),
        (
            "a chunk extension that never ends",
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;x=", b"a" * 65536),
        ),
    ],
)
async def test_an_answer_cannot_take_more_than_one_answers_worth_of_bytes(
    codec: Codec, name: str, flood: tuple[bytes, bytes]
) -> None:
    """aiohttp's parser skips CRLF before a status line and a chunk's extension without limit: a receiver streaming
    either kept the dispatcher's core busy parsing for the whole response timeout (4 of them: honest deliveries
    down from 5,788 to 883 a second; red team, round 4). The connection is dropped past one answer's worth of
    bytes (ANSWER_OVERHEAD beyond the body read), long before the timeout."""
    head, filler = flood
    written = 0

    async def streams(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal written
        await reader.readuntil(b"\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            writer.write(head)
            while written < 64 * 1024 * 1024:
                writer.write(filler)
                written += len(filler)
                await writer.drain()
        writer.close()

    async with raw_receiver(streams) as hook, dispatching(codec, response_timeout_s=8.0) as dispatcher:
        started = time.monotonic()
        observed = await dispatcher._attempt(delivery(1), hook, SECRETS)
        took = time.monotonic() - started
    assert observed.status is None and observed.failure == "connection_error", (name, observed)
    assert written < 8 * 1024 * 1024 and took < 4.0, (name, written, took)


async def test_an_idle_connection_streaming_crlf_is_dropped(codec: Codec) -> None:
    """A stray CRLF after an answer is a sloppy server and is let be; a stream of them on the idle connection kept
    the dispatcher parsing at 90% of its core until the keep-alive timeout, 15 s a delivery (red team, round 4)."""
    written = 0

    async def answers_then_streams(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal written

        async def answer() -> None:
            nonlocal written
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.1)  # back in the pool by now
            while written < 256 * 1024 * 1024:
                writer.write(b"\r\n" * 32768)
                written += 65536
                await writer.drain()

        await each_request(reader, writer, answer)

    async with raw_receiver(answers_then_streams) as hook, dispatching(codec) as dispatcher:
        assert (await dispatcher._attempt(delivery(1), hook, SECRETS)).status == 204
        await asyncio.sleep(1.0)
    assert written < 8 * 1024 * 1024, written


async def test_an_honest_answer_with_a_long_body_is_still_taken(codec: Codec) -> None:
    """The byte budget is on what an answer sends before the dispatcher stops reading it: a 5 MB body (more
    than the budget) is read up to max_response_bytes and counted, as before."""

    async def long_body(_: web.Request) -> web.Response:
        return web.Response(status=200, body=b"x" * 5_000_000)

    async with receiver(long_body) as hook, dispatching(codec) as dispatcher:
        observed = [await dispatcher._attempt(delivery(n), hook, SECRETS) for n in range(3)]
    assert [o.status for o in observed] == [200, 200, 200], observed


@pytest.mark.parametrize("status", [0, 99, 600, 999])
async def test_a_status_that_is_not_http_is_a_malformed_answer_not_a_class_of_its_own(
    codec: Codec, status: int
) -> None:
    """Failure classes reach records the originator reads: a receiver answering `999` made `http_999` (any of 900
    classes of its choosing; red team, round 4)."""

    async def answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 %03d Odd\r\nContent-Length: 0\r\n\r\n" % status)
        await writer.drain()
        writer.close()

    async with raw_receiver(answers) as hook, dispatching(codec) as dispatcher:
        observed = await dispatcher._attempt(delivery(1), hook, SECRETS)
    assert (observed.status, observed.failure) == (None, "connection_error"), observed


@pytest.mark.parametrize(("status", "honoured"), [(429, True), (503, True), (500, False), (200, False)])
async def test_retry_after_is_honoured_with_a_429_or_a_503_only(codec: Codec, status: int, honoured: bool) -> None:
    """As docs/webhooks.md says; a receiver's Retry-After on a 500 was honoured too (red team, round 4)."""

    async def answers(_: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Retry-After": "600"})

    async with receiver(answers) as hook, dispatching(codec) as dispatcher:
        observed = await dispatcher._attempt(delivery(1), hook, SECRETS)
    assert observed.status == status and (observed.retry_after == 600.0) is honoured, observed


async def test_a_compressed_answer_is_not_inflated(codec: Codec, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dispatcher reads an answer's body only to bound it: a gzip bomb of 100 KB (100 MB inflated) cost
    about 20 ms of the shared core a delivery, 6-9 times more behind the guard's slices (red team, round 5).
    It asks for no encoding, and inflates nothing a receiver sends anyway."""
    inflated: list[int] = []
    real = zlib.decompressobj

    def counting(*args: Any, **kwargs: Any) -> Any:
        inflated.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(zlib, "decompressobj", counting)
    bomb = gzip.compress(b"\0" * 100_000_000, compresslevel=9)
    asked: list[str] = []

    async def answers(request: web.Request) -> web.Response:
        asked.append(request.headers.get("Accept-Encoding", ""))
        return web.Response(status=200, body=bomb, headers={"Content-Encoding": "gzip"})

    async with receiver(answers) as hook, dispatching(codec) as dispatcher:
        observed = await dispatcher._attempt(delivery(1), hook, SECRETS)
    assert observed.status == 200 and asked == ["identity"] and not inflated, (observed, asked, len(inflated))


async def test_slow_receivers_backlogs_do_not_push_an_honest_burst_off(codec: Codec) -> None:
    """Two receivers holding 500 deliveries each: an honest endpoint's burst of 200 (answered in a moment) still
    waits its turn, none of it put off. With a cap on all waiting together, 90% of it was put off (red team,
    round 5): the slow receivers' own backlogs counted against it."""
    release = asyncio.Event()

    async def slow(_: web.Request) -> web.Response:
        await release.wait()
        return web.Response(status=204)

    async def fast(_: web.Request) -> web.Response:
        return web.Response(status=204)

    async with receiver(slow) as hook, receiver(fast) as honest, dispatching(codec) as dispatcher:
        held = [
            asyncio.create_task(dispatcher._attempt(delivery(n, agency=f"X{a}-SLOW"), hook, SECRETS))
            for a in range(2)
            for n in range(504)
        ]
        await asyncio.sleep(0.5)
        assert sum(dispatcher._waiting.values()) == 1000
        burst = await asyncio.gather(
            *(dispatcher._attempt(delivery(n, agency="JO-B"), honest, SECRETS) for n in range(200))
        )
        release.set()
        await asyncio.gather(*held)
    assert [o.status for o in burst] == [204] * 200, {o.failure for o in burst}
