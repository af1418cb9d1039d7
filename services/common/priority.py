"""An alert's priority: 1 is "act now", 4 "routine". Pure.

    base = priority(alert)              # from severity, urgency and certainty
    final = raised(base, hits=2)        # after two watchlist entries matched it

Which entries raised it stays on alerts.enriched, for operators (services/common/watchlist.py), and so does
the raised priority: a recipient's copy carries the base (services/router/payload.py). The raised one beside
the severity, urgency and certainty it is computed from would tell a recipient that the alert matched the
center's watchlist, and how many entries, even when the value that matched is redacted from its copy.
"""

from __future__ import annotations

from services.common.records import Alert

# Severity sets the base, urgency and certainty move it.
_BASE = {"Extreme": 1, "Severe": 2, "Moderate": 3, "Minor": 4, "Unknown": 4}


def priority(alert: Alert) -> int:
    """Severity's base (Extreme 1, Severe 2, Moderate 3, Minor and Unknown 4), one more urgent when Immediate,
    one less when Future or Past, one less when Unlikely or Unknown; bounded to 1..4."""
    p = _BASE[alert.severity]
    if alert.urgency == "Immediate":
        p -= 1
    elif alert.urgency in ("Future", "Past"):
        p += 1
    if alert.certainty in ("Unlikely", "Unknown"):
        p += 1
    return max(1, min(4, p))


def raised(base: int, hits: int) -> int:
    """The priority after `hits` distinct watchlist entries matched the alert: one level more urgent per
    hit, never past 1.

    | base | no hit | 1 hit | 2 hits | 3 hits or more |
    |------|--------|-------|--------|----------------|
    | 4    | 4      | 3     | 2      | 1              |
    | 3    | 3      | 2     | 1      | 1              |
    | 2    | 2      | 1     | 1      | 1              |
    | 1    | 1      | 1     | 1      | 1              |
    """
    return max(1, base - max(0, hits))
