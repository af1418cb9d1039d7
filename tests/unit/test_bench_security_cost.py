"""What security costs (bench/security_cost.py), the broker-under-load reproduction's counting, and that only
the benchmark starts a plaintext broker."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench.broker_under_load import broker_events, produce_error
from bench.pipeline import cores_busy
from bench.security_cost import TARGET, others_busy, saturation_ratio, security_cost
from services.cli import local_broker
from services.cli.local_broker import LocalBroker

ROOT = Path(__file__).resolve().parents[2]


def ramp(sustained: float | None, failed: float | None) -> dict[str, Any]:
    return {"sustained_per_second": sustained, "not_sustained_per_second": failed}


def test_the_ratio_is_met_only_when_even_its_lowest_bound_reaches_the_target() -> None:
    """Secured 90-103/s against plaintext 100-115/s: 0.9, but anywhere from 0.78 to 1.03, so not a verdict."""
    undecided = saturation_ratio(ramp(90.0, 103.0), ramp(100.0, 115.0))
    assert (undecided["ratio"], undecided["lowest"], undecided["highest"]) == (0.9, 0.783, 1.03)
    assert undecided["verdict"] == "within the ramps' precision"
    assert saturation_ratio(ramp(100.0, 115.0), ramp(100.0, 115.0))["verdict"] == "met"
    assert saturation_ratio(ramp(60.0, 69.0), ramp(100.0, 115.0))["verdict"] == "not met"
    assert saturation_ratio(ramp(1.0, 2.0), ramp(1.0, 2.0))["target"] == TARGET


def test_a_ramp_that_never_failed_or_never_sustained_bounds_the_ratio_on_one_side_only() -> None:
    """A plaintext ramp that sustained every probe gives no lowest ratio; a secured one that sustained none, none."""
    open_top = saturation_ratio(ramp(100.0, 115.0), ramp(120.0, None))
    assert (open_top["lowest"], open_top["highest"]) == (None, 0.958)
    assert open_top["verdict"] == "within the ramps' precision"
    assert saturation_ratio(ramp(None, 20.0), ramp(100.0, 115.0))["verdict"] == "not measured"


def test_security_cost_compares_the_steady_steps_latency_and_cpu() -> None:
    """Latency is secured minus plaintext in ms; CPU per 1,000 alerts is secured over plaintext."""

    def run(topic_p50: float, topic_p99: float, services: float, broker: float) -> dict[str, Any]:
        figures = {"p50_ms": topic_p50, "p99_ms": topic_p99}
        return {
            "saturation": ramp(100.0, 115.0),
            "steady": {"rate_per_second": 20, "submit_to_agency_topic": figures, "submit_to_webhook": figures},
            "cpu_s_per_1000_alerts": {"total": services},
            "broker_cpu_s_per_1000_alerts": broker,
        }

    cost = security_cost(run(10.0, 22.5, 15.0, 3.0), run(8.0, 20.0, 12.0, 2.0))
    latency, cpu = cost["steady"]["latency"], cost["steady"]["cpu_s_per_1000_alerts"]
    assert cpu["both"] == {"secured": 18.0, "plaintext": 14.0, "ratio": 1.286}
    assert cost["ratio_if_cpu_bound"] == 0.778  # 14 CPU-s per 1,000 alerts over 18
    assert latency["submit_to_agency_topic_p50_ms"]["added_ms"] == 2.0
    assert latency["submit_to_webhook_p99_ms"]["added_ms"] == 2.5
    assert (cpu["services"]["ratio"], cpu["broker"]["ratio"]) == (1.25, 1.5)
    assert cost["saturation"]["ratio"] == 1.0


def test_the_rest_of_the_machine_is_what_it_was_busy_with_besides_the_benchmark() -> None:
    """Over 10 s the machine spent 15 CPU-s; the benchmark 9 of them: others kept 0.6 cores busy."""
    before = {"services": 100.0, "broker": 50.0, "harness": 10.0, "machine": 1000.0}
    after = {"services": 105.0, "broker": 53.0, "harness": 11.0, "machine": 1015.0}
    assert cores_busy(before, after, 10.0) == {
        "services": 0.5,
        "broker": 0.3,
        "harness": 0.1,
        "total": 0.9,
        "others": 0.6,
    }
    probes = [{"cores_busy": {"others": 0.6}}, {"cores_busy": {"others": 1.0}}]
    assert others_busy({"probes": probes}) == 0.8
    assert others_busy({"probes": [{"cores_busy": {"total": 1.0}}]}) is None


def test_aiokafka_warnings_are_counted_by_the_refusal_they_report() -> None:
    """Both spellings of a lost leader count as one kind; any other error by its own name."""
    retried = "Got error produce response on topic-partition TopicPartition(topic='a', partition=0), retrying. "
    assert produce_error(retried + "Error: <class 'aiokafka.errors.NotEnoughReplicasError'>") == "not_enough_replicas"
    assert produce_error(retried + "Error: <class 'aiokafka.errors.NotLeaderForPartitionError'>") == "not_leader"
    assert produce_error("Got error produce response: KafkaConnectionError") == "KafkaConnectionError"
    assert produce_error("Heartbeat failed for group g") is None


def test_the_broker_log_says_when_the_controller_fenced_its_own_broker() -> None:
    """Lines as Kafka 4.1 writes them (a 12 s stall with the 9 s session): fenced, leaderless, unfenced."""
    log = [
        "09:13:03.962 INFO  ReplicationControlManager: [QuorumController id=1] Fencing broker 1 at epoch 18 "
        "because its session has timed out.",
        "09:13:04.020 INFO  ReplicationControlManager: [QuorumController id=1] handleBrokerFenced: changing 32 "
        "partition(s)",
        "09:13:04.037 INFO  BrokerHeartbeatManager: [QuorumController id=1] The request from broker 1 to unfence "
        "has been granted because it has caught up with the offset of its register broker record 18.",
        "09:13:04.333 WARN  TransactionStateManager: [Transaction State Manager 1]: Unloaded transaction metadata "
        "TxnMetadataCacheEntry(coordinatorEpoch=0, numTransactionalEntries=1) from 0 as part of loading metadata",
        "09:13:05.000 INFO  KafkaRaftServer: [KafkaRaftServer nodeId=1] Kafka Server started",
    ]
    counts = {kind: len(lines) for kind, lines in broker_events(log).items()}
    expected = {
        "fenced_by_controller": 1,
        "partitions_left_leaderless": 1,
        "unfence_granted": 1,
        "transaction_coordinator_moved": 1,
    }
    assert expected == counts


def test_local_broker_passes_settings_and_plaintext_to_the_script(monkeypatch: pytest.MonkeyPatch) -> None:
    """`settings` become --set KEY=VALUE; a plaintext broker's clients use PLAINTEXT and no principal."""
    commands: list[list[str]] = []

    def run(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        commands.append(command)
        return subprocess.CompletedProcess(command, 0, "127.0.0.1:9999\n", "")

    monkeypatch.setattr(local_broker.subprocess, "run", run)
    broker = LocalBroker.start(Path("/tmp/x"), settings={"broker.session.timeout.ms": "9000"}, plaintext=True)
    assert commands[0][-3:] == ["--set", "broker.session.timeout.ms=9000", "--plaintext"]
    settings = broker.admin_settings()
    assert (settings.security_protocol, settings.username) == ("PLAINTEXT", None)
    LocalBroker.start(Path("/tmp/x"))
    assert "--plaintext" not in commands[1]


def test_only_the_benchmark_starts_a_plaintext_broker() -> None:
    """Outside their definitions, `plaintext=True` and `--plaintext` appear only in bench/ (issue 14)."""
    definitions = {
        "deploy/kafka/kafka-local.sh",
        "services/cli/local_broker.py",
        "tests/unit/test_bench_security_cost.py",
    }
    files = subprocess.run(
        ["git", "ls-files", "*.py", "*.sh", "Makefile", "*.yaml", "*.yml", "*.toml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    users = {
        name
        for name in files
        if (ROOT / name).is_file() and any(w in (ROOT / name).read_text() for w in ("plaintext=True", "--plaintext"))
    }
    assert set() == {name for name in users - definitions if not name.startswith("bench/")}
