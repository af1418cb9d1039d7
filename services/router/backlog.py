"""Records fetched for one input partition and not yet routed, in order, each with the claim it came under.

The router fetches without waiting for a partition's transaction to commit: what arrives meanwhile waits
here and goes into the next transaction together (a group commit), instead of the partition being paused
and its prefetched records thrown away by the consumer and fetched again. A claim (or a recovery) moves the
partition's position, so records fetched under an earlier claim number are stale: `take` never mixes two
claims in one transaction, and the router drops a stale one unrouted.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

R = TypeVar("R")


class Backlog(Generic[R]):
    def __init__(self) -> None:
        self._chunks: deque[tuple[int, list[R]]] = deque()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, claim: int, records: list[R]) -> None:
        if records:
            self._chunks.append((claim, records))
            self._size += len(records)

    def take(self, most: int) -> tuple[int, list[R]]:
        """Up to `most` of the oldest records, all fetched under the same claim, and that claim's number."""
        claim = self._chunks[0][0]
        taken: list[R] = []
        while self._chunks and self._chunks[0][0] == claim and len(taken) < most:
            _, records = self._chunks.popleft()
            room = most - len(taken)
            taken += records[:room]
            if len(records) > room:
                self._chunks.appendleft((claim, records[room:]))
        self._size -= len(taken)
        return claim, taken

    def clear(self) -> None:
        self._chunks.clear()
        self._size = 0
