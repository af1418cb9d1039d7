"""Small hand-written records for unit tests."""

from __future__ import annotations

from datetime import UTC, datetime

from services.common.records import Alert, AlertEnriched, Indicator, Subject


def sample_alert(**overrides: object) -> Alert:
    fields: dict[str, object] = {
        "msg_type": "Alert",
        "category": "terrorism.attack_plot",
        "severity": "Severe",
        "urgency": "Immediate",
        "certainty": "Likely",
        "tlp": "AMBER",
        "title": "Planned attack",
        "summary": "Abu Karim will meet at evil.example",
        "sent": datetime(2026, 11, 28, 9, 0, tzinfo=UTC),
        "affected_countries": ["IQ"],
        "indicators": [Indicator(type="domain", value="evil.example")],
        "subjects": [Subject(kind="person", name="Abu Karim")],
    }
    fields.update(overrides)
    return Alert(**fields)  # type: ignore[arg-type]


def enriched(alert: Alert, origin: str = "IQ-A", alert_id: str = "alert-1") -> AlertEnriched:
    at = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    return AlertEnriched(alert_id=alert_id, origin=origin, submitted_at=at, enriched_at=at, priority=2, alert=alert)
