"""Console sessions: idle and absolute expiry, the limit, logout, form tokens, operators dropped."""

from __future__ import annotations

from services.console.sessions import Sessions


def store(limit: int = 10) -> Sessions:
    return Sessions(idle_s=60, max_s=600, limit=limit)


def test_a_session_is_found_by_its_id_only() -> None:
    s = store()
    sid, session = s.open("duty", "d" * 64, now=0)
    assert s.find(sid, now=1) is session
    assert s.find(sid + "x", now=1) is None
    assert s.find(None, now=1) is None
    assert s.find("", now=1) is None


def test_the_store_keeps_no_session_id() -> None:
    s = store()
    sid, _ = s.open("duty", "d" * 64, now=0)
    assert sid not in repr(s._by_digest)


def test_idle_and_absolute_expiry() -> None:
    s = store()
    sid, _ = s.open("duty", "d" * 64, now=0)
    for t in range(50, 600, 50):  # seen every 50 s: never idle for 60 s
        assert s.find(sid, now=t) is not None
    assert s.find(sid, now=601) is None  # 10 minutes after it opened, whatever it did
    sid2, _ = s.open("duty", "d" * 64, now=1000)
    assert s.find(sid2, now=1061) is None  # idle for more than a minute
    assert len(s) == 0


def test_logout_ends_only_that_session() -> None:
    s = store()
    a, _ = s.open("duty", "d" * 64, now=0)
    b, _ = s.open("duty", "d" * 64, now=0)
    s.close(a)
    assert s.find(a, now=1) is None
    assert s.find(b, now=1) is not None


def test_the_least_recently_seen_session_goes_at_the_limit() -> None:
    s = store(limit=2)
    a, _ = s.open("one", "d" * 64, now=0)
    b, _ = s.open("two", "d" * 64, now=1)
    assert s.find(a, now=2)  # a is now the most recently seen
    c, _ = s.open("three", "d" * 64, now=3)
    assert s.find(b, now=4) is None
    assert s.find(a, now=4) is not None and s.find(c, now=4) is not None


def test_form_tokens_are_per_session_and_compared_whole() -> None:
    s = store()
    _, one = s.open("duty", "d" * 64, now=0)
    _, two = s.open("duty", "d" * 64, now=0)
    assert one.csrf != two.csrf
    assert one.accepts(one.csrf)
    assert not one.accepts(two.csrf)
    assert not one.accepts(one.csrf[:-1])
    assert not one.accepts(None)
    assert not one.accepts("")


def test_operators_the_registry_dropped_are_logged_out() -> None:
    s = store()
    kept, _ = s.open("kept", "d" * 64, now=0)
    gone, _ = s.open("gone", "d" * 64, now=0)
    assert s.close_all_except({"kept"}) == 1
    assert s.find(gone, now=1) is None
    assert s.find(kept, now=1) is not None
