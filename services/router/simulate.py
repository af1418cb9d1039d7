"""What a draft registry would change: past alerts routed under the registry in force and under the draft.
Pure: no I/O (`rctc simulate FILE` feeds it from alerts.enriched and registry.config).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from services.common.records import AlertEnriched
from services.common.registry import Registry
from services.router.policy import Verdict, decide


@dataclass(frozen=True)
class Change:
    alert_id: str
    agency: str
    before: Verdict | None
    after: Verdict | None

    def describe(self) -> str:
        def state(v: Verdict | None) -> str:
            if v is None:
                return "not in registry"
            if v.delivered:
                redacted = f", redacting {', '.join(sorted(v.redact))}" if v.redact else ""
                return f"receives under {v.agreement_id}{redacted}"
            return f"withheld ({v.rule})"

        return f"{self.alert_id} {self.agency}: {state(self.before)} -> {state(self.after)}"


def compare(alerts: Iterable[AlertEnriched], current: Registry, draft: Registry) -> list[Change]:
    """Every (alert, agency) whose outcome or redaction differs between the two registries.

    Updates and Cancels are left out: each is decided against what every agency holds of its thread, which
    depends on the decisions before it, not on one registry.
    """
    changes = []
    for enriched in alerts:
        if enriched.alert.msg_type != "Alert":
            continue
        before = {v.agency: v for v in decide(enriched, current)}
        after = {v.agency: v for v in decide(enriched, draft)}
        for agency in sorted(set(before) | set(after)):
            b, a = before.get(agency), after.get(agency)
            delivered = (bool(b and b.delivered), bool(a and a.delivered))
            if delivered == (False, False):
                continue
            if delivered != (True, True) or (b and a and b.redact != a.redact):
                changes.append(Change(enriched.alert_id, agency, b, a))
    return changes
