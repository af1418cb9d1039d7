"""What an input partition has already routed, read back from the router's own output.

Kafka transactions make each routing of a record atomic, but the same alert can reach the router twice:
a client retries with the same Idempotency-Key (same alert id, by design), or the at-least-once enricher
re-sends after a rebalance. Routing it again would put a second copy in every agency topic. And an Update
or Cancel is decided against what each agency holds of its thread (threads.py). So the router writes each decision
to `alerts.routed` in the *same partition number* as the input record, inside the routing transaction,
and when it claims an input partition it reads that partition of `alerts.routed` (committed records only,
over the window) to learn what was routed already and who holds each thread. The log is the state: nothing else has to
survive a crash, and a new owner of the partition sees exactly what its predecessor committed.

Updates and Cancels are keyed by the thread's first alert id (gateway), so they arrive on the partition
whose log holds their original, in order.

A resend's decisions (they carry the request id) go to the partition of the thread they decide too, so the
log also tells which threads each resend request has decided already.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.common.codec import Codec
from services.common.errors import CodecError
from services.common.quarantine import noted
from services.common.records import AlertRouted
from services.common.topics import ALERTS_ROUTED
from services.router.threads import Thread, advanced, root_of

# Header on each alerts.routed record: the offset of the input record it decided.
SOURCE_OFFSET_HEADER = "rctc-source-offset"
# Header on a step of onward sharing's decision: the offset of its requests.onward record.
ONWARD_OFFSET_HEADER = "rctc-onward-offset"


def fold(threads: dict[str, Thread], routed: AlertRouted) -> None:
    """Apply one decision to the threads it may belong to (a follow-up of an unknown thread changes nothing)."""
    root = root_of(routed)
    thread = advanced(threads.get(root), routed)
    if thread is not None:
        threads[root] = thread


class RoutedLog:
    # Reading a week of one partition takes well under this; past it the broker is in trouble, and the
    # claim fails (and is retried) rather than route without knowing what was routed.
    LOAD_TIMEOUT_S = 60.0
    # Records read before the window's first: transactions without a decision in this partition write no
    # marker to it, so at least half of them are decisions.
    TAIL = 16

    def __init__(self, reader: AIOKafkaConsumer, codec: Codec, window_s: float) -> None:
        self._reader = reader  # a group-less, read_committed consumer used only here
        self._codec = codec
        self._window_ms = int(window_s * 1000)
        self._routed: dict[int, set[str]] = {}  # alert ids decided, by partition
        self._threads: dict[int, dict[str, Thread]] = {}  # thread root -> what its agencies hold, by partition
        # Threads each resend request decided (router/resend.py), by partition: request id -> thread roots.
        self._resent: dict[int, dict[str, set[str]]] = {}
        # One reader serves every partition's load, and partitions recover concurrently: one load at a time.
        self._loading = asyncio.Lock()
        # Input offset after the last record whose decision is in the log, by partition.
        self._next: dict[int, int] = {}
        # Where each thread's latest routed version is on alerts.enriched (its id and offset), by partition:
        # onward sharing sends an approved agency that version (router/onward.py).
        self._versions: dict[int, dict[str, tuple[str, int]]] = {}
        # Onward sharing: the actions each partition decided, and the requests.onward offset after the last.
        # The router's offsets there live in a group nobody joins, which Kafka expires after a quiet week:
        # the log keeps the progress and the decisions themselves (service.py _onward_step).
        self._actions: dict[int, set[str]] = {}
        self._onward_next: dict[int, int] = {}
        # The correlations each partition decided (router/correlation.py): each is told once.
        self._correlations: dict[int, set[str]] = {}
        # How many values of each pair of threads each agency was told of, by partition, since it was claimed
        # (correlation.py, PAIR_NOTICES): memory only; the decisions do not name the pair's other thread.
        self._pair_notices: dict[int, dict[tuple[str, str], Counter[str]]] = {}

    async def load(self, partition: int) -> int:
        """Read what `partition` routed within the window; returns how many alerts were found."""
        async with self._loading:
            return await self._load(partition)

    async def _load(self, partition: int) -> int:
        tp = TopicPartition(ALERTS_ROUTED, partition)
        self._reader.assign([tp])
        since = int(time.time() * 1000) - self._window_ms
        found = await self._reader.offsets_for_times({tp: since})
        end = (await self._reader.end_offsets([tp]))[tp]
        start = found[tp].offset if found.get(tp) is not None else end
        # The last decisions tell where routing resumes however old they are (the committed offset may lag
        # them by seconds, see next_offset): a few more records than the window, taken for their offsets only.
        self._reader.seek(tp, max(0, min(start, end - self.TAIL)))
        routed: set[str] = set()
        threads: dict[str, Thread] = {}
        resent: dict[str, set[str]] = {}
        versions: dict[str, tuple[str, int]] = {}
        actions: set[str] = set()
        correlations: set[str] = set()
        async with asyncio.timeout(self.LOAD_TIMEOUT_S):
            while await self._reader.position(tp) < end:
                for records in (await self._reader.getmany(tp, timeout_ms=1000)).values():
                    for r in records:
                        try:
                            decision = self._codec.decode(r.value, AlertRouted)
                        except CodecError as exc:
                            # Not one of ours (nor is its header to be believed): the auditor, which consumes
                            # the topic, quarantines it.
                            noted(r, str(exc), "router", written=False)
                            continue
                        if r.timestamp >= since and decision.correlation_id is not None:
                            correlations.add(decision.correlation_id)
                            continue  # not a version: it routed nothing
                        if r.timestamp >= since:
                            routed.add(decision.alert_id)
                            fold(threads, decision)
                            if decision.request_id is not None:
                                resent.setdefault(decision.request_id, set()).add(root_of(decision))
                            if decision.onward is not None:
                                actions.add(decision.onward.action_id)
                        onward = dict(r.headers or ()).get(ONWARD_OFFSET_HEADER, b"")
                        if onward.isdigit():
                            self._onward_next[partition] = max(self._onward_next.get(partition, 0), int(onward) + 1)
                        source = dict(r.headers or ()).get(SOURCE_OFFSET_HEADER, b"")
                        if source.isdigit():
                            self._next[partition] = max(self._next.get(partition, 0), int(source) + 1)
                            if r.timestamp >= since and decision.request_id is None:
                                versions[root_of(decision)] = (decision.alert_id, int(source))
        self._routed[partition] = routed
        self._threads[partition] = threads
        self._resent[partition] = resent
        self._versions[partition] = versions
        self._actions[partition] = actions
        self._correlations[partition] = correlations
        self._pair_notices[partition] = {}
        # Done with it: a paused partition is not fetched in the background between loads.
        self._reader.pause(tp)
        return len(routed)

    def next_offset(self, partition: int) -> int | None:
        """Where routing of `partition` resumes according to the log itself (None if it holds no decision).

        Each decision commits in the routing transaction with the offset of the record it decided, so this is
        the router's progress; the group's committed offset is written with it only when a transaction's last
        records decided nothing, and otherwise every few seconds (service.py), so it is usually behind.
        """
        return self._next.get(partition)

    def forget(self, partition: int) -> None:
        self._routed.pop(partition, None)
        self._threads.pop(partition, None)
        self._resent.pop(partition, None)
        self._versions.pop(partition, None)
        self._actions.pop(partition, None)
        self._correlations.pop(partition, None)
        self._pair_notices.pop(partition, None)
        self._onward_next.pop(partition, None)
        self._next.pop(partition, None)

    def routed(self, partition: int, alert_id: str) -> bool:
        return alert_id in self._routed.get(partition, ())

    def threads(self, partition: int) -> dict[str, Thread]:
        """The partition's threads by root (the caller must not change it: see add)."""
        return self._threads.get(partition, {})

    def add(
        self, partition: int, decisions: list[AlertRouted], next_offset: int, sources: dict[str, int] | None = None
    ) -> None:
        """Record decisions whose routing transaction committed, in order, up to input offset `next_offset`;
        `sources`: the input offset of each decided version, by alert id."""
        routed = self._routed.setdefault(partition, set())
        threads = self._threads.setdefault(partition, {})
        versions = self._versions.setdefault(partition, {})
        for decision in decisions:
            routed.add(decision.alert_id)
            fold(threads, decision)
            if sources is not None and decision.alert_id in sources:
                versions[root_of(decision)] = (decision.alert_id, sources[decision.alert_id])
        self._next[partition] = max(self._next.get(partition, 0), next_offset)

    def latest_version(self, partition: int, root: str) -> tuple[str, int] | None:
        """The alert id and alerts.enriched offset of the thread's latest routed version (None: not known)."""
        return self._versions.get(partition, {}).get(root)

    def decided_action(self, partition: int, action_id: str) -> bool:
        """Whether a step of onward sharing was decided on `partition` already (within the window)."""
        return action_id in self._actions.get(partition, ())

    def onward_offset(self, partition: int) -> int | None:
        """Where reading requests.onward's partition resumes according to the log (None: no step in it)."""
        return self._onward_next.get(partition)

    def add_onward(self, partition: int, decisions: list[AlertRouted], next_offset: int) -> None:
        """Record the steps of onward sharing whose transaction committed, up to requests.onward `next_offset`."""
        self.add_resent(partition, decisions)
        actions = self._actions.setdefault(partition, set())
        actions.update(d.onward.action_id for d in decisions if d.onward is not None)
        self._onward_next[partition] = max(self._onward_next.get(partition, 0), next_offset)

    def decided_correlation(self, partition: int, correlation_id: str) -> bool:
        """Whether a correlation's notices were decided on `partition` already (within the window)."""
        return correlation_id in self._correlations.get(partition, ())

    def pair_notices(self, partition: int, pair: tuple[str, str]) -> Counter[str]:
        """How many values of the pair of threads each agency was told of on `partition` since its claim (the
        caller must not change it)."""
        return self._pair_notices.get(partition, {}).get(pair) or Counter()

    def add_correlations(
        self, partition: int, decisions: list[AlertRouted], told: Mapping[tuple[str, str], Counter[str]]
    ) -> None:
        """Record correlation decisions whose transaction committed (they move no input offset nor thread), and
        whom they told of a value of which pair of threads."""
        self._correlations.setdefault(partition, set()).update(
            d.correlation_id for d in decisions if d.correlation_id is not None
        )
        counts = self._pair_notices.setdefault(partition, {})
        for pair, recipients in told.items():
            counts.setdefault(pair, Counter()).update(recipients)

    def resent(self, partition: int, request_id: str) -> set[str]:
        """The threads of `partition` a resend request already decided (the caller must not change it)."""
        return self._resent.get(partition, {}).get(request_id, set())

    def add_resent(self, partition: int, decisions: list[AlertRouted]) -> None:
        """Record a resend's decisions whose transaction committed (they move no input offset)."""
        threads = self._threads.setdefault(partition, {})
        resent = self._resent.setdefault(partition, {})
        for decision in decisions:
            fold(threads, decision)
            if decision.request_id is not None:
                resent.setdefault(decision.request_id, set()).add(root_of(decision))
