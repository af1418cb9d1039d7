"""One way to start and stop every service.

A service is three coroutines: `start()` opens its clients, `run(stopping)` works until the event is set
and then finishes or hands back what is in flight, `stop()` closes its clients in reverse order. `serve`
adds the operations server, signal handling and the bounded graceful shutdown:

    asyncio.run(serve(build_router(settings), settings))

On SIGTERM or SIGINT the service stops fetching, gets `shutdown_timeout_s` to finish the records it holds
(their offsets are committed), and is cancelled after that: what was not committed is fetched again by
whichever replica owns the partition next, so nothing is lost either way. The process then exits 0.
"""

from __future__ import annotations

import asyncio
import faulthandler
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Protocol, TypeVar

from pydantic import ValidationError

from services.common import gc_pauses
from services.common.errors import RctcError
from services.common.logs import configure_logging, get_logger
from services.common.ops import OpsServer
from services.common.settings import ServiceSettings

log = get_logger(__name__)
S = TypeVar("S", bound=ServiceSettings)


class Service(Protocol):
    name: str

    async def start(self) -> None: ...

    async def run(self, stopping: asyncio.Event) -> None: ...

    async def stop(self) -> None: ...

    def readiness(self) -> dict[str, bool]: ...


@asynccontextmanager
async def running(service: Service, shutdown_timeout_s: float = 10.0) -> AsyncIterator[asyncio.Task[None]]:
    """Start a service, run it in a task, and stop it gracefully on exit (also what tests use)."""
    stopping = asyncio.Event()
    try:
        await service.start()
    except BaseException:
        await service.stop()  # close whatever the failed start opened; stop() tolerates a partial start
        raise
    task = asyncio.create_task(service.run(stopping), name=f"{service.name}.run")
    try:
        yield task
    finally:
        stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), shutdown_timeout_s)
        except TimeoutError:
            log.warning("service.shutdown_timeout", timeout_s=shutdown_timeout_s)
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        except Exception:
            # run() failed: it is logged below by serve(), or raised to the test that awaited the task.
            pass
        await service.stop()


async def serve(service: Service, settings: ServiceSettings) -> None:
    """Run a service until SIGTERM/SIGINT, with its /healthz, /readyz and /metrics server."""
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signalled.set)
    ops = OpsServer(settings.ops, service.readiness)
    await ops.start()
    started = time.monotonic()
    try:
        async with running(service, settings.shutdown_timeout_s) as task:
            gc_pauses.settle()
            # Created here, where no alert's context is bound, so none is copied onto its lines.
            pauses = asyncio.create_task(gc_pauses.report())
            log.info("service.started", service=service.name, ops_port=ops.port)
            waiter = asyncio.create_task(signalled.wait())
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            pauses.cancel()
            if task.done() and task.exception() is not None:
                log.error("service.crashed", service=service.name, exc_info=task.exception())
                raise SystemExit(1)
            log.info("service.stopping", service=service.name)
    finally:
        await ops.stop()
        log.info("service.stopped", service=service.name, uptime_s=round(time.monotonic() - started, 1))


def main(name: str, settings_type: type[S], build: Callable[[S], Service]) -> None:
    """The entry point of every service: settings from the environment, logging, then serve until stopped."""
    try:
        settings = settings_type()
    except ValidationError as exc:  # a setting missing or wrong (RCTC_INTERNAL_TOKEN, ...): say which, no traceback
        raise SystemExit(f"{name}: cannot start: {exc}") from None
    configure_logging(settings.log, name)
    # A crash in C code (an extension, the interpreter) leaves a Python traceback in the log, not just a
    # segmentation fault in the kernel's.
    faulthandler.enable()
    gc_pauses.watch()
    with asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner:
        try:
            runner.run(serve(build(settings), settings))
        except RctcError as exc:
            # A start refused for a reason the service names (the auditor's unsigned head, a missing
            # dependency): the message is the whole story, already logged; no traceback.
            raise SystemExit(f"{name}: stopped: {exc}") from None


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop if chosen or (auto) installed; None for asyncio's own."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise SystemExit("event_loop=uvloop but uvloop is not installed: pip install '.[fast]'") from None
        return None
    return uvloop.new_event_loop
