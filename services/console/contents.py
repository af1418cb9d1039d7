"""The alerts' contents the console shows (title, category, TLP, priority), from alerts.enriched, and the
versions of each thread. At every start, the last `history_s` of the topic is read (not the month it keeps:
an acknowledgement is awaited for hours, not weeks), then it is followed; bounded to the most recent `limit`
alerts. An older alert's page still shows its states, from the tracker, without its title.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import timedelta

from services.common.codec import Codec
from services.common.follower import TopicFollower
from services.common.records import AlertEnriched, utcnow
from services.common.settings import KafkaSettings
from services.common.topics import ALERTS_ENRICHED
from services.console.views import Content, content_of


class Contents(TopicFollower[AlertEnriched]):
    topic = ALERTS_ENRICHED
    kind = AlertEnriched

    def __init__(self, kafka: KafkaSettings, codec: Codec, *, limit: int, history_s: float) -> None:
        super().__init__(kafka, codec, name="console", label="contents")
        self.limit = limit
        self.history_s = history_s
        self.by_id: OrderedDict[str, Content] = OrderedDict()
        self._threads: dict[str, dict[str, None]] = {}  # thread id -> its alert ids, in arrival order

    async def apply(self, values: list[AlertEnriched]) -> None:
        # By submission time too, not only where the start seeks to: the seek goes by the broker's time index,
        # which finds the first record at or after a time, and a record with an older time written after it
        # (a replay, a late producer) is read all the same.
        cutoff = utcnow() - timedelta(seconds=self.history_s) if self.history_s is not None else None
        for enriched in values:
            if cutoff is None or enriched.submitted_at >= cutoff:
                self.add(content_of(enriched))

    def add(self, content: Content) -> None:
        self.by_id[content.alert_id] = content
        self.by_id.move_to_end(content.alert_id)
        self._threads.setdefault(content.thread_id, {})[content.alert_id] = None
        while len(self.by_id) > self.limit:
            _, old = self.by_id.popitem(last=False)
            versions = self._threads.get(old.thread_id, {})
            versions.pop(old.alert_id, None)
            if not versions:
                self._threads.pop(old.thread_id, None)

    def thread(self, alert_id: str, origin: str | None = None) -> list[Content]:
        """The versions of `alert_id`'s thread the console holds (the alert itself among them), from the
        alert's own origin (`origin`: the tracker's word, for an alert whose content is not held).

        Only that origin's: alerts.enriched holds versions before the router decides on them, and the router
        refuses an Update or Cancel of another agency's thread (router/policy.py, `not_originator`); without
        this a hostile agency's refused "Update" would be listed as a version of its victim's alert."""
        own = self.by_id.get(alert_id)
        thread_id = own.thread_id if own is not None else alert_id
        origin = own.origin if own is not None else origin
        versions = (self.by_id[i] for i in self._threads.get(thread_id, {}) if i in self.by_id)
        return [v for v in versions if origin is None or v.origin == origin]
