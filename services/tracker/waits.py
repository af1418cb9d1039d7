"""What an alert still awaits at a time, and the states an operator lists alerts by (Ledger.alert_list). Pure.

    waits = waits_of(alert.recipients.values(), now, ENDED)   # awaiting, overdue, escalation_level, escalated
    in_state(waits, "overdue")

| state | the alert |
|---|---|
| open | a recipient owes an acknowledgement (a deadline, and its row not in a state that ended the wait) |
| overdue | one is owed past its deadline at `now` |
| escalated | one is owed by a recipient that was escalated (reminded, or the duty desk called) |
| settled | none is owed |
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

ALERT_STATES = ("open", "overdue", "escalated", "settled")


class Row(Protocol):
    """A recipient's row as the ledger keeps it (state.RecipientState)."""

    @property
    def state(self) -> str: ...
    @property
    def ack_due(self) -> datetime | None: ...
    @property
    def escalation_level(self) -> int: ...


@dataclass(frozen=True)
class Waits:
    """What an alert still awaits at a time (Ledger.alert_list)."""

    awaiting: int
    overdue: int
    escalation_level: int  # the highest of the rows not ended
    escalated: bool  # a row awaiting an acknowledgement was escalated


def waits_of(rows: Iterable[Row], now: datetime, ended: Collection[str]) -> Waits:
    """What the rows of one alert await at `now`; a row in an `ended` state awaits nothing and counts for nothing."""
    awaiting = overdue = level = 0
    escalated = False
    for row in rows:
        if row.state in ended:
            continue
        level = max(level, row.escalation_level)
        if row.ack_due is not None:
            awaiting += 1
            overdue += row.ack_due < now
            escalated = escalated or row.escalation_level > 0
    return Waits(awaiting, overdue, level, escalated)


def in_state(waits: Waits, state: str) -> bool:
    """Whether an alert that awaits `waits` is in `state` (one of ALERT_STATES: the table above)."""
    if state == "open":
        return waits.awaiting > 0
    if state == "overdue":
        return waits.overdue > 0
    if state == "escalated":
        return waits.escalated
    return waits.awaiting == 0  # settled
