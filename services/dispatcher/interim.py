"""A receiver's answer may carry a few interim (1xx) responses before its final one, not an endless stream.

aiohttp's client reads interim responses in a loop without a bound until the final one or the total timeout.
A receiver streaming `HTTP/1.1 100 Continue` for the ten seconds of its timeout kept the dispatcher's one
event loop busy parsing them (about 5 us each: a core, for 5 MB/s sent), and every other agency's
deliveries waited behind it; ending the stream with a 200 even counted as delivered (red team:
tests/unit/test_hostile_receivers.py). The dispatcher never sends `Expect: 100-continue`, so the only
interim responses a receiver has reason to send are the odd 103 Early Hints.

`BoundedInterimResponse` is the sessions' response class: past MAX_INTERIM interim responses it closes the
connection and the attempt fails as a malformed answer (`connection_error`), which its circuit breaker
counts. It counts them by wrapping the connection's `read` for the time of `start()`, the one place aiohttp
reads them, rather than copying `start()` itself.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp.http_exceptions import BadHttpMessage

MAX_INTERIM = 8


class BoundedInterimResponse(aiohttp.ClientResponse):
    async def start(self, connection: Any) -> aiohttp.ClientResponse:
        protocol = connection.protocol
        read = protocol.read
        interim = 0

        async def counted() -> Any:
            nonlocal interim
            message, payload = await read()
            if 100 <= message.code < 200 and message.code != 101:
                interim += 1
                if interim > MAX_INTERIM:
                    protocol.force_close()
                    raise BadHttpMessage(f"more than {MAX_INTERIM} interim (1xx) responses")
            return message, payload

        protocol.read = counted
        try:
            return await super().start(connection)
        finally:
            del protocol.read
