"""A recipient's copy of an alert, built from what its agreement allows. Pure: no I/O.

The copy starts empty and receives only allowed fields (an allow-list), so a field added to `Alert` later
reaches no recipient until it is added here on purpose. Handling lists (`releasable_to`) never travel:
they would tell a recipient who else may have received the alert. Free text is masked where it quotes a
redacted value (a subject's name, an indicator, in its plain or defanged form), since a redacted field
that survives in the summary is not redacted.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from services.common.records import Alert, SharedAlert
from services.common.registry import REDACTABLE_FIELDS

MASK = "[REDACTED]"


def shared_copy(alert: Alert, redact: Collection[str]) -> tuple[SharedAlert, list[str]]:
    """The copy a recipient receives when `redact` names the fields to remove, and the fields removed."""
    removed = sorted(f for f in REDACTABLE_FIELDS if f in redact)
    allowed = {f for f in REDACTABLE_FIELDS if f not in removed}
    secrets = _quoted_values(alert, removed)
    copy = SharedAlert(
        msg_type=alert.msg_type,
        references=list(alert.references),
        category=alert.category,
        severity=alert.severity,
        urgency=alert.urgency,
        certainty=alert.certainty,
        tlp=alert.tlp,
        title=mask(alert.title, secrets),
        sent=alert.sent,
        expires=alert.expires,
        originator_control=alert.originator_control,
        source_reliability=alert.source_reliability if "source_reliability" in allowed else None,
        information_credibility=(alert.information_credibility if "information_credibility" in allowed else None),
        summary=mask(alert.summary, secrets) if "summary" in allowed else None,
        affected_countries=list(alert.affected_countries) if "affected_countries" in allowed else None,
        locations=list(alert.locations) if "locations" in allowed else None,
        indicators=list(alert.indicators) if "indicators" in allowed else None,
        subjects=list(alert.subjects) if "subjects" in allowed else None,
    )
    return copy, removed


def _quoted_values(alert: Alert, removed: list[str]) -> list[str]:
    values: list[str] = []
    if "subjects" in removed:
        for s in alert.subjects:
            values.append(s.name)
            values.extend(s.identifiers.values())
    if "indicators" in removed:
        for i in alert.indicators:
            values.append(i.value)
            values.extend(_defanged(i.value))
    patterns = [re.escape(v) for v in values if len(v.strip()) >= 3]
    if "indicators" in removed:
        # Phone numbers and IBANs are normalised without separators; the text may still have them.
        for i in alert.indicators:
            if i.type in ("phone", "iban"):
                chars = [re.escape(c) for c in i.value.lstrip("+")]
                patterns.append(r"\+?" + r"[\s.-]?".join(chars) if i.type == "phone" else r"\s?".join(chars))
    # Longest first, so a name is masked whole before any shorter value inside it.
    return sorted(set(patterns), key=len, reverse=True)


def _defanged(value: str) -> list[str]:
    forms = [value.replace(".", "[.]"), value.replace(".", "(.)"), value.replace(".", "[dot]")]
    if value.startswith("http"):
        forms += [f.replace("http", "hxxp", 1) for f in [value, *forms]]
    if "@" in value:
        forms += [f.replace("@", "[@]") for f in [value, *forms]]
    return forms


def mask(text: str, secrets: list[str]) -> str:
    """`text` with every match of the `secrets` patterns replaced by the mask."""
    if not secrets or not text:
        return text
    pattern = re.compile("|".join(secrets), re.IGNORECASE)
    return pattern.sub(MASK, text)
