"""The fixed category taxonomy of alerts, and the patterns that select from it.

A category is `domain.kind`; a pattern is a category, `domain.*` or `*`. The list is closed so that a typo
in an agreement or a subscription is an error at apply time, not an alert silently shared with no one.
"""

from __future__ import annotations

import functools
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


@functools.lru_cache(maxsize=8192)
def matches(pattern: str, category: str) -> bool:
    """Whether a subscription or agreement pattern selects a category (`*` and `domain.*` wildcards).

    Cached: the router asks it for every agency and agreement of every alert, and the pairs are few (the
    registry's patterns times the taxonomy's categories)."""
    return fnmatchcase(category, pattern)


def is_valid_pattern(pattern: str) -> bool:
    """A pattern is valid when it selects at least one category of the taxonomy."""
    return any(matches(pattern, c) for c in CATEGORIES)
