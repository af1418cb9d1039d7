"""When a recipient must have acknowledged an alert. Pure: no I/O.

The agreement that permitted the share may set its own deadline per severity; otherwise the center's
defaults apply. Urgency scales it: an Immediate alert must be seen in half the time, a Future or Past one
may wait twice as long. A Cancel expects no acknowledgement.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

DEFAULT_SECONDS: dict[str, int] = {
    "Extreme": 15 * 60,
    "Severe": 60 * 60,
    "Moderate": 4 * 3600,
    "Minor": 24 * 3600,
    "Unknown": 24 * 3600,
}
URGENCY_FACTOR: dict[str, float] = {"Immediate": 0.5, "Expected": 1.0, "Future": 2.0, "Past": 2.0, "Unknown": 1.0}


def ack_due(
    msg_type: str,
    severity: str,
    urgency: str,
    agreement_deadlines: Mapping[str, int],
    routed_at: datetime,
    scale: float = 1.0,
) -> datetime | None:
    if msg_type == "Cancel":
        return None
    seconds = agreement_deadlines.get(severity, DEFAULT_SECONDS.get(severity, DEFAULT_SECONDS["Unknown"]))
    due = routed_at + timedelta(seconds=seconds * URGENCY_FACTOR.get(urgency, 1.0) * scale)
    return due.replace(microsecond=due.microsecond // 1000 * 1000)
