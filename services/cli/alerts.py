"""`rctc alerts list`, `rctc acks outstanding` and `rctc lag`: what an operator looks at first.

    rctc alerts list --since 2h --state overdue --token OPERATOR_TOKEN   # through the gateway, newest first
    rctc alerts list --origin IQ-NAB --limit 20 --json                    # one JSON document: the alerts as dicts
    rctc acks outstanding --agency JO-GID                                 # acknowledgements still owed
    rctc lag                                                              # every group's lag, from the brokers

A table on a terminal (plain text in a pipe), times shown in ISO 8601 and relative to now ("in 4m", "3m ago");
`--json` prints the rows as the gateway (or, for lag, services/common/lag.py) gives them, for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from services.cli.gateway import gateway_arguments, get, no_token, refused
from services.cli.render import print_json, table, when
from services.cli.settings import CliSettings
from services.common.lag import fetch_lag
from services.common.records import utcnow
from services.common.settings import KafkaSettings

STATES = ("open", "overdue", "escalated", "settled")  # services/tracker/state.py says what each means
_AGO = re.compile(r"([1-9][0-9]*)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def since_argument(text: str, now: datetime | None = None) -> datetime:
    """`--since`: a time ago (`30m`, `2h`, `7d`, `45s`) or an ISO 8601 time (without an offset: local time)."""
    ago = _AGO.fullmatch(text)
    if ago is not None:
        return (now or utcnow()) - timedelta(**{_UNITS[ago.group(2)]: int(ago.group(1))})
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a time ago (30m, 2h, 7d) nor an ISO 8601 time") from None
    return at.astimezone() if at.tzinfo is None else at


def _limit(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise argparse.ArgumentTypeError("a whole number from 1 to 1000")
    return int(text)


def add_parser(sub: Any, settings: CliSettings, kafka: Callable[[argparse.Namespace], KafkaSettings]) -> None:
    alerts = sub.add_parser("alerts", help="routed alerts and what they await (operators)").add_subparsers(
        metavar="ACTION"
    )
    p = alerts.add_parser("list", help="routed alerts, newest first, with what each still awaits")
    p.add_argument("--since", type=since_argument, help="routed at or after: ISO 8601, or ago (30m, 2h, 7d)")
    p.add_argument("--state", choices=STATES, help="open, overdue, escalated (awaiting an escalated ack), settled")
    p.add_argument("--origin", help="only this agency's alerts")
    p.add_argument("--limit", type=_limit, default=100, help="at most this many (1 to 1000, default 100)")
    _output_arguments(p, settings)
    p.set_defaults(run=lambda a: asyncio.run(list_alerts(a)))

    acks = sub.add_parser("acks", help="acknowledgements (operators)").add_subparsers(metavar="ACTION")
    p = acks.add_parser("outstanding", help="acknowledgements still expected, soonest deadline first")
    p.add_argument("--agency", help="only this agency's")
    _output_arguments(p, settings)
    p.set_defaults(run=lambda a: asyncio.run(outstanding(a)))

    p = sub.add_parser("lag", help="how far behind each consumer group of this system is, per topic")
    p.add_argument("--json", action="store_true", help="one JSON document: the rows as objects")
    p.set_defaults(run=lambda a: asyncio.run(lag(kafka(a), as_json=a.json)))


def _output_arguments(p: argparse.ArgumentParser, settings: CliSettings) -> None:
    gateway_arguments(p, settings)
    p.add_argument("--json", action="store_true", help="one JSON document: the rows as objects")


async def _rows(args: argparse.Namespace, path: tuple[str, ...], params: dict[str, str], key: str) -> list[Any] | int:
    """The gateway's rows under `key`, printed as JSON and returned as 0 with --json; an exit code on a refusal."""
    if no_token(args):
        return 2
    status, body = await get(args, path, params)
    if status != 200:
        return refused(status, body)
    rows: list[Any] = body[key]
    if args.json:
        print_json(rows)
        return 0
    return rows


async def list_alerts(args: argparse.Namespace) -> int:
    given = {
        "since": args.since.isoformat() if args.since else None,
        "state": args.state,
        "origin": args.origin,
        "limit": str(args.limit),
    }
    alerts = await _rows(args, ("alerts",), {k: v for k, v in given.items() if v is not None}, "alerts")
    if isinstance(alerts, int):
        return alerts
    now = utcnow()
    rows = [
        [
            when(a["routed_at"], now),
            a["alert_id"],
            a["origin"],
            a["msg_type"],
            a["severity"],
            len(a["recipients"]),
            a["awaiting"],
            a["overdue"],
            a["escalation_level"],
        ]
        for a in alerts
    ]
    columns = ["routed", "alert", "origin", "type", "severity", "recipients", "awaiting", "overdue", "escalation"]
    table(columns, rows, title=_count(len(alerts), "alert") + (f" ({args.state})" if args.state else ""))
    return 0


async def outstanding(args: argparse.Namespace) -> int:
    params = {"agency": args.agency} if args.agency else {}
    owed = await _rows(args, ("acks", "outstanding"), params, "outstanding")
    if isinstance(owed, int):
        return owed
    now = utcnow()
    rows = [
        [
            when(o["ack_due"], now),
            o["agency"],
            o["alert_id"],
            o["origin"],
            o["severity"],
            o["state"],
            o["escalation_level"],
        ]
        for o in owed
    ]
    columns = ["due", "agency", "alert", "origin", "severity", "state", "escalation"]
    table(columns, rows, title=_count(len(owed), "acknowledgement") + " outstanding")
    return 0


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"


async def lag(kafka: KafkaSettings, *, as_json: bool) -> int:
    rows = await fetch_lag(kafka)
    if as_json:
        print_json([dataclasses.asdict(r) for r in rows])
        return 0
    columns = ["group", "topic", "partitions", "committed", "end", "lag"]
    table(columns, [[r.group, r.topic, r.partitions, r.committed, r.end, r.lag] for r in rows], title="consumer lag")
    return 0
