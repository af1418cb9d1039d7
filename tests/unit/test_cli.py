"""The `rctc` command's offline parts: validating a registry file, making credentials, how `dev up` fails."""

from __future__ import annotations

import hashlib
import io
import subprocess
from pathlib import Path

import pytest

from services.cli import devrun
from services.cli.main import main
from services.common.settings import KafkaSettings

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "registry" / "demo.yaml"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    out, err = capsys.readouterr()
    return int(caught.value.code or 0), out, err


def test_validate_accepts_the_demo_registry(capsys: pytest.CaptureFixture[str]) -> None:
    """A valid file is summarised and the exit code is 0."""
    code, out, _ = run(["registry", "validate", str(DEMO)], capsys)
    assert code == 0 and "valid: 8 agencies, 5 agreements" in out


def test_validate_reports_problems_with_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid file exits 1 and prints each problem as file:line: field: message."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO.read_text().replace("max_tlp: AMBER\n", "max_tlp: AMBR\n", 1))
    code, _, err = run(["registry", "validate", str(bad)], capsys)
    line = DEMO.read_text().splitlines().index("    max_tlp: AMBER") + 1
    assert code == 1
    assert f"{bad}:{line}: $.agreements[0].max_tlp: 'AMBR' is not one of" in err


def test_validate_says_why_a_grading_is_no_minimum(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A subscription asking for F ("cannot be judged") is refused at its line, saying what a minimum may be."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO.read_text().replace("min_source_reliability: B\n", "min_source_reliability: F\n", 1))
    code, _, err = run(["registry", "validate", str(bad)], capsys)
    line = DEMO.read_text().splitlines().index("        min_source_reliability: B") + 1
    assert code == 1
    assert (
        f"{bad}:{line}: $.agencies[0].subscriptions[0].min_source_reliability: F means the source cannot be judged, "
        "which is no minimum: a minimum source reliability is A (best) to E"
    ) in err


def test_validate_reads_standard_input_for_a_dash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-` is the registry on standard input: summarised as such, and its problems named at `<stdin>`'s lines."""
    monkeypatch.setattr("sys.stdin", io.StringIO(DEMO.read_text()))
    code, out, _ = run(["registry", "validate", "-"], capsys)
    assert (code, out) == (0, "<stdin>: valid: 8 agencies, 5 agreements, 1 operators\n")
    monkeypatch.setattr("sys.stdin", io.StringIO(DEMO.read_text().replace("max_tlp: AMBER\n", "max_tlp: AMBR\n", 1)))
    code, _, err = run(["registry", "validate", "-"], capsys)
    line = DEMO.read_text().splitlines().index("    max_tlp: AMBER") + 1
    assert code == 1 and f"<stdin>:{line}: $.agreements[0].max_tlp:" in err


def test_token_prints_the_hash_the_registry_stores(capsys: pytest.CaptureFixture[str]) -> None:
    """`rctc token T` prints SHA-256(T), the value for token_sha256."""
    code, out, _ = run(["token", "demo-iq-nab"], capsys)
    assert code == 0 and hashlib.sha256(b"demo-iq-nab").hexdigest() in out


@pytest.mark.parametrize("content", ["", "short\n"])
def test_an_existing_password_file_must_hold_a_real_password(
    content: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`service credentials --existing` refuses an empty or short file before it reaches any broker."""
    path = tmp_path / "kafka.password"
    path.write_text(content)
    code, _, err = run(["service", "credentials", "gateway", "--password-file", str(path), "--existing"], capsys)
    assert (code, err) == (1, f"rctc: {path} holds no password of at least 24 characters\n")


def test_an_existing_password_file_must_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing file is named, with the system's reason."""
    path = tmp_path / "absent.password"
    code, _, err = run(["service", "credentials", "gateway", "--password-file", str(path), "--existing"], capsys)
    assert (code, err) == (1, f"rctc: {path}: No such file or directory\n")


def test_a_failed_set_up_step_ends_dev_up_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`make run`: when `rctc topics apply` fails (having said why on one line), `dev up` says which step failed,
    stops the broker and exits with the step's code, without a traceback."""
    stopped = []

    class Broker:
        def admin_settings(self) -> KafkaSettings:
            return KafkaSettings()

        def stop(self) -> None:
            stopped.append(True)

    def failing(cmd: list[str], **_: object) -> None:
        raise subprocess.CalledProcessError(1, cmd)

    monkeypatch.setattr(devrun.LocalBroker, "start", lambda *_: Broker())
    monkeypatch.setattr(devrun.subprocess, "run", failing)
    code, _, err = run(["dev", "up", "--state-dir", str(tmp_path)], capsys)

    assert (code, stopped) == (1, [True])
    assert "rctc dev: `rctc topics apply --replication-factor 1` failed (exit 1)\n" in err
    assert "Traceback" not in err


def test_dev_up_outside_a_checkout_says_it_needs_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Installed from a wheel there is no broker script: `dev up` says it is a checkout's command, exit 2, and
    starts nothing."""
    monkeypatch.setattr(devrun, "SCRIPT", tmp_path / "deploy" / "kafka" / "kafka-local.sh")
    monkeypatch.setattr(devrun.LocalBroker, "start", lambda *_: pytest.fail("a broker was started"))
    code, out, err = run(["dev", "up", "--state-dir", str(tmp_path)], capsys)
    assert (code, out) == (2, "")
    assert err.startswith("rctc dev: the local Kafka broker is started by deploy/kafka/kafka-local.sh of a checkout")
