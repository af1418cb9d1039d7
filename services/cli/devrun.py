"""`rctc dev up` (what `make run` calls): the whole system on one machine, logs interleaved in the terminal.

Starts the local Kafka broker (deploy/kafka/kafka-local.sh), creates the topics, applies the demo registry
and imports the demo watchlist, then runs every service, the demo receivers and the demo feed as child
processes, each line of their output prefixed with its name. Children run in their own sessions so Ctrl-C
reaches only this supervisor, which then stops them in order (feed first, broker last) with SIGTERM and a
bounded wait, so no process is left behind. If any child dies, everything is stopped and the exit code says so.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.auditor.checkpoints import key_id, load_signing_key, new_signing_key, public_bytes
from services.cli.local_broker import NOT_A_CHECKOUT, SCRIPT, LocalBroker
from services.cli.security import write_secret
from services.common.acls import SERVICES, service_principal
from services.common.kafka_admin import SecurityAdmin
from services.common.registry.document import parse_registry
from services.common.settings import KafkaSettings

ROOT = Path(__file__).resolve().parents[2]
COLOURS = ["36", "33", "35", "32", "34", "31", "96", "93"]


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    process: asyncio.subprocess.Process | None = None


async def _service_principals(admin: KafkaSettings, secrets_dir: Path) -> dict[str, KafkaSettings]:
    """A fresh SCRAM password for every service's principal (a file each, mode 0600), and its settings."""
    security = SecurityAdmin(admin)
    settings: dict[str, KafkaSettings] = {}
    for name in SERVICES:
        password = secrets.token_urlsafe(32)
        await security.set_password(service_principal(name), password)
        path = secrets_dir / f"{name}.password"
        write_secret(path, password)
        settings[name] = admin.model_copy(update={"username": service_principal(name), "password_file": path})
    return settings


def _audit_key(state: Path, registry: Path) -> tuple[Path, Path]:
    """The auditor's signing key, made once and kept beside the broker's data (the trail it signs lives
    there too), and the registry to apply: `registry` with the key's public half under `audit`, unless it
    names audit keys itself."""
    key = state / "secrets" / "auditor.key"
    if not key.exists():
        pem = new_signing_key()[0]
        write_secret(key, pem.decode().rstrip())
    text = registry.read_text(encoding="utf-8")
    if parse_registry(text, source=str(registry)).audit.public_keys:
        return key, registry
    public = public_bytes(load_signing_key(key))
    entry = f"{{id: {key_id(public)}, ed25519: {base64.b64encode(public).decode()}}}"
    with_key = state / "registry.yaml"
    with_key.write_text(
        f"{text.rstrip()}\n\n# Added by make run: its auditor's key.\naudit:\n  public_keys:\n    - {entry}\n"
    )
    return key, with_key


def children(
    principals: dict[str, KafkaSettings],
    ports: dict[str, int],
    registry: Path,
    feed_interval: float,
    internal_token: str,
    signing_key: Path,
) -> list[Child]:
    python = sys.executable
    common = {"RCTC_LOG__FORMAT": "console"}
    # The gateway's and the console's credential to the tracker: only these three children get it
    # (services/common/internal.py).
    internal = {"RCTC_INTERNAL_TOKEN": internal_token}

    def service(name: str, ops: int, **extra: str) -> Child:
        env = {**principals[name].as_env(), **common, "RCTC_OPS__PORT": str(ops), **extra}
        return Child(name, [python, "-m", f"services.{name}"], env)

    return [
        service("tracker", ports["ops"] + 5, RCTC_HTTP__PORT=str(ports["tracker"]), **internal),
        service("enricher", ports["ops"] + 2),
        service("correlator", ports["ops"] + 7),  # beside the alert path: alerts.correlated
        service("router", ports["ops"] + 3),
        service("auditor", ports["ops"] + 6, RCTC_SIGNING_KEY_FILE=str(signing_key)),
        service("dispatcher", ports["ops"] + 4, RCTC_ALLOW_PRIVATE_ENDPOINTS="true"),  # demo receivers on loopback
        service(
            "gateway",
            ports["ops"] + 1,
            RCTC_HTTP__PORT=str(ports["gateway"]),
            RCTC_TRACKER_URL=f"http://127.0.0.1:{ports['tracker']}",
            **internal,
        ),
        service(
            "console",
            ports["ops"] + 8,
            RCTC_HTTP__PORT=str(ports["console"]),
            RCTC_TRACKER_URL=f"http://127.0.0.1:{ports['tracker']}",
            **internal,
        ),
        Child(
            "receivers",
            [
                python,
                "-m",
                "services.cli.main",
                "demo",
                "receivers",
                "--registry",
                str(registry),
                "--port",
                str(ports["receivers"]),
            ],
            dict(common),
        ),
        Child(
            "feed",
            [
                python,
                "-m",
                "services.cli.main",
                "demo",
                "feed",
                "--interval",
                str(feed_interval),
                "--gateway",
                f"http://127.0.0.1:{ports['gateway']}",
            ],
            dict(common),
        ),
    ]


