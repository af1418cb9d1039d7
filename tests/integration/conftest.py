"""The real Apache Kafka broker the integration tests run against, started by the project's own script.

One broker per test session, on a free port, in a temporary directory, stopped at the end. Tests isolate
themselves from each other with a unique client-id prefix (their own consumer groups and transactional
ids) and unique agency codes, so they can share the broker and its topics.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from services.cli.local_broker import BrokerStartError, LocalBroker
from services.common.ops import bound_port
from services.common.settings import KafkaSettings
from services.common.topics import apply_topics, load_declarations
from services.demo.receivers import Receivers


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A real single-node KRaft broker, secured as `make run`'s (SASL_SSL, ACLs), with every declared topic."""
    try:
        local = LocalBroker.start(tmp_path_factory.mktemp("kafka"))
    except BrokerStartError as exc:
        pytest.fail(str(exc))
    try:
        report = asyncio.run(
            apply_topics(local.admin_settings(), list(load_declarations().topics), replication_factor=1)
        )
        assert not report.drift, report.drift
        yield local
    finally:
        local.stop()


@pytest.fixture
def kafka(broker: LocalBroker) -> KafkaSettings:
    """Kafka settings with a client-id prefix of this test's own (its groups and transactional ids)."""
    return broker.admin_settings(client_id_prefix=f"t{uuid.uuid4().hex[:10]}", linger_ms=1)


@pytest.fixture
async def receivers() -> AsyncIterator[tuple[str, Receivers]]:
    """Verifying webhook receivers (the demo's, built on `standardwebhooks`) on a free port."""
    rcv = Receivers()
    runner = web.AppRunner(rcv.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{bound_port(runner)}", rcv
    finally:
        await runner.cleanup()
