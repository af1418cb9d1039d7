"""The duty desk's view of correlations (issue 16): what the correlator found (alerts.correlated) and whom the
router told of each (its decisions on alerts.routed with `correlation_id` set). Pure: no I/O.

    desk = CorrelationDesk()
    desk.apply_correlated(found); desk.apply_decision(routed)
    views, next_cursor = desk.page(limit=50, before=None, agency="JO-B", kind=None)   # newest first
    desk.views.get(correlation_id)

| record                                    | what it does here                                            |
|-------------------------------------------|--------------------------------------------------------------|
| AlertCorrelated, `candidates` null (the   | kept once per correlation_id: the correlator writes at least |
| correlator's)                             | once and a repeat differs only in `found_at`: the first      |
|                                           | stands                                                       |
| AlertCorrelated, `candidates` set (the    | nothing: the correlator's record is the correlation          |
| router's intermediate copy)               |                                                              |
| AlertRouted with `correlation_id` (the    | each agency delivered `alert.correlated` joins `notified`,   |
| router's decision)                        | at the time of the first decision that told it (a union: a   |
|                                           | decision written again tells nobody less)                    |
| a decision read before its correlation    | waits for it, in a bounded buffer                            |
| (the topics are read in parallel)         |                                                              |

Who may see it is the ledger's (state.py: operators only); the view names both originators, both alerts and the
value, and an agency learns of a correlation only through its own alert.correlated notice.

Bounded (CorrelationLimits), like the ledger's buffer of early records: past `correlations` the oldest by
`found_at` leave, past `early` the oldest waiting decisions.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

import msgspec

from services.common.pages import Key, cursor_of, order_key
from services.common.records import AlertCorrelated, AlertRouted, CorrelatedAlert


@dataclass(frozen=True)
class CorrelationLimits:
    """How many correlations the desk keeps, and how many decisions may wait for their correlation."""

    correlations: int = 100_000
    early: int = 10_000


# gc=False and tuples: out of the collector's reach, as the ledger's structs are (state.py says why).
class CorrelationSide(msgspec.Struct, kw_only=True, gc=False, frozen=True):
    """One side of a correlation: the version that carried the value, its thread, originator and fields."""

    alert_id: str
    thread_id: str
    origin: str
    fields: tuple[str, ...]


class Notified(msgspec.Struct, kw_only=True, gc=False, frozen=True):
    """An agency the router sent alert.correlated, and when it decided so."""

    agency: str
    at: datetime


class CorrelationView(msgspec.Struct, kw_only=True, gc=False):
    correlation_id: str
    kind: str
    value: str
    a: CorrelationSide  # the earlier alert
    b: CorrelationSide
    found_at: datetime
    # The router's decision: when it was first read (None: not decided yet, or not read yet), the later
    # thread's version it was made on, and the agencies told.
    decided_at: datetime | None = None
    decided_on: str | None = None
    notified: tuple[Notified, ...] = ()

    def concerns(self, agency: str) -> bool:
        """True when `agency` originated either side or was told of the correlation."""
        return agency in (self.a.origin, self.b.origin) or any(n.agency == agency for n in self.notified)


def _side(alert: CorrelatedAlert) -> CorrelationSide:
    return CorrelationSide(
        alert_id=alert.alert_id, thread_id=alert.thread_id, origin=alert.origin, fields=tuple(alert.fields)
    )


class CorrelationDesk:
    def __init__(self, limits: CorrelationLimits | None = None) -> None:
        self.limits = limits or CorrelationLimits()
        self.views: dict[str, CorrelationView] = {}
        self._order: list[Key] = []  # (found_at in microseconds, correlation_id) of every view, ascending
        self._early: OrderedDict[str, tuple[AlertRouted, ...]] = OrderedDict()
        # Thread id -> the correlations either of whose sides is that thread (an alert's page in the console).
        self._of_thread: dict[str, dict[str, None]] = {}
        self.evicted = 0

    def __len__(self) -> int:
        return len(self.views)

    @property
    def waiting(self) -> int:
        """Decisions read before their correlation (by correlation id)."""
        return len(self._early)

    def apply_correlated(self, found: AlertCorrelated) -> bool:
        """Keep a correlation; False when it changes nothing (a repeat, or the router's intermediate copy)."""
        if found.candidates is not None or found.correlation_id in self.views:
            return False
        view = CorrelationView(
            correlation_id=found.correlation_id,
            kind=found.kind,
            value=found.value,
            a=_side(found.a),
            b=_side(found.b),
            found_at=found.found_at,
        )
        self.views[view.correlation_id] = view
        for side in (view.a, view.b):
            self._of_thread.setdefault(side.thread_id, {})[view.correlation_id] = None
        insort(self._order, order_key(view.found_at, view.correlation_id))
        for decision in self._early.pop(view.correlation_id, ()):
            self._fold(view, decision)
        while len(self._order) > self.limits.correlations:
            _, oldest = self._order.pop(0)
            gone = self.views.pop(oldest)
            for side in (gone.a, gone.b):
                ids = self._of_thread.get(side.thread_id, {})
                ids.pop(oldest, None)
                if not ids:
                    self._of_thread.pop(side.thread_id, None)
            self.evicted += 1
        return True

    def apply_decision(self, decision: AlertRouted) -> None:
        """Fold the router's decision about a correlation into it, or keep it until the correlation is read."""
        assert decision.correlation_id is not None
        view = self.views.get(decision.correlation_id)
        if view is not None:
            self._fold(view, decision)
            return
        self._early[decision.correlation_id] = (*self._early.get(decision.correlation_id, ()), decision)
        while len(self._early) > self.limits.early:
            self._early.popitem(last=False)

    @staticmethod
    def _fold(view: CorrelationView, decision: AlertRouted) -> None:
        if view.decided_at is None or decision.routed_at < view.decided_at:
            view.decided_at, view.decided_on = decision.routed_at, decision.alert_id
        told = {n.agency: n for n in view.notified}
        for d in decision.decisions:
            if d.delivered and (d.agency not in told or decision.routed_at < told[d.agency].at):
                told[d.agency] = Notified(agency=d.agency, at=decision.routed_at)
        view.notified = tuple(sorted(told.values(), key=lambda n: n.agency))

    def page(
        self,
        limit: int,
        before: Key | None = None,
        agency: str | None = None,
        kind: str | None = None,
        thread: str | None = None,
    ) -> tuple[list[CorrelationView], str | None]:
        """Up to `limit` views, newest first, older than `before` and matching the filters (`agency`: either
        originator or a notified agency; `thread`: either side's thread); and the cursor of the next page
        (None: this is the last)."""
        if thread is not None:  # from the thread's index: a page about one alert costs its correlations only
            keys = sorted(
                order_key(v.found_at, v.correlation_id)
                for v in map(self.views.__getitem__, self._of_thread.get(thread, ()))
            )
            order = keys
        else:
            order = self._order
        end = bisect_left(order, before) if before is not None else len(order)
        found: list[CorrelationView] = []
        for i in range(end - 1, -1, -1):
            view = self.views[order[i][1]]
            if (kind is None or view.kind == kind) and (agency is None or view.concerns(agency)):
                found.append(view)
                if len(found) > limit:
                    break
        if len(found) <= limit:
            return found, None
        last = found[limit - 1]
        return found[:limit], cursor_of(last.found_at, last.correlation_id)