async def _pump(child: Child, colour: str, width: int) -> None:
    assert child.process is not None and child.process.stdout is not None
    tty = sys.stdout.isatty()
    prefix = f"\033[{colour}m{child.name:<{width}}\033[0m | " if tty else f"{child.name:<{width}} | "
    async for line in child.process.stdout:
        sys.stdout.write(prefix + line.decode(errors="replace"))
        sys.stdout.flush()


def supervise(args: argparse.Namespace) -> int:
    # A developer's command: the broker script, the demo registry and watchlist are the checkout's, not the
    # package's. Every other command works from an installed wheel.
    if not SCRIPT.is_file():
        print(f"rctc dev: {NOT_A_CHECKOUT}", file=sys.stderr)
        return 2
    state = Path(args.state_dir).resolve()
    kafka_dir = state / "kafka"
    print(f"rctc dev: starting Kafka in {kafka_dir}", flush=True)
    broker = LocalBroker.start(kafka_dir, args.kafka_port)
    # The set-up (topics, registry, ACLs, passwords) is the bootstrap admin's; each service then connects as
    # its own principal, allowed only what services/common/topics.yaml gives it.
    kafka = broker.admin_settings()
    # For `rctc` commands run by hand beside it (services/cli/settings.py reads this file): as the admin, who
    # may also apply registries and ACLs and make agency credentials.
    env_file = state / "rctc.env"
    write_secret(env_file, "".join(f"{name}={value}\n" for name, value in kafka.as_env().items()).strip())
    try:
        env = {**os.environ, **kafka.as_env()}
        cli = [sys.executable, "-m", "services.cli.main"]
        try:
            subprocess.run([*cli, "topics", "apply", "--replication-factor", "1"], check=True, env=env)
            signing_key, registry = _audit_key(state, args.registry)
            subprocess.run([*cli, "registry", "apply", str(registry), "--replication-factor", "1"], check=True, env=env)
            # A few entries that the demo feed's alerts carry, so its log shows watchlist hits raising priority.
            watchlist = ROOT / "deploy" / "registry" / "demo-watchlist.csv"
            subprocess.run([*cli, "watchlist", "import", str(watchlist)], check=True, env=env)
        except subprocess.CalledProcessError as exc:
            # The command has said why on one line (an RctcError): a traceback here would only bury it.
            print(f"rctc dev: `rctc {' '.join(exc.cmd[3:])}` failed (exit {exc.returncode})", file=sys.stderr)
            return int(exc.returncode)
        ports = {
            "gateway": args.gateway_port,
            "tracker": args.gateway_port + 5,
            "console": args.gateway_port + 10,
            "receivers": 8701,
            "ops": args.ops_port,
        }
        principals = asyncio.run(_service_principals(kafka, state / "secrets"))
        # A fresh internal credential for each run: nothing to configure, nothing left behind.
        token = secrets.token_urlsafe(32)
        kids = children(principals, ports, args.registry, args.feed_interval, token, signing_key)
        return asyncio.run(_run_children(kids, args))
    finally:
        print("rctc dev: stopping Kafka", flush=True)
        broker.stop()


async def _run_children(kids: list[Child], args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    width = max(len(k.name) for k in kids)
    pumps = []
    for i, kid in enumerate(kids):
        kid.process = await asyncio.create_subprocess_exec(
            *kid.argv,
            cwd=ROOT,
            env={**os.environ, **kid.env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        pumps.append(asyncio.create_task(_pump(kid, COLOURS[i % len(COLOURS)], width)))
    print(
        f"rctc dev: up. Gateway http://127.0.0.1:{args.gateway_port}, console "
        f"http://127.0.0.1:{args.gateway_port + 10}/console/ (operator token demo-duty-desk). "
        "Ctrl-C stops everything.",
        flush=True,
    )
    waits = {asyncio.create_task(k.process.wait()): k for k in kids if k.process}
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({*waits, stopper}, return_when=asyncio.FIRST_COMPLETED)
    failed = [waits[t] for t in done if t in waits]
    for kid in failed:
        print(
            f"rctc dev: {kid.name} exited with {kid.process.returncode if kid.process else '?'}; stopping all",
            flush=True,
        )
    # Stop in reverse start order: the feed and the gateway first, the tracker last.
    for kid in reversed(kids):
        await _terminate(kid)
    await asyncio.gather(*pumps, return_exceptions=True)
    stopper.cancel()
    return 1 if failed else 0


async def _terminate(kid: Child, grace: float = 15.0) -> None:
    process = kid.process
    if process is None or process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


def add_parser(sub: Any) -> None:
    dev = sub.add_parser("dev", help="run the whole system locally (from a checkout of the repository)")
    dev_actions = dev.add_subparsers(metavar="ACTION")
    p = dev_actions.add_parser("up", help="broker, topics, demo registry, services, receivers and feed (make run)")
    p.add_argument("--state-dir", default=str(ROOT / ".run"), help="where the broker keeps its data")
    p.add_argument("--registry", type=Path, default=ROOT / "deploy" / "registry" / "demo.yaml")
    p.add_argument("--kafka-port", type=int, default=9092)
    p.add_argument("--gateway-port", type=int, default=8080)
    p.add_argument("--ops-port", type=int, default=9100, help="services' /metrics ports start after it")
    p.add_argument("--feed-interval", type=float, default=4.0)
    p.set_defaults(run=supervise)
