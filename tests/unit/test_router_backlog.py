"""A partition's backlog: in order, bounded takes, never two claims in one transaction."""

from __future__ import annotations

from services.router.backlog import Backlog


def test_takes_are_in_order_and_bounded() -> None:
    b: Backlog[int] = Backlog()
    b.add(1, [1, 2, 3])
    b.add(1, [4, 5])
    b.add(1, [])
    assert len(b) == 5
    assert b.take(4) == (1, [1, 2, 3, 4])
    assert len(b) == 1
    b.add(1, [6])
    assert b.take(10) == (1, [5, 6])
    assert not b


def test_a_take_never_mixes_claims() -> None:
    b: Backlog[int] = Backlog()
    b.add(1, [1, 2])
    b.add(2, [3, 4])
    assert b.take(10) == (1, [1, 2])  # fetched before the partition was claimed again: dropped by the router
    assert b.take(1) == (2, [3])
    assert b.take(1) == (2, [4])
    b.add(3, [5])
    b.clear()
    assert len(b) == 0 and not b
