"""Registry views filled in memory, as `rctc registry apply` followed by a service's replay would leave them."""

from __future__ import annotations

from services.common.codec import Codec
from services.common.records import utcnow
from services.common.registry import (
    CredentialsView,
    Registry,
    RegistryDocument,
    RegistryView,
    WebhookSecretsView,
    split,
)
from services.common.settings import KafkaSettings


def loaded_views(
    doc: RegistryDocument, codec: Codec, *, version: int = 1
) -> tuple[RegistryView, CredentialsView, WebhookSecretsView]:
    """The registry, credentials and webhook-secrets views of one applied `doc`, without a broker."""
    registry, credentials, secrets = split(doc, version=version, published_at=utcnow(), published_by="t", source="t")
    kafka = KafkaSettings()
    registry_view = RegistryView(kafka, codec, name="test")
    registry_view.current = Registry(registry)
    credentials_view = CredentialsView(kafka, codec, name="test")
    credentials_view.learn(credentials)
    secrets_view = WebhookSecretsView(kafka, codec, name="test")
    secrets_view.learn(secrets)
    return registry_view, credentials_view, secrets_view
