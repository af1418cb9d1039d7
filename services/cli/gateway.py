"""How `rctc` commands that read through the gateway ask it: the two options, the GET, and what a refusal prints.

gateway_arguments(parser, settings)                 # --gateway (RCTC_GATEWAY_URL), --token (RCTC_TOKEN)
if no_token(args): return 2
status, body = await get(args, ("alerts",), {"state": "open"})
if status != 200: return refused(status, body)      # "rctc: 403: <the gateway's message>" on stderr, exit 1
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import aiohttp
from yarl import URL

from services.cli.settings import CliSettings


def gateway_arguments(p: argparse.ArgumentParser, settings: CliSettings) -> None:
    p.add_argument("--gateway", default=settings.gateway_url, help="env RCTC_GATEWAY_URL")
    p.add_argument("--token", default=settings.token, help="an operator's token (env RCTC_TOKEN)")


async def get(args: argparse.Namespace, segments: tuple[str, ...], params: dict[str, str]) -> tuple[int, Any]:
    """GET /v1/<segments> with `params` quoted by yarl, as the token's holder: (status, JSON body)."""
    url = URL(args.gateway).joinpath("v1", *segments).with_query(params)
    headers = {"Authorization": f"Bearer {args.token}"}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status, await response.json(content_type=None)


def refused(status: int, body: Any) -> int:
    message = body.get("message") if isinstance(body, dict) else body
    print(f"rctc: {status}: {message}", file=sys.stderr)
    return 1


def no_token(args: argparse.Namespace) -> bool:
    if not args.token:
        print("rctc: an operator's token is needed (--token or RCTC_TOKEN)", file=sys.stderr)
    return not args.token
