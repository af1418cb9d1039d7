"""The correlation rule: what one new sighting of an indicator does to that indicator's entry in the index. Pure.

    step = record(entries, seen, window=timedelta(days=30), cap=50, per_origin=20)
    step.entries   # the indicator's entry afterwards (what the table keeps)
    step.pairs     # the correlations to emit, each (earlier, later)
    step.outcome   # why: "new", "repeat", "replay", "over_cap"

An entry holds at most one sighting per thread: the first alert of the thread that carried the value (an
Update repeating it adds nothing). A thread is its id and its originator: what another agency sends naming the
thread (which the router refuses) is a thread of its own here, which correlates with nothing of the thread.
A correlation is one pair of threads from different originators sharing
one value within the window, named by its two alerts, so it is found once however many versions repeat the
value. The rules, in order:

| the new sighting's thread              | outcome    | the entry                | correlations emitted                |
|----------------------------------------|------------|--------------------------|-------------------------------------|
| is in the entry with this very alert   | `replay`   | unchanged                | again, with its entry's partners    |
| is in the entry with another alert     | `repeat`   | unchanged                | none                                |
| is new, and the entry holds `cap`      | `over_cap` | unchanged                | none (a value that common connects  |
| originators already (not its own), or  |            |                          | nothing: MISP's over-correlation)   |
| `per_origin` threads of its originator |            |                          |                                     |
| is new                                 | `new`      | the sighting added, and  | one with each thread in the entry   |
|                                        |            | sightings the window has | from another originator within the  |
|                                        |            | passed pruned            | window                              |

The caps count originators, and each originator's threads on its own, never threads of all together: one
agency submitting the value again and again then fills only its own share, so it can neither silence the
correlations of others on that value nor, by counting how many of its alerts still correlate before the cap
stops them, learn how many threads it was never sent carry the value (red team). An entry holds at most
`cap` x `per_origin` sightings.

`replay` is what makes a restart safe: the table's changelog may hold a sighting whose correlations never
reached the topic (the process died in between), and the sighting read again re-emits them, under the same
ids. Times are the alerts' `submitted_at`, so the outcome is the same whenever the record is read again: two
sightings correlate when their alerts were submitted at most `window` apart, and a sighting is pruned once the
newest in its entry is more than `window` after it. An Update of a thread the entry pruned is taken as new and
correlates again with the threads within its window, under the ids of those pairs of threads (correlation.py):
a pair found before is the same correlation, told nobody twice. `expired` prunes by the clock, for entries no
new sighting touches (service.py sweeps with it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from services.common.records import Sighting

Outcome = Literal["new", "repeat", "replay", "over_cap"]


@dataclass(frozen=True, slots=True)
class Step:
    entries: list[Sighting]
    pairs: list[tuple[Sighting, Sighting]]
    outcome: Outcome

    @property
    def changed(self) -> bool:
        return self.outcome == "new"


def order(x: Sighting, y: Sighting) -> tuple[Sighting, Sighting]:
    """(earlier, later): by submission time, then alert id, so every reader orders a pair the same way."""
    return (x, y) if (x.submitted_at, x.alert_id) <= (y.submitted_at, y.alert_id) else (y, x)


def correlates(x: Sighting, y: Sighting, window: timedelta) -> bool:
    """Two sightings of one value correlate when different originators sent them within the window."""
    return x.origin != y.origin and x.thread_id != y.thread_id and abs(x.submitted_at - y.submitted_at) <= window


def record(entries: Sequence[Sighting], seen: Sighting, *, window: timedelta, cap: int, per_origin: int = 20) -> Step:
    """What `seen` does to the entry `entries` of its value (see the module's table)."""
    # A thread is its id AND its originator: a follow-up another agency sends naming someone's thread is refused
    # by the router, but reaches here first, and must not take the thread's place (it would make the thread's
    # own later version carrying the value a `repeat`, and hide its correlations: red team).
    same_thread = next((e for e in entries if e.thread_id == seen.thread_id and e.origin == seen.origin), None)
    if same_thread is not None:
        if same_thread.alert_id != seen.alert_id:
            return Step(list(entries), [], "repeat")
        partners = [order(same_thread, e) for e in entries if correlates(same_thread, e, window)]
        return Step(list(entries), partners, "replay")
    origins = {e.origin for e in entries}
    mine = sum(1 for e in entries if e.origin == seen.origin)
    if mine >= per_origin or (seen.origin not in origins and len(origins) >= cap):
        return Step(list(entries), [], "over_cap")
    pairs = [order(seen, e) for e in entries if correlates(seen, e, window)]
    newest = max([seen.submitted_at, *(e.submitted_at for e in entries)])
    kept = [e for e in (*entries, seen) if e.submitted_at >= newest - window]
    return Step(sorted(kept, key=_by_time), pairs, "new")


def expired(entries: Sequence[Sighting], now: datetime, window: timedelta) -> list[Sighting]:
    """The entry without the sightings submitted more than `window` before `now`."""
    return [e for e in entries if e.submitted_at >= now - window]


def _by_time(s: Sighting) -> tuple[datetime, str]:
    return s.submitted_at, s.alert_id
