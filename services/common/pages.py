"""One page of a newest-first listing, asked for the same way at the gateway and at the tracker. Pure.

    page_problem(limit="20", before=None)        # None, or why the page cannot be asked for (a 400)
    cursor_of(found_at, "0b7c...")                # "1764747000123456.0b7c...": where the next page starts
    key_of(cursor)                               # (1764747000123456, "0b7c..."): the order key it names

A cursor names a position in the order (a time in microseconds since the epoch, then an id), not an item:
a page asked for with it is the items strictly older, whether or not the item it came from is still kept.
Both services check it, so the gateway refuses what the tracker would (400 and not the 503 that a refusal
from the tracker becomes) and the tracker does not trust the gateway for it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LIMIT = re.compile(r"[1-9][0-9]{0,2}")
# The id is a canonical UUID, as services/common/internal.py's is_alert_id has it.
_CURSOR = re.compile(r"(0|[1-9][0-9]{0,17})\.([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")

Key = tuple[int, str]


def page_problem(limit: str | None, before: str | None) -> str | None:
    """Why `limit` (1 to MAX_LIMIT) or `before` (a cursor from an earlier page) is refused, or None."""
    if limit is not None and (not _LIMIT.fullmatch(limit) or int(limit) > MAX_LIMIT):
        return f"limit is a whole number from 1 to {MAX_LIMIT}"
    if before is not None and not _CURSOR.fullmatch(before):
        return "before is the `next` cursor of an earlier page"
    return None


def limit_of(limit: str | None) -> int:
    """The page size asked for (checked by page_problem first)."""
    return DEFAULT_LIMIT if limit is None else int(limit)


def order_key(at: datetime, item_id: str) -> Key:
    """The position of an item in the newest-first order: its time, then its id (ties are ordered too)."""
    return (at - _EPOCH) // timedelta(microseconds=1), item_id


def cursor_of(at: datetime, item_id: str) -> str:
    """The cursor of the page after the item at `at` with `item_id`."""
    micros, ident = order_key(at, item_id)
    return f"{micros}.{ident}"


def key_of(cursor: str) -> Key:
    """The order key a cursor names (checked by page_problem first)."""
    micros, _, ident = cursor.partition(".")
    return int(micros), ident
