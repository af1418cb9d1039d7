"""The fixed category taxonomy of alerts, and the patterns that select from it.

A category is `domain.kind`; a pattern is a category, `domain.*` or `*`. The list is closed so that a typo
in an agreement or a subscription is an error at apply time, not an alert silently shared with no one.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

CATEGORIES: tuple[str, ...] = (
    "terrorism.attack_plot",
    "terrorism.financing",
    "terrorism.travel",
    "terrorism.recruitment",
    "terrorism.propaganda",
    "cyber.intrusion",
    "cyber.ransomware",
    "cyber.ddos",
    "cyber.influence",
    "cbrn",
    "border.smuggling",
    "border.document_fraud",
)


def matches(pattern: str, category: str) -> bool:
    """Whether a subscription or agreement pattern selects a category (`*` and `domain.*` wildcards)."""
    return fnmatchcase(category, pattern)


def is_valid_pattern(pattern: str) -> bool:
    """A pattern is valid when it selects at least one category of the taxonomy."""
    return any(matches(pattern, c) for c in CATEGORIES)
