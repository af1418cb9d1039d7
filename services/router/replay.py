"""Whether a dead webhook delivery may be sent again under today's registry. Pure: no I/O.

    refusal = replay_refusal(dead, version, registry)    # None: replay it; else (rule, reason)

A dead delivery holds the payload the router made when it decided the copy, under the registry of that
day. Before an operator's replay sends it again (`rctc deliveries replay`), it is decided again, rule by
rule, the first that fails being the reason it is dropped:

    agency_removed       the agency is no longer in the registry
    agency_inactive      the agency is suspended
    (a notice)           a payload without content (withdrawal, cancellation, reminder) goes to an active
                         agency whatever else the registry says: it reveals nothing new
    version_unknown      the alert version the copy holds was not found to decide it again
    <policy rule>        the version is no longer permitted to the agency (policy.verdict_for: not_releasable,
                         no_agreement, tlp_exceeds_agreement, ...)
    redaction_tightened  permitted, but today's agreement removes a field the stored copy still holds: the
                         copy must be made again (`rctc deliveries resend`), not replayed
"""

from __future__ import annotations

from typing import Any

import msgspec

from services.common.records import AlertEnriched, DeliverWebhook
from services.common.registry import Registry
from services.router.policy import verdict_for
from services.router.redaction import shared_copy


def replay_refusal(dead: DeliverWebhook, version: AlertEnriched | None, registry: Registry) -> tuple[str, str] | None:
    """None when today's registry still permits sending `dead` again; otherwise the rule and reason to drop it.
    `version`: the alert version the dead copy was made of (None if it was not found)."""
    agency = registry.agencies.get(dead.agency)
    if agency is None:
        return "agency_removed", f"{dead.agency} is no longer in the registry"
    if not agency.active:
        return "agency_inactive", f"{dead.agency} is suspended in the registry"
    data = _data(dead.payload)
    if data is not None and data.get("alert") is None:
        return None  # a notice
    if version is None:
        return "version_unknown", f"alert {dead.alert_id} was not found to decide the copy again"
    verdict = verdict_for(version, registry, agency)
    if not verdict.delivered:
        return verdict.rule, verdict.reason
    _, removed_now = shared_copy(version.alert, verdict.redact)
    held = set(removed_now) - set((data or {}).get("redacted_fields") or ())
    if held:
        return (
            "redaction_tightened",
            f"{verdict.agreement_id} now removes {', '.join(sorted(held))}, which the stored copy holds",
        )
    return None


def _data(payload: bytes) -> dict[str, Any] | None:
    """The webhook body's `data` (router/payload.py), or None when the payload is not such a body."""
    try:
        body = msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return None
    data = body.get("data") if isinstance(body, dict) else None
    return data if isinstance(data, dict) else None
