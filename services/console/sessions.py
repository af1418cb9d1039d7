"""Operators' console sessions: who is logged in, until when, and the form token of each. Pure: the clock
is passed in, and no I/O.

    sessions = Sessions(idle_s=1800, max_s=43200, limit=1000)
    sid, session = sessions.open("duty-officer", token_sha256, now)   # sid: the cookie; session.csrf: forms
    session = sessions.find(sid, now)                   # None: unknown, idle too long, or too old
    sessions.close(sid)

Why not a signed cookie: a session must end when the operator logs out, when the registry stops listing
them, or when their token is revoked, and a self-contained cookie would stay valid until it expired. The
store keeps only the SHA-256 of each session id, so a memory dump or a log line holds nothing replayable.

Why a form token when the cookie is SameSite=Strict: a browser that ignores SameSite (old, or a proxy that
rewrites) would otherwise let another site's form act as the operator; the token is also what ties a
server-sent action button to the session that rendered it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class Session:
    operator: str
    # The SHA-256 of the token the operator logged in with: checked against the credentials in force on every
    # request, so a revoked token ends the session (pages.py).
    token_sha256: str
    csrf: str
    opened_at: float
    seen_at: float
    # What the last action did, shown once on the next page (notice, problem).
    flash: tuple[str | None, str | None] = (None, None)

    def accepts(self, presented: str | None) -> bool:
        """True when a form carried this session's token (compared in constant time)."""
        return presented is not None and hmac.compare_digest(presented.encode(), self.csrf.encode())


def _digest(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class Sessions:
    def __init__(self, *, idle_s: float, max_s: float, limit: int) -> None:
        self.idle_s = idle_s
        self.max_s = max_s
        self.limit = limit
        self._by_digest: OrderedDict[str, Session] = OrderedDict()  # least recently seen first

    def __len__(self) -> int:
        return len(self._by_digest)

    def open(self, operator: str, token_sha256: str, now: float) -> tuple[str, Session]:
        """A new session for `operator`; at the limit, the least recently seen session ends."""
        sid = secrets.token_urlsafe(32)
        session = Session(
            operator=operator, token_sha256=token_sha256, csrf=secrets.token_urlsafe(32), opened_at=now, seen_at=now
        )
        self._by_digest[_digest(sid)] = session
        while len(self._by_digest) > self.limit:
            self._by_digest.popitem(last=False)
        return sid, session

    def find(self, sid: str | None, now: float) -> Session | None:
        """The live session of this id (and it counts as seen now), or None."""
        if not sid:
            return None
        key = _digest(sid)
        session = self._by_digest.get(key)
        if session is None:
            return None
        if now - session.seen_at > self.idle_s or now - session.opened_at > self.max_s:
            del self._by_digest[key]
            return None
        session.seen_at = now
        self._by_digest.move_to_end(key)
        return session

    def close(self, sid: str | None) -> None:
        if sid:
            self._by_digest.pop(_digest(sid), None)

    def close_all_except(self, operators: set[str]) -> int:
        """End the sessions of operators no longer listed (the registry dropped them); how many ended."""
        gone = [key for key, s in self._by_digest.items() if s.operator not in operators]
        for key in gone:
            del self._by_digest[key]
        return len(gone)
