"""The registry of agencies and agreements: its YAML document, its published form, and a live view."""

from services.common.registry.document import load_registry, parse_registry
from services.common.registry.model import (
    REDACTABLE_FIELDS,
    Agency,
    Agreement,
    Registry,
    RegistryDocument,
    RegistryPublished,
    Subscription,
    Webhook,
)
from services.common.registry.view import RegistryView

__all__ = [
    "REDACTABLE_FIELDS",
    "Agency",
    "Agreement",
    "Registry",
    "RegistryDocument",
    "RegistryPublished",
    "RegistryView",
    "Subscription",
    "Webhook",
    "load_registry",
    "parse_registry",
]
