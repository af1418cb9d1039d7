"""Live views of the registry's secrets, each followed from its own compacted topic by its one reader.

    credentials = CredentialsView(kafka, codec, name="gateway")      # registry.credentials
    await credentials.start()                                       # replayed to the end before serving
    principal = credentials.authenticate(token, registry_view.current)

    secrets = WebhookSecretsView(kafka, codec, name="dispatcher")   # registry.webhook-secrets
    keys = secrets.of("IQ-NAB", registry_view.current)              # None: not known yet, do not send

Both are topic followers (common/follower.py), like the registry view: `start()` replays the topic to its
end, `run()` follows it. Each record belongs to one registry version (model.py `split`), and a view answers only with
the record of the version of the registry in force: never a mix of two applies. Between the moment a
service sees a new registry and the moment it sees that version's secrets (they are written first, but
are read by another consumer), it has none: the safe answer is then refusal, not the previous version's
secrets. An unknown token is refused (401; the client retries), and a webhook is not sent but deferred
(services/dispatcher/outcome.py `secret_pending`), never sent unsigned or signed with a secret the
registry in force no longer lists. The views keep the last few versions, so that the other order (secrets
first, registry a moment later) needs no wait at all.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

from services.common.codec import Codec
from services.common.follower import TopicFollower
from services.common.logs import get_logger
from services.common.registry.model import (
    Credentials,
    CredentialsPublished,
    Principal,
    Registry,
    WebhookSecretsPublished,
)
from services.common.settings import KafkaSettings
from services.common.topics import REGISTRY_CREDENTIALS, REGISTRY_WEBHOOK_SECRETS

log = get_logger(__name__)

# Versions kept: the registry in force, the one just published, and a little slack for applies in a row.
KEEP_VERSIONS = 4

R = TypeVar("R", CredentialsPublished, WebhookSecretsPublished)
I = TypeVar("I")  # noqa: E741  # the index a view builds from one record


class _VersionedView(TopicFollower[R], Generic[R, I]):
    """Follows one single-partition topic of versioned records; keeps an index per recent version."""

    # Logged and counted, never copied to records.quarantine: its raw bytes may hold secrets, and the
    # operators who read the quarantine may not read this topic.
    quarantine_unreadable = False

    def __init__(self, kafka: KafkaSettings, codec: Codec, *, name: str) -> None:
        super().__init__(kafka, codec, name=name, label=self.topic)
        self._by_version: dict[int, I] = {}
        self._changed = asyncio.Condition()

    def _index(self, record: R) -> I:
        raise NotImplementedError

    def at(self, version: int) -> I | None:
        """The index of exactly `version`, or None while it has not arrived (or is long superseded)."""
        return self._by_version.get(version)

    @property
    def versions(self) -> tuple[int, ...]:
        return tuple(sorted(self._by_version))

    async def wait_for_version(self, version: int) -> I:
        """Wait until `version` has arrived (bound it with asyncio.timeout)."""
        async with self._changed:
            await self._changed.wait_for(lambda: version in self._by_version)
        return self._by_version[version]

    async def apply(self, values: list[R]) -> None:
        for value in values:
            self.learn(value)
            log.info(f"{self.topic}.loaded", version=value.version)
        async with self._changed:
            self._changed.notify_all()

    def learn(self, record: R) -> None:
        """Index `record` under its version; the oldest beyond KEEP_VERSIONS are forgotten."""
        # A version published again (an unchanged apply) replaces its earlier record: same content.
        self._by_version[record.version] = self._index(record)
        for old in sorted(self._by_version)[:-KEEP_VERSIONS]:
            del self._by_version[old]


class CredentialsView(_VersionedView[CredentialsPublished, Credentials]):
    """The gateway's: bearer tokens, by the registry version they belong to."""

    topic = REGISTRY_CREDENTIALS
    kind = CredentialsPublished

    def _index(self, record: CredentialsPublished) -> Credentials:
        return Credentials(record)

    def authenticate(self, token: str, registry: Registry) -> Principal | None:
        """The principal `token` belongs to under `registry`, or None (refused).

        None too while this registry version's credentials have not arrived, and for a principal the
        registry does not know: a token is never let in by credentials of another version.
        """
        credentials = self.at(registry.version)
        if credentials is None:
            return None
        principal = credentials.authenticate(token)
        return principal if principal is not None and registry.knows(principal) else None

    def holder_of(self, digest: str, registry: Registry) -> Principal | None:
        """As `authenticate`, for a token known only by its SHA-256 (model.token_digest)."""
        credentials = self.at(registry.version)
        if credentials is None:
            return None
        principal = credentials.holder_of(digest)
        return principal if principal is not None and registry.knows(principal) else None


class WebhookSecretsView(_VersionedView[WebhookSecretsPublished, dict[str, list[str]]]):
    """The dispatcher's: each endpoint's signing secrets, by the registry version they belong to."""

    topic = REGISTRY_WEBHOOK_SECRETS
    kind = WebhookSecretsPublished

    def _index(self, record: WebhookSecretsPublished) -> dict[str, list[str]]:
        return {e.agency: list(e.secrets) for e in record.endpoints if e.secrets}

    def of(self, agency: str, registry: Registry) -> list[str] | None:
        """The secrets that sign `agency`'s webhooks under `registry`; None when not known (do not send)."""
        secrets = self.at(registry.version)
        return None if secrets is None else secrets.get(agency)
