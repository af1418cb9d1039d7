"""Reading the deployment files (docker-compose.yml, deploy/k8s/rctc.yaml) and running their scripts here.

docker-compose's `init` and `bootstrap` are shell scripts that call `rctc` and `python`; they run here with
those two names pointing at this checkout (a directory of shims put first on PATH), so what the tests check
is what the scripts make, not a description of it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from pydantic_settings import BaseSettings

from services.auditor.settings import AuditorSettings
from services.console.settings import ConsoleSettings
from services.correlator.settings import CorrelatorSettings
from services.dispatcher.settings import DispatcherSettings
from services.enricher.settings import EnricherSettings
from services.gateway.settings import GatewaySettings
from services.router.settings import RouterSettings
from services.tracker.settings import TrackerSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s" / "rctc.yaml"
INIT = ROOT / "deploy" / "compose" / "init.sh"
BOOTSTRAP = ROOT / "deploy" / "bootstrap.sh"
# Where the compose file mounts init's volumes; RCTC_INIT_ROOT stands in for it here.
INIT_ROOT = "/var/lib/rctc"
# Each service's settings class, as its entry point (`python -m services.<name>`) builds it.
SETTINGS: dict[str, type[BaseSettings]] = {
    "gateway": GatewaySettings,
    "enricher": EnricherSettings,
    "router": RouterSettings,
    "auditor": AuditorSettings,
    "dispatcher": DispatcherSettings,
    "tracker": TrackerSettings,
    "correlator": CorrelatorSettings,
    "console": ConsoleSettings,
}
# Names of variables that carry a secret: their value is a file's path (or, in Kubernetes, comes from a Secret),
# never the secret itself.
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|SIGNING_KEY", re.IGNORECASE)


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def k8s_documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(K8S.read_text()) if d]


def shim_env(bin_dir: Path, **extra: str) -> dict[str, str]:
    """The environment for a deploy script: `rctc` and `python` of this checkout first on PATH."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, target in {"python": f'"{sys.executable}"', "rctc": f'"{sys.executable}" -m services.cli.main'}.items():
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec {target} "$@"\n')
        shim.chmod(0o755)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("RCTC_")}
    return {**inherited, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT), **extra}


def run_init(root: Path, bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """deploy/compose/init.sh writing into `root` (the compose volumes' directories) instead of /var/lib/rctc."""
    return subprocess.run(
        [str(INIT), *args],
        env=shim_env(bin_dir, RCTC_INIT_ROOT=str(root)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def properties(path: Path) -> dict[str, str]:
    """A Java properties file as a dict (the subset the broker's files use: key=value lines, # comments)."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def build(settings: type[BaseSettings], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """`settings` built as its entry point builds it: from this environment alone."""
    with monkeypatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("RCTC_")]:
            patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        return settings()


def unknown_settings(settings: type[BaseModel], env: dict[str, str]) -> list[str]:
    """RCTC_ variables that name no field of `settings` (the services ignore those, so a misspelt one would be
    silently lost)."""
    unknown = []
    for name in env:
        parts = name.removeprefix("RCTC_").lower().split("__")
        model: Any = settings
        for part in parts:
            field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
            if field is None:
                unknown.append(name)
                break
            model = field.annotation
    return unknown


def strings(node: Any) -> Iterator[str]:
    """Every key and value of a parsed YAML document (what a container gets; comments are not in it)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)
    else:
        yield str(node)


def code_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
