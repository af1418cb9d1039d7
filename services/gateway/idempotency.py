"""Idempotent submission: a retried POST with the same `Idempotency-Key` gets the same alert id.

The alert id is derived from (agency, key) with UUIDv5, so every gateway replica, before or after a
restart, answers a retry with the same id without shared state, and the same id travels down the
pipeline where consumers de-duplicate on it. Reusing a key for a different body is a client bug that the
IETF Idempotency-Key draft answers with 422; detecting it needs the first body, which each replica
remembers for each agency's most recent keys (a bounded LRU per agency), so the check is best effort across
replicas. Per agency, not one LRU for all: an agency submitting a flood of distinct keys would otherwise push
every other agency's keys out, and their reused keys would then pass unchecked.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import OrderedDict

_NAMESPACE = uuid.UUID("6f1c1c53-55a4-4c55-9a3c-7d0b6f0e2a11")


def alert_id_for(agency: str, idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(_NAMESPACE, f"{agency}\n{idempotency_key}"))


class KeyReuseGuard:
    """Remembers the body digest of each agency's recent keys to refuse a key reused for another body."""

    def __init__(self, keys_per_agency: int) -> None:
        self._capacity = keys_per_agency
        # Agencies are authenticated registry members, so the outer map is bounded by the registry. Inside, the
        # key and the body are kept as raw SHA-256 digests: an entry costs about 200 bytes whatever the key's
        # length (a 255-character key and a hex digest, as first written, cost about 480; measured with
        # tracemalloc), so an agency flooding distinct keys holds at most ~4 MB per replica at the default.
        self._digests: dict[str, OrderedDict[bytes, bytes]] = {}

    def conflicts(self, agency: str, key: str, body: bytes) -> bool:
        """True when the key was used with a different body; otherwise remember this one."""
        digest = hashlib.sha256(body).digest()
        # surrogatepass: intake refuses a key that is not UTF-8 before it gets here; were one to come, it must not
        # raise (aiohttp hands a header's undecodable bytes over as surrogates).
        name = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        recent = self._digests.get(agency)
        if recent is None:
            recent = self._digests[agency] = OrderedDict()
        seen = recent.get(name)
        if seen is not None:
            recent.move_to_end(name)
            return seen != digest
        recent[name] = digest
        if len(recent) > self._capacity:
            recent.popitem(last=False)
        return False
