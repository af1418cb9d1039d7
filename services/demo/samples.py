"""A typical alert submission, for the demo, the tests and the benchmark alike."""

from __future__ import annotations

from typing import Any


def alert_submission(**overrides: Any) -> dict[str, Any]:
    """A valid body for POST /v1/alerts (indicators in its text, one subject); override any field."""
    body: dict[str, Any] = {
        "category": "terrorism.attack_plot",
        "severity": "Severe",
        "urgency": "Immediate",
        "certainty": "Likely",
        "tlp": "AMBER",
        "source_reliability": "B",
        "information_credibility": 2,
        "title": "Planned attack on a transport hub",
        "summary": "Abu Karim coordinates via karim@mailbox.example and hxxps://relay[.]example/k",
        "affected_countries": ["IQ"],
        "subjects": [{"kind": "person", "name": "Abu Karim"}],
    }
    return body | overrides
