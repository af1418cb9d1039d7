"""The enricher: normalises submitted alerts, extracts indicators from their text, sets their priority."""
