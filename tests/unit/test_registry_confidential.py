"""The registry's secrets travel apart from it: what each record holds, and the version rule of the views."""

from __future__ import annotations

import hashlib
from pathlib import Path

import structlog

from services.common.acls import desired_acls, service_principal
from services.common.codec import Codec
from services.common.records import utcnow
from services.common.registry import (
    Agency,
    CredentialsPublished,
    CredentialsView,
    Registry,
    RegistryDocument,
    Webhook,
    WebhookSecretsPublished,
    WebhookSecretsView,
    load_registry,
    split,
)
from services.common.registry.confidential import KEEP_VERSIONS
from services.common.registry.model import Operator
from services.common.settings import KafkaSettings
from services.common.topics import REGISTRY_CREDENTIALS, REGISTRY_WEBHOOK_SECRETS, load_declarations
from tests.support.world import new_secret
from tests.unit.test_registry_view import FakeConsumer

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "registry" / "demo.yaml"


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def document(*, token: str = "tok-a", secrets: list[str] | None = None, with_b: bool = True) -> RegistryDocument:
    a = Agency(
        code="IQ-A",
        name="a",
        country="IQ",
        token_sha256=[sha(token)],
        webhook=Webhook(url="https://a.example/hook", secrets=secrets or [new_secret()]),
    )
    b = Agency(code="JO-B", name="b", country="JO", token_sha256=[sha("tok-b")])
    return RegistryDocument(
        agencies=[a, b] if with_b else [a], operators=[Operator(name="desk", token_sha256=[sha("tok-desk")])]
    )


def applied(doc: RegistryDocument, version: int) -> tuple[Registry, CredentialsPublished, WebhookSecretsPublished]:
    registry, credentials, secrets = split(doc, version=version, published_at=utcnow(), published_by="t", source="t")
    return Registry(registry), credentials, secrets


def test_the_registry_record_holds_no_secret_and_the_other_two_hold_them_all(codec: Codec) -> None:
    """The demo registry's published registry.config bytes hold no whsec_ secret and no token hash; the
    credentials and webhook-secrets records hold every one of them, at the registry's version."""
    doc = load_registry(DEMO)
    registry, credentials, secrets = split(doc, version=7, published_at=utcnow(), published_by="t", source="demo")
    hashes = [h for owner in (*doc.agencies, *doc.operators) for h in owner.token_sha256]
    keys = [s for a in doc.agencies if a.webhook for s in a.webhook.secrets]
    assert hashes and keys
    raw = codec.encode(registry)
    leaked = [s for s in (*hashes, *keys, *(k.removeprefix("whsec_") for k in keys)) if s.encode() in raw]
    assert (b"whsec_" in raw, leaked) == (False, [])
    assert [a.webhook.url if a.webhook else None for a in registry.agencies] == [
        a.webhook.url if a.webhook else None for a in doc.agencies
    ]
    assert sorted(h for o in credentials.owners for h in o.token_sha256) == sorted(hashes)
    assert sorted(s for e in secrets.endpoints for s in e.secrets) == sorted(keys)
    assert (registry.version, credentials.version, secrets.version) == (7, 7, 7)
    for record, kind in ((credentials, CredentialsPublished), (secrets, WebhookSecretsPublished)):
        assert codec.decode(codec.encode(record), kind) == record


def test_a_token_authenticates_only_with_the_credentials_of_the_registry_in_force(codec: Codec) -> None:
    """Credentials of another version never let a token in: after a rotation the old token is refused as soon
    as the new registry is in force, and before the new credentials arrive every token is refused."""
    view = CredentialsView(KafkaSettings(), codec, name="test")
    v1, c1, _ = applied(document(token="old"), 1)
    v2, c2, _ = applied(document(token="new"), 2)
    assert view.authenticate("old", v1) is None  # nothing arrived yet: refused, never guessed
    view.learn(c1)
    assert (view.authenticate("old", v1), view.authenticate("new", v1)) == (("agency", "IQ-A"), None)
    assert view.authenticate("old", v2) is None  # registry v2 in force, its credentials not here yet
    view.learn(c2)  # the usual order: credentials first, the registry a moment later
    assert (view.authenticate("old", v1), view.authenticate("new", v1)) == (("agency", "IQ-A"), None)
    assert (view.authenticate("old", v2), view.authenticate("new", v2)) == (None, ("agency", "IQ-A"))
    assert view.authenticate("tok-desk", v2) == ("operator", "desk")


