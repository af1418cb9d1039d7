"""`apply_topics` waiting for the broker to show its topics: when it never does, one error that names them.

The admin client is a fake: what is tested is our loop's way out when the wait ends, not Kafka's behaviour
(the real broker's side is tests/integration/test_topics_and_registry.py).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from services.cli.main import main
from services.common import topics
from services.common.errors import NotReadyError
from services.common.settings import KafkaSettings
from services.common.topics import TopicSpec, apply_topics

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "registry" / "demo.yaml"


class LaggingMetadata:
    """An admin client that creates every topic but whose metadata never shows those named in `hidden`
    (an error code, as a broker answers for a topic it does not know, or no partitions yet)."""

    def __init__(self, hidden: dict[str, int | None]) -> None:
        self.hidden = hidden
        self.created: list[str] = []

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def list_topics(self) -> list[str]:
        return []

    async def create_topics(self, new: list[Any]) -> Any:
        self.created += [t.name for t in new]
        return SimpleNamespace(topic_errors=[(t.name, 0, None) for t in new])

    async def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        def described(name: str) -> dict[str, Any]:
            if name not in self.hidden:
                return {"topic": name, "error_code": 0, "partitions": [{"partition": 0}]}
            return {"topic": name, "error_code": self.hidden[name] or 0, "partitions": []}

        return [described(n) for n in names]


@pytest.fixture
def lagging(monkeypatch: pytest.MonkeyPatch) -> LaggingMetadata:
    """The fake in place of the Kafka admin client `apply_topics` makes, and a wait of 0.2 s instead of 60."""
    fake = LaggingMetadata({"agency.JO-TAC.alerts": 3, "alerts.routed": None})
    monkeypatch.setattr(topics, "kafka_admin", lambda kafka, name: fake)
    monkeypatch.setattr(topics, "VISIBLE_WITHIN_S", 0.2)
    return fake


async def test_topics_that_never_show_are_named_with_the_brokers_reason(lagging: LaggingMetadata) -> None:
    """The error names each topic still missing and why (the broker's error, or no partitions), not the others."""
    specs = [TopicSpec(name, 1, 1) for name in ("agency.JO-TAC.alerts", "alerts.enriched", "alerts.routed")]

    with pytest.raises(NotReadyError) as raised:
        await apply_topics(KafkaSettings(), specs)

    expected = (
        "the broker does not show 2 of 3 topics after 0.2 s: agency.JO-TAC.alerts (UnknownTopicOrPartitionError), "
        "alerts.routed (no partitions); check the broker's health (its log; a controller elected, every partition "
        "with a leader), then apply again"
    )
    assert expected == str(raised.value)


@pytest.mark.parametrize(
    ("command", "named"),
    [
        (["registry", "apply", str(DEMO)], " s: agency.JO-TAC.alerts (UnknownTopicOrPartitionError); check "),
        (["topics", "apply"], " s: alerts.routed (no partitions); check "),
    ],
)
def test_rctc_says_it_on_one_line_and_exits_1(
    command: list[str], named: str, lagging: LaggingMetadata, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rctc registry apply` (and `topics apply`) print the error as one line on stderr, no traceback, exit 1."""
    with pytest.raises(SystemExit) as exited:
        main(command)
    out, err = capsys.readouterr()

    assert lagging.created  # it got as far as the wait
    assert (exited.value.code, out, err.count("\n")) == (1, "", 1)
    assert err.startswith("rctc: the broker does not show ")
    assert named in err  # the one missing, and only it
