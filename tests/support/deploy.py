"""Reading the deployment files (Dockerfile, docker-compose.yml, deploy/k8s/rctc.yaml) and running their scripts here.

docker-compose's `init` and `bootstrap` are shell scripts that call `rctc` and `python`; they run here with
those two names pointing at this checkout (a directory of shims put first on PATH), so what the tests check
is what the scripts make, not a description of it. `containers()` lists every container the deploy files run
from the image, with its command and the RCTC_ variables it gets, for checks that hold for all of them.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
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
DOCKERFILE = ROOT / "Dockerfile"
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


def dockerfile_instructions(text: str | None = None) -> list[tuple[str, str]]:
    """(INSTRUCTION, its arguments) of the Dockerfile, continuation lines joined and comments dropped: enough of
    the format for the checks hadolint does not make (tests/unit/test_dockerfile.py)."""
    lines = (DOCKERFILE.read_text() if text is None else text).splitlines()
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in lines if not line.lstrip().startswith("#")))
    found = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, arguments = line.strip().partition(" ")
            found.append((instruction.upper(), arguments.strip()))
    return found


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The instructions of the image's last stage, the one that is run."""
    starts = [i for i, (instruction, _) in enumerate(instructions) if instruction == "FROM"]
    return instructions[starts[-1] :]


def image_env() -> dict[str, str]:
    """The variables the image's ENV lines set (`ENV a=1 b=2`)."""
    env: dict[str, str] = {}
    for instruction, arguments in final_stage(dockerfile_instructions()):
        if instruction == "ENV":
            for pair in shlex.split(arguments):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def image_command() -> list[str]:
    """The image's CMD, exec form (a JSON list)."""
    (cmd,) = [a for i, a in final_stage(dockerfile_instructions()) if i == "CMD"]
    argv: list[str] = yaml.safe_load(cmd)
    return argv


@dataclass
class Container:
    """A container that a deploy file runs from the image: where it is declared, its command, and its RCTC_
    variables: `own` set for it alone, `shared` from a source it shares with others (the image's ENV, the
    Kubernetes ConfigMap), so checked through every service that gets them."""

    where: str
    argv: list[str]
    own: dict[str, str] = field(default_factory=dict)
    shared: dict[str, str] = field(default_factory=dict)

    @property
    def module(self) -> str | None:
        """The module it runs: `services.<name>` for `python -m services.<name>` (also inside `sh -c`), and
        `services.cli.main` for `rctc`; None for a script."""
        text = " ".join(self.argv)
        found = re.search(r"python -m ([\w.]+)", text)
        if found:
            return found.group(1)
        return "services.cli.main" if self.argv[0] == "rctc" else None


def _rctc_env(env: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in env.items() if k.startswith("RCTC_")}


def containers() -> list[Container]:
    """Every container of docker-compose.yml and deploy/k8s/rctc.yaml that runs the image, and the image's own
    default command."""
    found = [Container("Dockerfile CMD", image_command(), shared=_rctc_env(image_env()))]
    for name, body in compose()["services"].items():
        if "build" not in body:
            continue  # the broker's own image
        argv = [*body.get("entrypoint", []), *body.get("command", [])] or image_command()
        own = _rctc_env(body.get("environment", {}))
        own |= {n: "(from a mounted file)" for n in re.findall(r"export (RCTC_\w+)=", " ".join(argv))}
        found.append(Container(f"compose {name}", argv, own, _rctc_env(image_env())))
    maps = {d["metadata"]["name"]: d["data"] for d in k8s_documents() if d["kind"] == "ConfigMap"}
    for doc in k8s_documents():
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        for c in doc["spec"]["template"]["spec"]["containers"]:
            shared = _rctc_env(image_env())
            for ref in c.get("envFrom", []):
                shared |= _rctc_env(maps[ref["configMapRef"]["name"]])
            own = _rctc_env({v["name"]: v.get("value", "(from a Secret)") for v in c.get("env", [])})
            argv = [*c.get("command", []), *c.get("args", [])] or image_command()
            found.append(Container(f"k8s {doc['kind']} {doc['metadata']['name']}", argv, own, shared))
    return found