def test_a_principal_the_registry_does_not_know_is_refused(codec: Codec) -> None:
    """A removed agency's token is refused even where credentials that still list it are at hand."""
    view = CredentialsView(KafkaSettings(), codec, name="test")
    _, with_b, _ = applied(document(), 3)
    without_b, _, _ = applied(document(with_b=False), 3)
    view.learn(with_b)
    assert view.authenticate("tok-b", without_b) is None


def test_webhook_secrets_are_those_of_the_registry_version_only(codec: Codec) -> None:
    """The dispatcher signs with the secrets of the registry in force (all of them during a rotation), and has
    none (does not send) for a version it has not read, nor for an agency the version dropped."""
    view = WebhookSecretsView(KafkaSettings(), codec, name="test")
    old, new = new_secret(), new_secret()
    v1, _, s1 = applied(document(secrets=[old]), 1)
    v2, _, s2 = applied(document(secrets=[new, old]), 2)
    view.learn(s1)
    assert (view.of("IQ-A", v1), view.of("IQ-A", v2), view.of("JO-B", v1)) == ([old], None, None)
    view.learn(s2)
    assert view.of("IQ-A", v2) == [new, old]
    for version in range(3, 3 + KEEP_VERSIONS):
        view.learn(applied(document(secrets=[new]), version)[2])
    assert (view.of("IQ-A", v1), view.versions) == (None, tuple(range(3, 3 + KEEP_VERSIONS)))


def test_only_the_dispatcher_reads_the_secrets_and_only_the_gateway_and_the_console_the_credentials() -> None:
    """services/common/topics.yaml gives the secrets one reading service and the token hashes the two that check a
    bearer token (the gateway, and the console for its operators' log-in), and the operator only the write: the ACL
    matrix (tests/integration/test_acl_matrix.py) follows the declaration, this pins the declaration."""
    acls = desired_acls(load_declarations(), [], client_id_prefix="rctc")
    readers = {
        topic: sorted(a.principal for a in acls if (a.resource, a.name, a.operation) == ("topic", topic, "read"))
        for topic in (REGISTRY_CREDENTIALS, REGISTRY_WEBHOOK_SECRETS)
    }
    writers = {
        topic: sorted(a.principal for a in acls if (a.resource, a.name, a.operation) == ("topic", topic, "write"))
        for topic in (REGISTRY_CREDENTIALS, REGISTRY_WEBHOOK_SECRETS)
    }
    assert readers == {
        REGISTRY_CREDENTIALS: [service_principal("console"), service_principal("gateway")],
        REGISTRY_WEBHOOK_SECRETS: [service_principal("dispatcher")],
    }
    assert writers == {REGISTRY_CREDENTIALS: ["operator-cli"], REGISTRY_WEBHOOK_SECRETS: ["operator-cli"]}


async def test_a_corrupt_secrets_record_keeps_the_known_versions_and_is_never_copied_out(codec: Codec) -> None:
    """Version 1, then an empty, a truncated and a tombstone record on registry.webhook-secrets, live: version 1
    stays, and each bad record is only logged (written=False): the quarantine's readers may not read secrets."""
    _, _, secrets = applied(document(), 1)
    good = codec.encode(secrets)
    view = WebhookSecretsView(KafkaSettings(), codec, name="test")
    view.loaded = True
    view._consumer = FakeConsumer([good, b"", good[:30], None])  # type: ignore[assignment]
    with structlog.testing.capture_logs() as logs:
        await view._poll(0)
    quarantined = [(e["offset"], e["written"]) for e in logs if e["event"] == "record.quarantined"]
    assert (view.versions, quarantined) == ((1,), [(1, False), (2, False)])
