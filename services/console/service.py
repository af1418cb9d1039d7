"""The operator console: the duty desk's wall screen (pages.py). It moves data: alert states from the tracker
(which owns them, through its internal API), alert contents from alerts.enriched, endpoint states from
deliveries.endpoints, the registry and operators' credentials from their topics; what each page shows is
decided in views.py, who may see it in pages.py and sessions.py.

One shared poll of the tracker feeds "now": every second, with an ETag, so an unchanged ledger costs the
tracker a 304; the page's fragment is rendered once per change and sent to every open page over
Server-Sent Events. An alert's page polls that alert alone, while it is open.

Actions (enable or disable an endpoint, replay its dead deliveries) go through the functions `rctc
endpoints` and `rctc deliveries replay` use (services/cli/deliveries.py), as this service's own Kafka
principal, `service-console`, with the ACLs services/common/topics.yaml gives it; the operator who acted is named in
what they write and in the console's log line.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web

from services.common.codec import Codec
from services.common.logs import get_logger
from services.common.ops import bound_port
from services.common.registry import CredentialsView, RegistryView
from services.console.contents import Contents
from services.console.pages import Pages
from services.console.sessions import Sessions
from services.console.settings import ConsoleSettings
from services.console.tracker import TrackerClient, TrackerUnavailable
from services.console.views import board_of
from services.dispatcher.endpoints import EndpointStates

log = get_logger("rctc.console")


class Console:
    name = "console"

    def __init__(self, settings: ConsoleSettings, codec: Codec) -> None:
        self.settings = settings
        self.codec = codec
        kafka = settings.kafka
        self.registry = RegistryView(kafka, codec, name="console")
        self.credentials = CredentialsView(kafka, codec, name="console")
        self.endpoints = EndpointStates(kafka, codec, name="console")
        self.contents = Contents(kafka, codec, limit=settings.contents_limit, history_s=settings.contents_history_s)
        self.tracker = TrackerClient(settings.tracker_url, settings.internal_token)
        s = settings.sessions
        self.sessions = Sessions(idle_s=s.idle_s, max_s=s.max_s, limit=s.limit)
        # The tracker's latest answer for "now" (alerts awaiting acknowledgements) and its ETag.
        self.board: list[dict[str, Any]] = []
        self.board_ok = False
        self.board_full = False  # the tracker's newest open alerts filled the board: more are open
        self._board_etag: str | None = None
        self.closing = asyncio.Event()  # set at stop: every open stream ends
        self.pages = Pages(self)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        await self.registry.start()
        await self.credentials.start()
        await self.endpoints.start()
        await self.contents.start()
        await self.tracker.start()
        self._runner = web.AppRunner(self.pages.app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.settings.http.host, self.settings.http.port).start()
        self.port = bound_port(self._runner)
        log.info("console.listening", host=self.settings.http.host, port=self.port)

    async def run(self, stopping: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tasks:
            for follower in (self.registry, self.credentials, self.endpoints, self.contents):
                tasks.create_task(follower.run(stopping))
            tasks.create_task(self._poll_board(stopping))
            tasks.create_task(self._end_dropped_sessions(stopping))

    async def stop(self) -> None:
        self.closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.tracker.close()
        for follower in (self.contents, self.endpoints, self.credentials, self.registry):
            await follower.stop()

    def readiness(self) -> dict[str, bool]:
        return {
            "registry": self.registry.loaded,
            "contents": self.contents.loaded,
            "endpoints": self.endpoints.loaded,
            "tracker": self.board_ok,
        }

    async def _poll_board(self, stopping: asyncio.Event) -> None:
        params = {
            "viewer_kind": "operator",
            "viewer": "console",
            "state": "open",
            "limit": str(self.settings.board_limit),
        }
        while not stopping.is_set():
            try:
                status, body, etag = await self.tracker.get(("alerts",), params, self._board_etag)
                if status == 200:
                    newest = body["alerts"]
                    self.board_full = len(newest) >= self.settings.board_limit
                    by_origin = await self._board_by_origin(params) if self.board_full else []
                    self.board, self._board_etag = board_of(newest, by_origin), etag
                self.board_ok = status in (200, 304)
            except TrackerUnavailable:
                self.board_ok = False
            self.pages.board_changed()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.settings.refresh_s)

    async def _board_by_origin(self, params: dict[str, str]) -> list[list[dict[str, Any]]]:
        """The escalated alerts and each agency's newest open ones, when the newest of all filled the board
        (views.board_of says why). Only then: a request per agency and one more, at most once per change of the
        tracker's ledger."""
        # The escalated first, whoever sent them: the alerts the duty desk must act on stay on the board even when
        # their agency's newest are others.
        status, body, _ = await self.tracker.get(
            ("alerts",), {**params, "state": "escalated", "limit": str(self.settings.board_limit)}
        )
        lists = [body["alerts"]] if status == 200 else []
        limit = str(self.settings.board_origin_limit)
        registry = self.registry.current
        for code in sorted(registry.agencies if registry is not None else ()):
            status, body, _ = await self.tracker.get(("alerts",), {**params, "origin": code, "limit": limit})
            if status == 200:
                lists.append(body["alerts"])
        return lists

    async def _end_dropped_sessions(self, stopping: asyncio.Event) -> None:
        """End the sessions of operators a new registry version no longer lists, at once rather than at their
        next request (an open stream checks its session every tick too)."""
        while not stopping.is_set():
            registry = self.registry.current
            if registry is not None:
                ended = self.sessions.close_all_except(set(registry.operators))
                if ended:
                    log.info("console.sessions_ended", reason="operator_removed", count=ended)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.settings.slow_refresh_s)


def build(settings: ConsoleSettings, codec: Codec | None = None) -> Console:
    return Console(settings, codec or Codec.from_directory())
