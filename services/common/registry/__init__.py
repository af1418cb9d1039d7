"""The registry of agencies and agreements: its YAML document, its published form, and a live view."""

from services.common.registry.confidential import CredentialsView, WebhookSecretsView
from services.common.registry.document import load_registry, parse_registry
from services.common.registry.model import (
    REDACTABLE_FIELDS,
    Agency,
    AgencyEntry,
    Agreement,
    Credentials,
    CredentialsPublished,
    Registry,
    RegistryDocument,
    RegistryPublished,
    Subscription,
    Webhook,
    WebhookEntry,
    WebhookSecretsPublished,
    split,
)
from services.common.registry.view import RegistryView

__all__ = [
    "REDACTABLE_FIELDS",
    "Agency",
    "AgencyEntry",
    "Agreement",
    "Credentials",
    "CredentialsPublished",
    "CredentialsView",
    "Registry",
    "RegistryDocument",
    "RegistryPublished",
    "RegistryView",
    "Subscription",
    "Webhook",
    "WebhookEntry",
    "WebhookSecretsPublished",
    "WebhookSecretsView",
    "load_registry",
    "parse_registry",
    "split",
]
