"""The package as an operator installs it: a wheel built from this repository, installed into a fresh virtualenv
outside it with nothing downloaded, run from a directory outside it. `rctc` finds the schemas and the topic
declarations inside the package, takes the registry on standard input, and the services' entry points start.

The virtualenv borrows the shared .venv's third-party packages through a .pth file naming a directory of links
to them, leaving out this project's own editable install (its finder, its .pth file, its metadata): `services`
can only come from the wheel. The wheel is built from a copy of what the Dockerfile's first stage copies
(pyproject.toml, README.md, services/), so the build writes nothing into the checkout.

On a broker of its own: `rctc registry apply` publishes the registry in force and reconciles the ACLs of the
whole broker, both of which the shared broker's other tests rely on being theirs.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.cli.local_broker import LocalBroker
from services.common.acls import SERVICES
from services.common.codec import Codec
from services.common.ops import free_port
from services.common.registry.document import load_registry
from services.common.registry.publish import latest_published
from services.common.topics import load_declarations
from tests.support.world import ROOT, ready_then_stopped

DEMO_REGISTRY = ROOT / "deploy" / "registry" / "demo.yaml"
# What of the shared .venv's site-packages the virtualenv must not see: this project's editable install.
OWN_INSTALL = ("__editable__", "rctc_alert_exchange")
# A command run twice, or two commands in turn.
Runs = tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]


@dataclass(frozen=True)
class Installed:
    venv: Path
    wheel: Path
    workdir: Path
    broker: LocalBroker

    def env(self, **extra: str) -> dict[str, str]:
        """The installed tool's environment: its virtualenv's bin first, the broker's admin settings, and nothing
        of this checkout (no PYTHONPATH, no RCTC_ variable of the test run's own)."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("RCTC_", "PYTHON", "VIRTUAL_ENV"))}
        path = f"{self.venv / 'bin'}:{inherited['PATH']}"
        return {**inherited, "PATH": path, **self.broker.admin_settings().as_env(), **extra}

    def run(self, *argv: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        """`argv` run from the working directory outside the repository, in the installed environment."""
        return subprocess.run(
            list(argv),
            input=stdin,
            cwd=self.workdir,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=100,
            check=False,
        )

    def rctc(self, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.venv / "bin" / "rctc"), *argv, stdin=stdin)


def build_wheel(into: Path) -> Path:
    """The wheel, built with the shared .venv's setuptools (no build isolation, so no download)."""
    source = into / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "services", source / "services", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = into / "wheels"
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(wheels),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("rctc_alert_exchange-*.whl")
    return wheel


def install(wheel: Path, venv: Path, links: Path) -> None:
    """A fresh virtualenv with the wheel installed from the file alone, then the shared packages made visible."""
    made = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    # The shared pip installs into the new interpreter (--python); before the .pth below exists, so it sees an
    # empty environment and neither finds nor touches the editable install.
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    shared = Path(sysconfig.get_paths()["purelib"])
    links.mkdir()
    for entry in shared.iterdir():
        if not entry.name.startswith(OWN_INSTALL) and entry.suffix != ".pth":
            (links / entry.name).symlink_to(entry)
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # A path line in a .pth file only extends sys.path: the .pth files in that directory are not run, and the
    # links leave this project's out anyway.
    (Path(site) / "shared-venv.pth").write_text(f"{links}\n")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """The wheel installed in a virtualenv under a temporary directory, a working directory beside it, and a
    broker of its own."""
    root = tmp_path_factory.mktemp("wheel-install")
    assert ROOT not in root.parents
    wheel = build_wheel(root)
    install(wheel, root / "venv", root / "shared-site-packages")
    workdir = root / "work"
    workdir.mkdir()
    broker = LocalBroker.start(tmp_path_factory.mktemp("wheel-kafka"))
    try:
        yield Installed(root / "venv", wheel, workdir, broker)
    finally:
        broker.stop()


def test_the_wheel_carries_the_schemas_and_the_topic_declarations(installed: Installed) -> None:
    """Every schema file (current, history/, FINGERPRINTS) and topics.yaml is in the wheel, as package data."""
    common = ROOT / "services" / "common"
    data = [*(common / "schemas").rglob("*"), common / "topics.yaml"]
    in_repo = {path.relative_to(ROOT).as_posix() for path in data if path.is_file()}
    in_wheel = set(zipfile.ZipFile(installed.wheel).namelist())
    assert in_repo - in_wheel == set()


def test_services_is_imported_from_the_wheel(installed: Installed) -> None:
    """In the virtualenv, `services` and its package data resolve inside it, never to this checkout."""
    done = installed.run(
        str(installed.venv / "bin" / "python"),
        "-c",
        "import services, services.common.codec as c, services.common.topics as t; "
        "print(services.__file__); print(c.SCHEMA_DIR); print(t.DECLARATIONS)",
    )
    assert done.returncode == 0, done.stderr
    paths = [Path(line) for line in done.stdout.splitlines()]
    assert len(paths) == 3
    assert [p for p in paths if installed.venv.resolve() not in p.resolve().parents] == []


def test_rctc_schemas_lists_the_fingerprints_of_this_repositorys_codec(installed: Installed) -> None:
    """`rctc schemas` from the wheel prints each record's fingerprint as the checkout's codec computes it."""
    done = installed.rctc("schemas")
    assert done.returncode == 0, done.stderr
    expected = [f"{fp}  {name}" for name, fp in sorted(Codec.from_directory().fingerprints().items())]
    assert expected == done.stdout.splitlines()


@pytest.fixture(scope="module")
def topics_applied(installed: Installed) -> Runs:
    """`rctc topics apply` run twice on the fresh broker."""
    return installed.rctc("topics", "apply", "--replication-factor", "1"), installed.rctc(
        "topics", "apply", "--replication-factor", "1"
    )


def test_rctc_topics_apply_creates_every_declared_topic_then_finds_them(topics_applied: Runs) -> None:
    """The first apply creates every topic the checkout declares; the second finds each one as declared."""
    first, second = topics_applied
    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    declared = sorted(spec.name for spec in load_declarations().topics)
    assert declared == sorted(line.split()[1] for line in first.stdout.splitlines() if line.startswith("created "))
    assert [f"ok        {name}" for name in declared] == sorted(second.stdout.splitlines())


@pytest.fixture(scope="module")
def registry_applied(installed: Installed, topics_applied: Runs) -> Runs:
    """The demo registry piped to `rctc registry validate -`, then to `rctc registry apply -`."""
    text = DEMO_REGISTRY.read_text()
    return installed.rctc("registry", "validate", "-", stdin=text), installed.rctc(
        "registry", "apply", "-", "--replication-factor", "1", stdin=text
    )


def test_rctc_registry_validate_and_apply_read_standard_input(installed: Installed, registry_applied: Runs) -> None:
    """`-` reads the registry from standard input: validated, then published as version 1 with its agencies'
    topics and ACLs, and the broker's registry in force is that document, named as read from standard input."""
    doc = load_registry(DEMO_REGISTRY)
    counts = f"{len(doc.agencies)} agencies, {len(doc.agreements)} agreements"
    validated, applied = registry_applied
    assert (0, f"<stdin>: valid: {counts}, {len(doc.operators)} operators") == (
        validated.returncode,
        validated.stdout.strip(),
    )
    assert applied.returncode == 0, applied.stdout + applied.stderr
    lines = applied.stdout.splitlines()
    assert f"published registry version 1 ({counts})" in lines
    created = {line.removeprefix("created topic ") for line in lines if line.startswith("created topic ")}
    assert {f"agency.{a.code}.alerts" for a in doc.agencies} <= created
    assert [line for line in lines if line.startswith("ACLs: ")] != ["ACLs: 0 created, 0 deleted"]
    latest = asyncio.run(latest_published(installed.broker.admin_settings(), Codec.from_directory()))
    assert latest is not None
    assert (1, "<stdin>", sorted(a.code for a in doc.agencies)) == (
        latest.version,
        latest.source,
        sorted(a.code for a in latest.agencies),
    )


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_entry_point_runs_from_the_wheel(name: str, installed: Installed) -> None:
    """`python -m services.<name>` imports from the wheel and builds its settings: given a wrong one, it says
    which and stops (the services have no --help; the start itself is shown for the router below)."""
    done = installed.run(str(installed.venv / "bin" / "python"), "-m", f"services.{name}", RCTC_LOG__LEVEL="loud")
    assert done.returncode == 1
    assert done.stderr.startswith(f"{name}: cannot start:"), done.stderr
    assert "log.level" in done.stderr


async def test_a_service_starts_from_the_wheel_and_stops_cleanly(
    installed: Installed, registry_applied: Runs, tmp_path: Path
) -> None:
    """The router, run from the wheel outside the repository, becomes ready on the applied topics and registry,
    and on SIGTERM stops within its bounded shutdown, exit 0."""
    assert registry_applied[1].returncode == 0
    ops_port = free_port()
    log = tmp_path / "router.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            str(installed.venv / "bin" / "python"),
            "-m",
            "services.router",
            cwd=installed.workdir,
            env=installed.env(RCTC_OPS__PORT=str(ops_port), RCTC_LOG__FORMAT="json"),
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    await ready_then_stopped(process, ops_port, log)


def test_rctc_dev_up_says_it_needs_a_checkout(installed: Installed) -> None:
    """The developer's `rctc dev up` has no broker script in an installed package, and says so, exit 2."""
    done = installed.rctc("dev", "up")
    assert done.returncode == 2
    assert "checkout of the repository" in done.stderr
