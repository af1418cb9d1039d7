"""`rctc correlations list|show`: the duty desk's view of correlations, through the gateway with an operator's
token (an agency's gets 403: it learns of a correlation only through its own alert.correlated notice).

    rctc correlations list --agency JO-GID --kind phone --limit 20 --token OPERATOR_TOKEN
    rctc correlations list --before CURSOR          # the page after the one that printed CURSOR
    rctc correlations show CORRELATION_ID           # both sides, their fields, and every agency told, when
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from services.cli.gateway import gateway_arguments, get, no_token, refused
from services.cli.settings import CliSettings
from services.common.internal import is_alert_id


def add_parser(sub: Any, settings: CliSettings) -> None:
    correlations = sub.add_parser(
        "correlations", help="what the correlator found and whom the router told (operators)"
    ).add_subparsers(metavar="ACTION")
    p = correlations.add_parser("list", help="correlations, newest first")
    p.add_argument("--agency", help="only those where this agency is an originator or was told")
    p.add_argument("--kind", help="only those of this kind (phone, crypto_wallet, subject_name, ...)")
    p.add_argument("--limit", type=int, default=50, help="at most this many (1 to 200, default 50)")
    p.add_argument("--before", help="the cursor a previous list printed: the page after it")
    gateway_arguments(p, settings)
    p.set_defaults(run=lambda a: asyncio.run(list_correlations(a)))
    p = correlations.add_parser("show", help="one correlation, and whom the router told of it")
    p.add_argument("correlation_id")
    gateway_arguments(p, settings)
    p.set_defaults(run=lambda a: asyncio.run(show_correlation(a)))


def _line(c: dict[str, Any]) -> str:
    told = ",".join(n["agency"] for n in c["notified"]) or ("nobody" if c["decided_at"] else "(not decided)")
    sides = f"{c['a']['origin']} {c['a']['alert_id']} ~ {c['b']['origin']} {c['b']['alert_id']}"
    return f"{c['found_at']}  {c['correlation_id']}  {c['kind']:<18} {sides}  told: {told}"


async def list_correlations(args: argparse.Namespace) -> int:
    if no_token(args):
        return 2
    given = {"agency": args.agency, "kind": args.kind, "limit": str(args.limit), "before": args.before}
    status, body = await get(args, ("correlations",), {k: v for k, v in given.items() if v is not None})
    if status != 200:
        return refused(status, body)
    for c in body["correlations"]:
        print(_line(c))
    if not body["correlations"]:
        print("no correlation" + (" matches" if args.agency or args.kind else " yet"))
    if body["next"]:
        print(f"more: --before {body['next']}")
    return 0


async def show_correlation(args: argparse.Namespace) -> int:
    if no_token(args):
        return 2
    if not is_alert_id(args.correlation_id):
        print(f"rctc: {args.correlation_id!r} is not a correlation id (a UUID)", file=sys.stderr)
        return 2
    status, c = await get(args, ("correlations", args.correlation_id), {})
    if status != 200:
        return refused(status, c)
    print(f"correlation {c['correlation_id']}: {c['kind']} {c['value']!r}, found {c['found_at']}")
    for side in ("a", "b"):
        s = c[side]
        print(f"  {side}: {s['origin']:<14} alert {s['alert_id']} (thread {s['thread_id']}) in {','.join(s['fields'])}")
    if c["decided_at"] is None:
        print("  not decided by the router yet")
        return 0
    print(f"  decided {c['decided_at']} on alert {c['decided_on']}")
    for n in c["notified"]:
        print(f"  -> {n['agency']:<14} told {n['at']}")
    if not c["notified"]:
        print("  nobody was told (no agency is entitled to both)")
    return 0
