"""Each agency's webhook deliveries by status, kept as the ledger folds attempts, for the operator console's
endpoints page. Pure: no I/O.

    tally.moved("JO-GID", "retrying", "dead", attempt)     # one row's webhook changed status
    tally.of("JO-GID")  # {"dead": 3, "retrying": 0, "delivered": 41, "last_failure": "http_5xx", ...}

Counted as rows move rather than by walking the ledger when asked: the page is read every few seconds, and
a walk costs every row of every alert the tracker holds. `dead` is the copies whose latest attempt died
(a replay that delivers one takes it back out); `last_failure` is the dispatcher's failure class
(dispatcher/outcome.py: http_5xx, timeout, tls_error...) or the receiver's status code, never its body.
The counts cover the alerts the tracker holds: a retired alert's rows leave them (`forgotten`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from services.common.records import DeliveryAttempted


class WebhookTally:
    def __init__(self) -> None:
        self._counts: dict[str, Counter[str]] = {}
        self._last_failure: dict[str, DeliveryAttempted] = {}

    def moved(self, agency: str, before: str | None, after: str, attempt: DeliveryAttempted) -> None:
        counts = self._counts.setdefault(agency, Counter())
        if before != after:
            if before is not None and before != "pending":
                counts[before] -= 1
            if after != "pending":
                counts[after] += 1
        if attempt.outcome != "delivered":
            self._last_failure[agency] = attempt

    def forgotten(self, agency: str, status: str) -> None:
        """A held row leaves the ledger (retired): its webhook no longer counts, as after a restart, which skips
        retired alerts. The counts cover the alerts the tracker holds."""
        if status != "pending" and agency in self._counts:
            self._counts[agency][status] -= 1

    def of(self, agency: str) -> dict[str, Any]:
        counts = self._counts.get(agency, Counter())
        failure = self._last_failure.get(agency)
        return {
            "dead": counts["dead"],
            "retrying": counts["retrying"],
            "delivered": counts["delivered"],
            "last_failure": None if failure is None else failure.error or f"http_{failure.status_code}",
            "last_failure_at": None if failure is None else failure.attempted_at.isoformat(),
        }

    def all(self) -> dict[str, dict[str, Any]]:
        return {agency: self.of(agency) for agency in sorted(self._counts.keys() | self._last_failure.keys())}
