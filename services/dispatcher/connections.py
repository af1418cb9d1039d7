"""Kept-alive connections to receivers read nothing while they wait in the pool.

aiohttp goes on reading a connection it keeps alive for the next request: what arrives while it is idle is
parsed and queued, without bound, for whichever request uses it next. A receiver answering 200 and then
writing 30 MB of `100 Continue` on the idle connection grew the dispatcher by 525 MB (over its pod's limit:
a crash loop for every agency's deliveries, repeatable after each restart), and one writing `200 OK`
responses there had the next request on the connection take a stale 200 for its answer: counted delivered,
and another agency's if their endpoints share a host and port (red team). We never pipeline, so a byte
that arrives while no request is out is never an answer: the connection is dropped at the first one.

Nor does a connection take more than one answer's worth of bytes (`GuardedConnector(answer_bytes=)`): aiohttp's
parser skips CRLF before a status line and a chunk's extensions without limit, so a receiver answering 204
in a few milliseconds and streaming CRLF around its answers (or a chunk extension that never ends) kept the
dispatcher's one core 90% busy parsing for as long as the connection lived, honest deliveries down by 80%,
while its own deliveries all counted delivered and its circuit stayed closed (red team, round 4). An idle
connection may see a stray CRLF or two (STRAY_BYTES), no more.

`GuardedConnector` is the sessions' TCPConnector: its connections are `IdleGuard` protocols, marked idle when
the pool takes them back (`_release`) and busy when a request sets its response parameters. Both hooks are
aiohttp internals (its connector's protocol factory and release, 3.14); tests/unit/test_hostile_receivers.py
fails if they stop being called.
"""

from __future__ import annotations

import functools
from typing import Any, cast

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.http_exceptions import BadHttpMessage

from services.dispatcher.interim import MAX_INTERIM

# What one call of the parser gets. aiohttp parses a whole read (up to 256 KiB) at once, and the connection can
# be released into the pool in the middle of it (a body's last byte ends the response there): the rest was then
# parsed and queued on a pooled connection after all, 3,368 messages from one 128 KiB read, a stale answer for
# the next request among them (red team, round 3). Parsed a slice at a time, a read stops where that happens.
SLICE = 4096
# Messages a response may leave queued at once: its interim ones (interim.py) and the final one.
MAX_QUEUED = MAX_INTERIM + 1
# What an idle connection may receive: a stray CRLF after a body is a sloppy server, not an attack.
STRAY_BYTES = 4
# What an answer may take beyond the body the dispatcher reads (settings.max_response_bytes): its status line,
# headers and interim responses, and what arrives of a longer body before the dispatcher stops reading it (the
# reader's flow control stops the socket at 128 KiB buffered). An honest answer is a few KiB.
ANSWER_OVERHEAD = 1024 * 1024


class IdleGuard(ResponseHandler):
    idle = False
    taken = 0  # what this answer, or this idle spell, took

    def __init__(self, loop: Any, budget: int = 64 * 1024 + ANSWER_OVERHEAD) -> None:
        """`budget`: the bytes one answer may take (GuardedConnector's answer_bytes)."""
        super().__init__(loop)
        self.budget = budget

    def set_response_params(self, **params: Any) -> None:
        self.idle = False
        self.taken = 0
        super().set_response_params(**params)

    def data_received(self, data: bytes) -> None:
        self.taken += len(data)
        if self.idle:
            if data.strip(b"\r\n") or self.taken > STRAY_BYTES:
                self._drop()
            return
        if not data:  # aiohttp's own call to resume a paused decompression, not a read
            super().data_received(data)
            return
        if self.taken > self.budget:
            self._drop(f"the answer took over {self.budget} bytes")
            return
        for start in range(0, len(data), SLICE):
            super().data_received(data[start : start + SLICE])
            left = start + SLICE < len(data)
            if (self.idle and (left or self._buffer or self._tail)) or len(self._buffer) > MAX_QUEUED:
                self._drop()
                return

    def _drop(self, why: str = "more was written than one answer and its interim responses") -> None:
        """Unasked for: nothing more parsed or kept. A request reading the connection fails as on a malformed
        answer (a ClientResponseError: with the queue emptied and no error set it got aiohttp's bare EofStream,
        which no caller expects); the pool finds the connection closed and opens another."""
        self.idle = False
        self._buffer.clear()
        self.set_exception(BadHttpMessage(why))
        if self.transport is not None:
            self.transport.abort()


class GuardedConnector(aiohttp.TCPConnector):
    def __init__(self, *, answer_bytes: int, **kwargs: Any) -> None:
        """`answer_bytes`: what one answer may take, its body as read (max_response_bytes) and ANSWER_OVERHEAD."""
        super().__init__(**kwargs)
        self._factory = cast(
            "functools.partial[ResponseHandler]", functools.partial(IdleGuard, loop=self._loop, budget=answer_bytes)
        )

    def _release(self, key: Any, protocol: ResponseHandler, *, should_close: bool = False) -> None:
        if isinstance(protocol, IdleGuard):
            protocol.idle = True
            protocol.taken = 0
        super()._release(key, protocol, should_close=should_close)
