"""ACLs and SCRAM users on the brokers, through confluent-kafka's admin client (aiokafka's has neither).

    admin = SecurityAdmin(kafka_settings)          # as the bootstrap admin (a super user)
    present = await admin.acls()
    await admin.create(plan.create); await admin.delete(plan.delete)
    await admin.set_password("agency-IQ-NAB", secrets.token_urlsafe(32))
    admin.close()

confluent-kafka answers with concurrent futures; they are awaited here without blocking the event loop.
Only ALLOW rules for any host are managed: the authorizer denies whatever no rule allows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from services.common.acls import Acl
from services.common.errors import RctcError
from services.common.librdkafka import confluent_config
from services.common.settings import KafkaSettings

_RESOURCES = {
    "topic": ResourceType.TOPIC,
    "group": ResourceType.GROUP,
    "transactional_id": ResourceType.TRANSACTIONAL_ID,
}
_PATTERNS = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}
_OPERATIONS = {"read": AclOperation.READ, "write": AclOperation.WRITE, "describe": AclOperation.DESCRIBE}
_MECHANISMS = {"SCRAM-SHA-512": ScramMechanism.SCRAM_SHA_512, "SCRAM-SHA-256": ScramMechanism.SCRAM_SHA_256}
# RFC 7677 asks for at least 4096 iterations; the broker accepts up to 16384.
SCRAM_ITERATIONS = 8192


class AdminError(RctcError):
    """The brokers refused or failed an admin request; the message says which and why."""


def _binding(acl: Acl) -> AclBinding:
    return AclBinding(
        _RESOURCES[acl.resource],
        acl.name,
        _PATTERNS[acl.pattern],
        f"User:{acl.principal}",
        "*",
        _OPERATIONS[acl.operation],
        AclPermissionType.ALLOW,
    )


def _acl(binding: AclBinding) -> Acl | None:
    """The managed form of a binding on the broker; None for what this system never writes (DENY rules,
    other operations, host-specific rules, non-user principals): those are reported, never touched."""
    resources = {v: k for k, v in _RESOURCES.items()}
    patterns = {v: k for k, v in _PATTERNS.items()}
    operations = {v: k for k, v in _OPERATIONS.items()}
    if (
        binding.permission_type != AclPermissionType.ALLOW
        or binding.host != "*"
        or not binding.principal.startswith("User:")
        or binding.restype not in resources
        or binding.resource_pattern_type not in patterns
        or binding.operation not in operations
    ):
        return None
    return Acl(
        binding.principal.removeprefix("User:"),
        resources[binding.restype],  # type: ignore[arg-type]
        binding.name,
        patterns[binding.resource_pattern_type],  # type: ignore[arg-type]
        operations[binding.operation],  # type: ignore[arg-type]
    )


async def _result(future: Future[Any], what: str) -> Any:
    try:
        return await asyncio.wrap_future(future)
    except KafkaException as exc:
        raise AdminError(f"{what}: {exc.args[0].str() if exc.args else exc}") from exc


class SecurityAdmin:
    def __init__(self, settings: KafkaSettings, *, timeout_s: float = 30.0) -> None:
        self._client = AdminClient(confluent_config(settings, "security-admin"))
        self._timeout = timeout_s
        self._mechanism = _MECHANISMS[settings.sasl_mechanism]

    async def acls(self) -> tuple[set[Acl], list[str]]:
        """The managed ACLs on the brokers, and a description of every other binding found."""
        match_all = AclBindingFilter(
            ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY, AclPermissionType.ANY
        )
        bindings = await _result(self._client.describe_acls(match_all, request_timeout=self._timeout), "describe ACLs")
        managed: set[Acl] = set()
        other: list[str] = []
        for binding in bindings:
            acl = _acl(binding)
            if acl is None:
                other.append(str(binding))
            else:
                managed.add(acl)
        return managed, other

    async def create(self, acls: Iterable[Acl]) -> None:
        bindings = [_binding(a) for a in acls]
        if not bindings:
            return
        futures = self._client.create_acls(bindings, request_timeout=self._timeout)
        for binding, future in futures.items():
            await _result(future, f"create ACL {binding}")

    async def delete(self, acls: Iterable[Acl]) -> None:
        # A binding is its own exact filter: nothing broader than the rule itself is deleted.
        filters = [AclBindingFilter(*_filter_fields(_binding(a))) for a in acls]
        if not filters:
            return
        futures = self._client.delete_acls(filters, request_timeout=self._timeout)
        for binding, future in futures.items():
            await _result(future, f"delete ACL {binding}")

    async def users(self) -> set[str]:
        """Every user with a SCRAM credential."""
        futures = self._client.describe_user_scram_credentials(request_timeout=self._timeout)
        described = await _result(futures, "describe SCRAM users")
        return set(described)

    async def set_password(self, user: str, password: str) -> None:
        """Create the user's SCRAM credential, or replace it (a rotation: the old password stops working for
        new connections at once, and sessions opened with it end at their next re-authentication, within the
        brokers' `connections.max.reauth.ms`)."""
        upsert = UserScramCredentialUpsertion(
            user, ScramCredentialInfo(self._mechanism, SCRAM_ITERATIONS), password.encode()
        )
        futures = self._client.alter_user_scram_credentials([upsert], request_timeout=self._timeout)
        for future in futures.values():
            await _result(future, f"set the SCRAM credential of {user}")

    async def delete_user(self, user: str) -> None:
        deletion = UserScramCredentialDeletion(user, self._mechanism)
        futures = self._client.alter_user_scram_credentials([deletion], request_timeout=self._timeout)
        for future in futures.values():
            await _result(future, f"delete the SCRAM credential of {user}")


def _filter_fields(binding: AclBinding) -> tuple[Any, ...]:
    return (
        binding.restype,
        binding.name,
        binding.resource_pattern_type,
        binding.principal,
        binding.host,
        binding.operation,
        binding.permission_type,
    )
