"""`rctc`: the command line for operators and developers. `rctc --help` lists the commands.

Kafka is found through --bootstrap or RCTC_KAFKA__BOOTSTRAP_SERVERS (default 127.0.0.1:9092), and the principal
through RCTC_KAFKA__USERNAME and RCTC_KAFKA__PASSWORD_FILE (`make run` writes these for its broker to
.run/rctc.env, which `rctc` reads when run from the repository's root).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

import aiohttp
from yarl import URL

from services.cli.settings import CliSettings
from services.common.acls import AgencyAccess
from services.common.codec import Codec
from services.common.errors import RctcError
from services.common.internal import is_alert_id
from services.common.logs import configure_logging
from services.common.registry import RegistryDocument, load_registry, parse_registry
from services.common.registry.publish import latest_published, publish_registry
from services.common.settings import KafkaSettings, LogSettings
from services.common.topics import apply_topics, load_declarations


def main(argv: Sequence[str] | None = None) -> None:
    settings = CliSettings()
    # The library's log lines (a quarantined record met while reading a topic, a broker hiccup) go to stderr
    # like the services'; stdout is the command's answer alone, for people and scripts to read.
    configure_logging(LogSettings(), "rctc")
    parser = _parser(settings)
    args = parser.parse_args(argv)
    args.settings = settings
    if not hasattr(args, "run"):
        parser.print_help()
        raise SystemExit(2)
    try:
        code = args.run(args)
    except RctcError as exc:
        print(f"rctc: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    raise SystemExit(code)


def _parser(settings: CliSettings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rctc", description="RCTC Alert Exchange: operator and developer tool")
    parser.add_argument(
        "--bootstrap",
        default=settings.kafka.bootstrap_servers,
        help="Kafka bootstrap servers (env RCTC_KAFKA__BOOTSTRAP_SERVERS)",
    )
    sub = parser.add_subparsers(metavar="COMMAND")

    topics = sub.add_parser("topics", help="the topics services/common/topics.yaml declares").add_subparsers(
        metavar="ACTION"
    )
    p = topics.add_parser("apply", help="create missing topics and report drift")
    p.add_argument("--replication-factor", type=int, default=None, help="override (1 for a single broker)")
    p.add_argument("--grow", action="store_true", help="raise partition counts to the declared ones")
    p.set_defaults(run=_topics_apply)

    registry = sub.add_parser("registry", help="the registry of agencies and agreements").add_subparsers(
        metavar="ACTION"
    )
    p = registry.add_parser("validate", help="check a registry file and print every problem")
    p.add_argument("file", help="the registry file, or - to read it from standard input")
    p.set_defaults(run=_registry_validate)
    p = registry.add_parser("apply", help="validate a registry file and publish it to registry.config")
    p.add_argument("file", help="the registry file, or - to read it from standard input")
    p.add_argument("--replication-factor", type=int, default=None, help="for agency topics it creates")
    p.set_defaults(run=_registry_apply)
    p = registry.add_parser("show", help="print the registry in force")
    p.set_defaults(run=_registry_show)

    p = sub.add_parser("status", help="an alert's recipients and their states, through the gateway")
    p.add_argument("alert_id")
    p.add_argument("--gateway", default=settings.gateway_url, help="env RCTC_GATEWAY_URL")
    p.add_argument("--token", default=settings.token, help="operator or agency token (env RCTC_TOKEN)")
    p.add_argument("--routing", action="store_true", help="show the routing decision instead")
    p.set_defaults(run=_status)

    p = sub.add_parser("explain", help="why each agency did or did not receive an alert, through the gateway")
    p.add_argument("alert_id")
    p.add_argument("--gateway", default=settings.gateway_url, help="env RCTC_GATEWAY_URL")
    p.add_argument("--token", default=settings.token, help="operator or originator token (env RCTC_TOKEN)")
    p.set_defaults(run=_status, routing=True)

    p = sub.add_parser("simulate", help="how past alerts would be routed under a draft registry")
    p.add_argument("file", type=Path)
    p.add_argument("--last", type=int, default=200, help="the most recent N alerts")
    p.set_defaults(run=_simulate)

    p = sub.add_parser("tail", help="decode and print records of a topic")
    p.add_argument("topic")
    p.add_argument("--from-beginning", action="store_true")
    p.add_argument("--count", type=int, default=0, help="stop after N records (0: follow)")
    p.set_defaults(run=_tail)

    p = sub.add_parser("token", help="make a bearer token and the hash the registry stores")
    p.add_argument("token", nargs="?", help="hash this token instead of making one")
    p.set_defaults(run=_token)

    p = sub.add_parser("secret", help="make a new whsec_ webhook signing secret")
    p.set_defaults(run=_secret)

    p = sub.add_parser("schemas", help="the Avro record schemas and their fingerprints")
    p.set_defaults(run=_schemas)

    from services.cli import alerts, audit, correlations, deliveries, devrun, quarantine, security, watchlist
    from services.demo import feed, receivers

    devrun.add_parser(sub)
    audit.add_parser(sub, _kafka)
    deliveries.add_parser(sub, _kafka)
    security.add_parser(sub, _kafka)
    quarantine.add_parser(sub, _kafka)
    watchlist.add_parser(sub, _kafka)
    correlations.add_parser(sub, settings)
    alerts.add_parser(sub, settings, _kafka)
    demo = sub.add_parser("demo", help="demo webhook receivers and alert feed").add_subparsers(metavar="ACTION")
    receivers.add_parser(demo)
    feed.add_parser(demo)
    return parser


def _kafka(args: argparse.Namespace) -> KafkaSettings:
    kafka: KafkaSettings = args.settings.kafka
    return kafka.model_copy(update={"bootstrap_servers": args.bootstrap})


def _topics_apply(args: argparse.Namespace) -> int:
    specs = load_declarations().topics
    report = asyncio.run(
        apply_topics(_kafka(args), list(specs), replication_factor=args.replication_factor, grow_partitions=args.grow)
    )
    for name in report.created:
        print(f"created   {name}")
    for line in report.grown:
        print(f"grown     {line}")
    for name in report.unchanged:
        print(f"ok        {name}")
    for line in report.drift:
        print(f"DRIFT     {line}")
    return 3 if report.drift else 0


def _read_registry(file: str) -> tuple[RegistryDocument, str]:
    """The registry document in `file`, or on standard input for `-`, and the name it is published under. The
    registry is the operator's input, never a file assumed beside the code: a deployment pipes it from where it
    keeps it (a Secret, a configuration repository) as readily as it names a path."""
    if file == "-":
        return parse_registry(sys.stdin.read(), source="<stdin>"), "<stdin>"
    path = Path(file)
    return load_registry(path), path.name


def _registry_validate(args: argparse.Namespace) -> int:
    doc, _ = _read_registry(args.file)
    shown = "<stdin>" if args.file == "-" else args.file
    print(
        f"{shown}: valid: {len(doc.agencies)} agencies, {len(doc.agreements)} agreements, "
        f"{len(doc.operators)} operators"
    )
    return 0


def _registry_apply(args: argparse.Namespace) -> int:
    doc, source = _read_registry(args.file)
    result = asyncio.run(
        publish_registry(
            _kafka(args), Codec.from_directory(), doc, source=source, replication_factor=args.replication_factor
        )
    )
    for name in result.topics.created:
        print(f"created topic {name}")
    for line in result.topics.drift:
        print(f"DRIFT {line}")
    if result.changed:
        print(
            f"published registry version {result.version} ({len(doc.agencies)} agencies, "
            f"{len(doc.agreements)} agreements)"
        )
    else:
        print(f"unchanged: registry version {result.version} already has this content")
    # No way to skip this: a registry published without it would leave a suspended agency its access. The
    # registry says which agencies exist and are active: their access follows it at once (a suspended or
    # removed agency loses its ACLs here, before this command returns).
    from services.cli.security import apply_acls

    agencies = [AgencyAccess(a.code, a.active) for a in doc.agencies]
    plan = asyncio.run(apply_acls(_kafka(args), agencies))
    print(f"ACLs: {len(plan.create)} created, {len(plan.delete)} deleted")
    return 0


def _registry_show(args: argparse.Namespace) -> int:
    import msgspec

    latest = asyncio.run(latest_published(_kafka(args), Codec.from_directory()))
    if latest is None:
        print("no registry has been applied", file=sys.stderr)
        return 1
    # No secret to mask: the registry's are on topics of their own (services/common/registry/model.py).
    print(json.dumps(msgspec.to_builtins(latest), indent=2))
    return 0


def _status(args: argparse.Namespace) -> int:
    if not args.token:
        print("rctc: a token is needed (--token or RCTC_TOKEN)", file=sys.stderr)
        return 2
    if not is_alert_id(args.alert_id):
        print(f"rctc: {args.alert_id!r} is not an alert id (a UUID, as the gateway issued it)", file=sys.stderr)
        return 2
    url = URL(args.gateway).joinpath("v1", "alerts", args.alert_id, *(["routing"] if args.routing else []))

    async def fetch() -> tuple[int, object]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, headers={"Authorization": f"Bearer {args.token}"}) as response,
        ):
            return response.status, await response.json()

    status, body = asyncio.run(fetch())
    if status != 200:
        print(f"rctc: {status}: {body}", file=sys.stderr)
        return 1
    assert isinstance(body, dict)
    if args.routing:
        print(f"alert {body['alert_id']} from {body['origin']} (registry v{body['registry_version']})")
        for d in body["decisions"]:
            mark = "->" if d["delivered"] else "  "
            print(f"  {mark} {d['agency']:<14} {d['rule']:<24} {d['reason']}")
        return 0
    if "rejected" in body:
        # Refused after it was accepted: no recipients. The stage and reason are shown to operators only.
        refused = body["rejected"]
        told = f"{refused['error']}: {refused['message']}" if refused["error"] else "its sender is told nothing"
        print(f"alert {body['alert_id']} from {body['origin']}: refused, {told}")
        if "reason" in refused:
            print(f"  by the {refused['stage']}: {refused['reason']}")
        return 0
    print(f"alert {body['alert_id']} from {body['origin']}: {body['msg_type']} {body['severity']}/{body['urgency']}")
    for code, row in sorted(body["recipients"].items()):
        hook = row.get("webhook") or {}
        webhook = f"webhook {hook.get('status')} ({hook.get('attempts')} attempts)" if hook else "no webhook"
        ack = f" {row['response']}" if row.get("response") else ""
        print(f"  {code:<14} {row['state']:<13}{ack:<14} {webhook}")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from services.cli.simulation import simulate

    return asyncio.run(simulate(_kafka(args), args.file, args.last))


def _tail(args: argparse.Namespace) -> int:
    from services.cli.tail import tail

    return asyncio.run(tail(_kafka(args), args.topic, from_beginning=args.from_beginning, count=args.count))


def _token(args: argparse.Namespace) -> int:
    token = args.token or secrets.token_urlsafe(32)
    if not args.token:
        print(f"token:        {token}")
    print(f"token_sha256: {hashlib.sha256(token.encode()).hexdigest()}")
    return 0


def _secret(_: argparse.Namespace) -> int:
    print("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())
    return 0


def _schemas(_: argparse.Namespace) -> int:
    for name, fp in sorted(Codec.from_directory().fingerprints().items()):
        print(f"{fp}  {name}")
    return 0


if __name__ == "__main__":
    main()
