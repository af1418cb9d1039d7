"""Kept-alive connections to receivers read nothing while they wait in the pool.

aiohttp goes on reading a connection it keeps alive for the next request: what arrives while it is idle is
parsed and queued, without bound, for whichever request uses it next. A receiver answering 200 and then
writing 30 MB of `100 Continue` on the idle connection grew the dispatcher by 525 MB (over its pod's limit:
a crash loop for every agency's deliveries, repeatable after each restart), and one writing `200 OK`
responses there had the next request on the connection take a stale 200 for its answer: counted delivered,
and another agency's if their endpoints share a host and port (red team). We never pipeline, so a byte
that arrives while no request is out is never an answer: the connection is dropped at the first one.

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


class IdleGuard(ResponseHandler):
    idle = False

    def set_response_params(self, **params: Any) -> None:
        self.idle = False
        super().set_response_params(**params)

    def data_received(self, data: bytes) -> None:
        if self.idle and data:
            # Unasked for: not queued, not parsed. The pool finds the connection closed and opens another.
            self.idle = False
            if self.transport is not None:
                self.transport.abort()
            return
        super().data_received(data)


class GuardedConnector(aiohttp.TCPConnector):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._factory = cast("functools.partial[ResponseHandler]", functools.partial(IdleGuard, loop=self._loop))

    def _release(self, key: Any, protocol: ResponseHandler, *, should_close: bool = False) -> None:
        if isinstance(protocol, IdleGuard):
            protocol.idle = True
        super()._release(key, protocol, should_close=should_close)
