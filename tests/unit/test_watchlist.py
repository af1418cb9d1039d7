"""The watchlist: entries by key, tombstones, expiry, matching alerts, and the priority rule. No I/O."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from aiokafka import ConsumerRecord, TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from services.common.codec import Codec
from services.common.priority import raised
from services.common.records import AlertEnriched, AlertSubmitted, Indicator, Subject, WatchlistEntryAdded
from services.common.settings import KafkaSettings
from services.common.topics import WATCHLIST_ENTRIES
from services.common.watchlist import Watchlist, entry_key, expired, problems
from services.enricher.enrich import enrich
from services.enricher.watchlist import WatchlistView
from tests.unit.samples import sample_alert

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def entry(kind: str, value: str, *, reason: str = "case 2026-114", expires_at: datetime | None = None) -> Any:
    return WatchlistEntryAdded(
        kind=kind, value=value, reason=reason, added_by="operator-cli", added_at=NOW, expires_at=expires_at
    )


def watchlist(*entries: WatchlistEntryAdded) -> Watchlist:
    w = Watchlist()
    for e in entries:
        w.apply(entry_key(e.kind, e.value), e)
    return w


def enriched(alert: Any, w: Watchlist, now: datetime = NOW) -> AlertEnriched:
    result = enrich(AlertSubmitted(alert_id="a-1", origin="IQ-A", submitted_at=now, alert=alert), now=now, watchlist=w)
    assert isinstance(result, AlertEnriched)
    return result


def test_an_entry_s_key_is_its_kind_and_comparable_value() -> None:
    """Two spellings of one value have one key, so the second replaces the first instead of adding another."""
    assert entry_key("phone", "+964 770 123 4567") == entry_key("phone", "00964-770-1234567") == "phone:+9647701234567"
    w = watchlist(entry("phone", "+964 770 123 4567", reason="first"), entry("phone", "0096477 01234567", reason="two"))
    assert [(k, e.reason) for k, e in w.entries().items()] == [("phone:+9647701234567", "two")]


def test_a_tombstone_removes_the_entry_and_an_unknown_one_changes_nothing() -> None:
    """Applying None under a key forgets its entry; under a key with no entry, nothing happens."""
    w = watchlist(entry("domain", "evil.example"), entry("name", "Abu Karim"))
    assert w.kinds() == {"domain", "name"}
    w.apply("domain:evil.example", None)
    w.apply("ip:10.0.0.1", None)
    assert (list(w.entries()), w.kinds()) == (["name:abu karim"], {"name"})
    assert w.hits({("domain", "evil.example"), ("name", "abu karim")}, NOW) == ["name:abu karim"]


@given(st.lists(st.tuples(st.sampled_from(["evil.example", "EVIL.example.", "relay.example"]), st.booleans())))
def test_replaying_the_topic_or_its_compacted_form_gives_the_same_entries(ops: list[tuple[str, bool]]) -> None:
    """Records applied in order give what compaction keeps (each key's last record, tombstones dropped): a
    reader restarted before or after the cleaner ran rebuilds the same watchlist."""
    log = [
        (entry_key("domain", v), entry("domain", v, reason=f"r{i}") if put else None) for i, (v, put) in enumerate(ops)
    ]
    replayed = Watchlist()
    for key, value in log:
        replayed.apply(key, value)
    last = dict(log)
    compacted = Watchlist()
    for key, value in last.items():
        if value is not None:
            compacted.apply(key, value)
    assert replayed.entries() == compacted.entries()
    assert replayed.hits({("domain", "evil.example")}, NOW) == (
        ["domain:evil.example"] if last.get("domain:evil.example") else []
    )


def test_an_expired_entry_matches_nothing_from_its_expiry_on() -> None:
    """Before its expiry an entry matches; at it and after, it does not (it is still listed until removed)."""
    w = watchlist(entry("ip", "10.0.0.1", expires_at=NOW + timedelta(hours=1)))
    value = {("ip", "10.0.0.1")}
    assert w.hits(value, NOW + timedelta(minutes=59)) == ["ip:10.0.0.1"]
    assert w.hits(value, NOW + timedelta(hours=1)) == []
    assert w.hits(value, NOW + timedelta(days=1)) == []
    assert list(w.entries()) == ["ip:10.0.0.1"]
    assert expired(w.entries()["ip:10.0.0.1"], NOW + timedelta(hours=1))


@pytest.mark.parametrize(
    ("made", "expected"),
    [
        (entry("phone", "+964 770 123 4567"), []),
        (entry("passport", "A123"), ["kind 'passport' is not one of"]),
        (entry("phone", "( - )"), ["leaves nothing to compare"]),
        (entry("name", "Abu Karim", reason="  "), ["an entry needs a reason"]),
        (entry("name", "Abu Karim", reason="r" * 1001), ["the reason is longer than 1000"]),
        (entry("url", "http://e.example/" + "a" * 2048), ["the value is longer than 2048"]),
        (entry("ip", "10.0.0.1", expires_at=NOW), ["which has passed"]),
    ],
)
def test_what_is_wrong_with_a_new_entry(made: WatchlistEntryAdded, expected: list[str]) -> None:
    """Each problem is named; a good entry has none."""
    found = problems(made, NOW)
    assert len(found) == len(expected)
    assert all(want in got for want, got in zip(expected, found, strict=True))


def test_the_priority_rule_is_its_table() -> None:
    """One level more urgent per hit, never past 1: the table in `raised`'s docstring, row by row."""
    table = {4: [4, 3, 2, 1, 1], 3: [3, 2, 1, 1, 1], 2: [2, 1, 1, 1, 1], 1: [1, 1, 1, 1, 1]}
    assert {base: [raised(base, hits) for hits in range(5)] for base in table} == table


@given(st.integers(1, 4), st.integers(0, 50))
def test_a_hit_never_lowers_priority_nor_passes_one(base: int, hits: int) -> None:
    """More hits are never less urgent; no hit leaves the base; the result stays in 1..base."""
    assert 1 <= raised(base, hits) <= base
    assert raised(base, hits + 1) <= raised(base, hits)
    assert raised(base, 0) == base


def test_a_hit_is_recorded_by_key_and_raises_priority() -> None:
    """A defanged phone in the summary, a subject's Arabic name in another spelling and its passport number
    each match their entry: three hits, recorded by key, raise Moderate/Expected (3) to 1."""
    alert = sample_alert(
        severity="Moderate",
        urgency="Expected",
        summary="Call +964 770 123 4567 or write to relay[.]example",
        indicators=[],
        subjects=[Subject(kind="person", name="عبـد الرَّحمن", identifiers={"passport": "N-0012 345"})],
    )
    w = watchlist(
        entry("phone", "00964 7701234567"),
        entry("name", "عبد الرحمن"),
        entry("identifier", "n0012345"),
        entry("domain", "other.example"),
    )
    assert (enriched(alert, Watchlist()).priority, enriched(alert, Watchlist()).watchlist_hits) == (3, [])
    result = enriched(alert, w)
    assert result.watchlist_hits == ["identifier:n0012345", "name:الرحمن عبد", "phone:+9647701234567"]
    assert result.priority == 1


def test_an_expired_entry_does_not_raise_priority() -> None:
    """The same alert against an entry that expired an instant before it is enriched: no hit, base priority."""
    alert = sample_alert(severity="Minor", urgency="Expected", indicators=[Indicator(type="ip", value="10.0.0.1")])
    w = watchlist(entry("ip", "10.0.0.1", expires_at=NOW + timedelta(minutes=5)))
    assert (enriched(alert, w).priority, enriched(alert, w).watchlist_hits) == (3, ["ip:10.0.0.1"])
    later = enriched(alert, w, now=NOW + timedelta(minutes=5))
    assert (later.priority, later.watchlist_hits) == (4, [])


class FakeConsumer:
    def __init__(self, records: list[tuple[bytes | None, bytes | None]]) -> None:
        tp = (WATCHLIST_ENTRIES, 0)
        self.records = [ConsumerRecord(*tp, i, 0, 0, k, v, None, 0, 0, []) for i, (k, v) in enumerate(records)]

    async def getmany(self, timeout_ms: int = 0) -> dict[TopicPartition, list[Any]]:
        await asyncio.sleep(0)
        records, self.records = self.records, []
        return {TopicPartition(WATCHLIST_ENTRIES, 0): records} if records else {}


async def test_the_enricher_s_view_applies_entries_and_tombstones_in_order(codec: Codec) -> None:
    """An entry, its replacement, another entry's tombstone, an unreadable record (the key's entry stays) and
    a keyless record (ignored): the view holds what the topic says is in force, and logs no value or reason."""
    first, second = entry("domain", "evil.example", reason="first"), entry("domain", "Evil.Example", reason="second")
    other = entry("ip", "10.0.0.1", reason="secret reason")
    view = WatchlistView(KafkaSettings(), codec, name="test")
    view._consumer = FakeConsumer(  # type: ignore[assignment]
        [
            (b"domain:evil.example", codec.encode(first)),
            (b"ip:10.0.0.1", codec.encode(other)),
            (b"domain:evil.example", codec.encode(second)),
            (b"ip:10.0.0.1", None),
            (b"domain:evil.example", b"\xc3\x01garbage"),
            (None, codec.encode(other)),
        ]
    )
    with structlog.testing.capture_logs() as logs:
        await view._poll(0)
    assert {k: e.reason for k, e in view.current.entries().items()} == {"domain:evil.example": "second"}
    changed = [e for e in logs if e["event"] == "watchlist.changed"]
    assert [(e["added"], e["removed"], e["entries"]) for e in changed] == [(3, 1, 1)]
    assert not any("secret reason" in str(e) or "10.0.0.1" in str(e) for e in logs)
