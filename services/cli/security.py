"""`rctc acls ...`, `rctc agency credentials ...`, `rctc service credentials ...`: who may connect, and what
each principal may do (services/common/acls.py computes it; services/common/kafka_admin.py applies it).

These are the cluster administrator's commands: they run as the bootstrap admin (the only super user).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

from services.common.acls import (
    OPERATOR,
    SERVICES,
    AgencyAccess,
    Plan,
    agency_group_prefix,
    agency_principal,
    desired_acls,
    reconcile,
    service_principal,
)
from services.common.codec import Codec
from services.common.errors import RctcError
from services.common.kafka_admin import SecurityAdmin
from services.common.registry.model import RegistryPublished
from services.common.registry.publish import latest_published
from services.common.settings import KafkaSettings
from services.common.topics import (
    agency_ack_topic,
    agency_rejection_topic,
    agency_submission_topic,
    agency_topic,
    load_declarations,
)

KafkaOf = Callable[[argparse.Namespace], KafkaSettings]


class CredentialError(RctcError):
    """A credential cannot be made as asked (it exists already, or names nothing known)."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], kafka: KafkaOf) -> None:
    acls = sub.add_parser("acls", help="the brokers' ACLs, computed from services/common/topics.yaml and the registry")
    actions = acls.add_subparsers(metavar="ACTION")
    p = actions.add_parser("apply", help="create the ACLs that are missing and delete those that should not be")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if the brokers differ")
    p.set_defaults(run=lambda args: asyncio.run(_apply(kafka(args), check=args.check)))
    p = actions.add_parser("show", help="the ACLs the brokers should hold now")
    p.set_defaults(run=lambda args: asyncio.run(_show(kafka(args))))

    agency = sub.add_parser("agency", help="an agency's access to its Kafka topics").add_subparsers(metavar="ACTION")
    p = agency.add_parser("credentials", help="make (or with --rotate, replace) an agency's SCRAM password")
    p.add_argument("code")
    p.add_argument("--rotate", action="store_true", help="replace an existing password (the old one stops working)")
    p.set_defaults(run=lambda args: asyncio.run(_agency_credentials(kafka(args), args.code, rotate=args.rotate)))

    service = sub.add_parser("service", help="a service's Kafka principal").add_subparsers(metavar="ACTION")
    p = service.add_parser("credentials", help="make a service's SCRAM password and write it to a file")
    p.add_argument("name", choices=[*SERVICES, "operator"])
    p.add_argument("--password-file", type=Path, required=True, help="written with mode 0600; the service reads it")
    p.add_argument("--rotate", action="store_true", help="replace an existing password")
    p.add_argument(
        "--existing",
        action="store_true",
        help="the file already holds the password (a mounted secret): give the principal that one; safe to repeat",
    )
    p.set_defaults(
        run=lambda args: _service_credentials(
            kafka(args), args.name, args.password_file, rotate=args.rotate, existing=args.existing
        )
    )


def agencies_of(published: RegistryPublished | None) -> list[AgencyAccess]:
    if published is None:
        return []
    return [AgencyAccess(a.code, a.active) for a in published.agencies]


async def apply_acls(kafka: KafkaSettings, agencies: list[AgencyAccess], *, check: bool = False) -> Plan:
    """Bring the brokers' ACLs to exactly what topics.yaml and these agencies call for (or, with `check`, only
    say what differs). Idempotent: a second apply finds nothing to do."""
    wanted = desired_acls(load_declarations(), agencies, client_id_prefix=kafka.client_id_prefix)
    admin = SecurityAdmin(kafka)
    present, _ = await admin.acls()
    plan = reconcile(wanted, present)
    if not check:
        # Grant first, then take away: a principal whose rules are being replaced is never left with none.
        await admin.create(plan.create)
        await admin.delete(plan.delete)
    return plan


async def _apply(kafka: KafkaSettings, *, check: bool) -> int:
    published = await latest_published(kafka, Codec.from_directory())
    plan = await apply_acls(kafka, agencies_of(published), check=check)
    verb = ("missing", "extra") if check else ("created", "deleted")
    for acl in plan.create:
        print(f"{verb[0]} {acl}")
    for acl in plan.delete:
        print(f"{verb[1]} {acl}")
    for acl in plan.foreign:
        print(f"DRIFT not managed here, left alone: {acl}")
    if plan.empty:
        print("ACLs: nothing to change")
    return 1 if check and not plan.empty else 0


async def _show(kafka: KafkaSettings) -> int:
    published = await latest_published(kafka, Codec.from_directory())
    for acl in sorted(
        desired_acls(load_declarations(), agencies_of(published), client_id_prefix=kafka.client_id_prefix)
    ):
        print(acl)
    return 0


async def _agency_credentials(kafka: KafkaSettings, code: str, *, rotate: bool) -> int:
    published = await latest_published(kafka, Codec.from_directory())
    if code not in {a.code for a in agencies_of(published)}:
        raise CredentialError(f"{code} is not an agency of the registry in force: apply a registry naming it first")
    user = agency_principal(code)
    password = await _set_password(kafka, user, rotate=rotate)
    # Printed once, here; the brokers keep only the SCRAM verifier.
    print(f"user:      {user}")
    print(f"password:  {password}")
    print("mechanism: SCRAM-SHA-512 over SASL_SSL")
    print(f"reads:     {agency_topic(code)}, {agency_rejection_topic(code)}")
    print(f"writes:    {agency_ack_topic(code)}, {agency_submission_topic(code)}")
    print(f"groups and transactional ids: {agency_group_prefix(code)}*")
    return 0


def _service_credentials(kafka: KafkaSettings, name: str, path: Path, *, rotate: bool, existing: bool) -> int:
    user = OPERATOR if name == "operator" else service_principal(name)
    if existing:
        # The deployments' bootstrap (deploy/bootstrap.sh): the password was made where the secret lives (the
        # compose init, the operator's Kubernetes Secret) and is installed as given, so a repeated run, or one
        # against a broker whose data was lost, leaves the service's file and the broker agreeing.
        password = _existing_password(path)
        asyncio.run(SecurityAdmin(kafka).set_password(user, password))
        print(f"{user}: password set from {path}", file=sys.stderr)
        return 0
    if path.exists() and not rotate:
        raise CredentialError(f"{path} exists: use --rotate to replace the password it holds")
    password = asyncio.run(_set_password(kafka, user, rotate=rotate))
    write_secret(path, password)
    print(f"{user}: password written to {path}", file=sys.stderr)
    return 0


# Shorter than this is not a random secret: refused rather than installed (secrets.token_urlsafe(32) and
# `openssl rand -hex 32` give 43 and 64 characters).
MIN_PASSWORD_CHARS = 24


def _existing_password(path: Path) -> str:
    try:
        password = path.read_text().strip()
    except OSError as exc:
        raise CredentialError(f"{path}: {exc.strerror}") from None
    if len(password) < MIN_PASSWORD_CHARS:
        raise CredentialError(f"{path} holds no password of at least {MIN_PASSWORD_CHARS} characters")
    return password


async def _set_password(kafka: KafkaSettings, user: str, *, rotate: bool) -> str:
    admin = SecurityAdmin(kafka)
    if user in await admin.users() and not rotate:
        raise CredentialError(f"{user} has a password already: use --rotate to replace it")
    password = secrets.token_urlsafe(32)
    await admin.set_password(user, password)
    return password


def write_secret(path: Path, value: str) -> None:
    """Write a secret readable by its owner only (created 0600, never briefly wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    tmp.replace(path)
