"""Reading the deployment files (docker-compose.yml, deploy/k8s/rctc.yaml) and running their scripts here.

docker-compose's `init` and `bootstrap` are shell scripts that call `rctc` and `python`; they run here with
those two names pointing at this checkout (a directory of shims put first on PATH), so what the tests check
is what the scripts make, not a description of it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s" / "rctc.yaml"
INIT = ROOT / "deploy" / "compose" / "init.sh"
BOOTSTRAP = ROOT / "deploy" / "bootstrap.sh"
# Where the compose file mounts init's volumes; RCTC_INIT_ROOT stands in for it here.
INIT_ROOT = "/var/lib/rctc"


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
