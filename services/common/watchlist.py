"""The watchlist: values operators want flagged when an alert carries them. Pure: no I/O.

    key = entry_key("phone", "+964 770 123 4567")      # 'phone:+9647701234567', the record's Kafka key
    watchlist = Watchlist()
    watchlist.apply(key, entry)                        # a WatchlistEntryAdded, as read from the topic
    watchlist.apply(key, None)                         # a tombstone under that key: the entry is gone
    watchlist.hits(comparable_values(alert, watchlist.kinds()), now)   # ['phone:+9647701234567']: its hits

Entries live on the compacted topic `watchlist.entries`, one key per value: `<kind>:<comparable value>`
(services/common/normalise.py), so the same value written another way replaces its entry instead of
adding a second. Adding writes a `WatchlistEntryAdded` under the key (a later one replaces it); removing
writes a tombstone. Replaying the topic from its start and applying records in order gives the entries in
force, before compaction and after it (compaction keeps each key's last record, and drops a tombstone only
with everything before it, `delete.retention.ms` later): a restarted reader rebuilds exactly this state.
A tombstone, rather than a removal record, so that a value taken off the list leaves the log entirely.

An expired entry stays on the topic until removed (`rctc watchlist list` shows it) but matches nothing.
An entry is matched in its comparable form computed when it is read, the same code that computes an
alert's, so entries and alerts always compare in one form even when this module's rules change.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from services.common.normalise import KINDS, comparable
from services.common.records import WatchlistEntryAdded

MAX_VALUE = 2048  # the longest indicator value an alert may carry (a URL: services/gateway/submission.py)
MAX_REASON = 1000


def entry_key(kind: str, value: str) -> str:
    """The entry's key on watchlist.entries: `<kind>:<comparable value>`."""
    return f"{kind}:{comparable(kind, value)}"


def problems(entry: WatchlistEntryAdded, now: datetime) -> list[str]:
    """What is wrong with a new entry (nothing: an empty list). For `rctc watchlist add` and `import`."""
    found = []
    if entry.kind not in KINDS:
        found.append(f"kind {entry.kind!r} is not one of {', '.join(KINDS)}")
    elif not comparable(entry.kind, entry.value):
        found.append(f"the value {entry.value!r} leaves nothing to compare as a {entry.kind}")
    if len(entry.value) > MAX_VALUE:
        found.append(f"the value is longer than {MAX_VALUE} characters")
    if not entry.reason.strip():
        found.append("an entry needs a reason")
    elif len(entry.reason) > MAX_REASON:
        found.append(f"the reason is longer than {MAX_REASON} characters")
    if entry.expires_at is not None and entry.expires_at <= now:
        found.append(f"it would expire at {entry.expires_at.isoformat()}, which has passed")
    return found


def expired(entry: WatchlistEntryAdded, now: datetime) -> bool:
    """Whether the entry no longer matches: its expiry is at or before `now`."""
    return entry.expires_at is not None and entry.expires_at <= now


class Watchlist:
    """The entries in force, by key, and an index of their comparable forms for matching."""

    def __init__(self) -> None:
        self._entries: dict[str, WatchlistEntryAdded] = {}
        self._by_value: dict[tuple[str, str], set[str]] = {}
        self._kinds: Counter[str] = Counter()  # entries per kind, so that `kinds` costs nothing per alert

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def kinds(self) -> set[str]:
        """The kinds that have an entry: an alert's values of other kinds cannot hit."""
        return set(self._kinds)

    def entries(self) -> dict[str, WatchlistEntryAdded]:
        """Every entry in force by key, the expired ones too."""
        return dict(self._entries)

    def put(self, key: str, entry: WatchlistEntryAdded) -> None:
        """Add the entry under `key`, replacing what the key held."""
        self.remove(key)
        self._entries[key] = entry
        self._kinds[entry.kind] += 1
        self._by_value.setdefault((entry.kind, comparable(entry.kind, entry.value)), set()).add(key)

    def remove(self, key: str) -> None:
        """Forget the entry under `key` (a tombstone); nothing happens if there is none."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self._kinds[entry.kind] -= 1
        if not self._kinds[entry.kind]:
            del self._kinds[entry.kind]
        value = (entry.kind, comparable(entry.kind, entry.value))
        keys = self._by_value[value]
        keys.discard(key)
        if not keys:
            del self._by_value[value]

    def apply(self, key: str, entry: WatchlistEntryAdded | None) -> None:
        """A record read from watchlist.entries: an entry put under `key`, or a tombstone (None) removing it."""
        if entry is None:
            self.remove(key)
        else:
            self.put(key, entry)

    def hits(self, values: Iterable[tuple[str, str]], now: datetime) -> list[str]:
        """The keys of the unexpired entries that any of `values` (kind, comparable value) matches, sorted."""
        matched = {
            key for value in values for key in self._by_value.get(value, ()) if not expired(self._entries[key], now)
        }
        return sorted(matched)
