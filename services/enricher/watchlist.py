"""The enricher's live watchlist, followed from the compacted topic watchlist.entries (common/follower.py).

    view = WatchlistView(kafka, codec, name="enricher")
    await view.start()              # every entry in force before the first alert is enriched
    ... tasks.create_task(view.run(stopping)) ...
    enrich(submitted, now=utcnow(), watchlist=view.current)

A change an operator makes (`rctc watchlist add`, `remove`, `import`) is applied when the follower reads it,
within a poll: the next alert enriched after that is matched against it, with no restart. A record that does
not decode leaves its key's entry as it was and is quarantined (only operators read either topic).
"""

from __future__ import annotations

from services.common.codec import Codec
from services.common.follower import TopicFollower
from services.common.logs import get_logger
from services.common.records import WatchlistEntryAdded
from services.common.settings import KafkaSettings
from services.common.topics import WATCHLIST_ENTRIES
from services.common.watchlist import Watchlist

log = get_logger(__name__)


class WatchlistView(TopicFollower[WatchlistEntryAdded]):
    topic = WATCHLIST_ENTRIES
    kind = WatchlistEntryAdded

    def __init__(self, kafka: KafkaSettings, codec: Codec, *, name: str) -> None:
        super().__init__(kafka, codec, name=name, label="watchlist")
        self.current = Watchlist()

    async def apply_changes(self, changes: list[tuple[bytes | None, WatchlistEntryAdded | None]]) -> None:
        added = removed = 0
        for key, entry in changes:
            if key is None:
                continue  # not an entry: every entry and every removal has its key (rctc watchlist writes them)
            self.current.apply(key.decode(errors="replace"), entry)
            if entry is None:
                removed += 1
            else:
                added += 1
        # Counts only: an entry's value and reason are for operators, and logs travel further than the topic.
        log.info("watchlist.changed", added=added, removed=removed, entries=len(self.current))
