"""The duty desk's view of correlations in the tracker: kept once, folded with whom the router told, paged
newest first, filtered, bounded, for operators only; and a decision about a correlation never touches the
alert it names. No I/O."""

from __future__ import annotations

import copy
import gc
import uuid
from datetime import UTC, datetime, timedelta

import msgspec

from services.common.codec import Codec
from services.common.pages import key_of
from services.common.records import AlertCorrelated, AlertRouted, CorrelatedAlert, RoutingDecision
from services.tracker.correlations import CorrelationDesk, CorrelationLimits
from services.tracker.state import Ledger, Viewer

AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DESK = Viewer("operator", "desk")
REGISTRY = ("IQ-A", "JO-B", "SA-C", "KW-D")
A_ALERT, B_ALERT = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"


def cid(n: int) -> str:
    return str(uuid.UUID(int=n, version=5))


def found(
    n: int = 1, *, a: str = "IQ-A", b: str = "JO-B", kind: str = "phone", minutes: int = 0, **extra: object
) -> AlertCorrelated:
    return AlertCorrelated(
        correlation_id=cid(n),
        kind=kind,
        value="+9647700000000",
        a=CorrelatedAlert(alert_id=A_ALERT, thread_id=A_ALERT, origin=a, fields=["indicators"]),
        b=CorrelatedAlert(alert_id=B_ALERT, thread_id=B_ALERT, origin=b, fields=["summary", "indicators"]),
        found_at=AT + timedelta(minutes=minutes),
        **extra,  # type: ignore[arg-type]
    )


def told(n: int, agencies: set[str], minutes: int = 1, alert_id: str = B_ALERT) -> AlertRouted:
    """The router's decision about correlation `n`, as the brief has it: one decision per agency of the registry."""
    return AlertRouted(
        alert_id=alert_id,
        origin="JO-B",
        msg_type="Alert",
        severity="Severe",
        urgency="Expected",
        routed_at=AT + timedelta(minutes=minutes),
        registry_version=4,
        decisions=tuple(
            RoutingDecision(agency=code, delivered=True, rule="correlated", reason="told", event="alert.correlated")
            if code in agencies
            else RoutingDecision(agency=code, delivered=False, rule="not_entitled", reason="not entitled")
            for code in REGISTRY
        ),
        correlation_id=cid(n),
    )


def routed_b() -> AlertRouted:
    """B_ALERT's own routing: SA-C received it with an acknowledgement due, KW-D did not."""
    return AlertRouted(
        alert_id=B_ALERT,
        origin="JO-B",
        msg_type="Alert",
        severity="Severe",
        urgency="Expected",
        routed_at=AT,
        registry_version=4,
        decisions=(
            RoutingDecision(
                agency="SA-C",
                delivered=True,
                rule="shared",
                reason="shared under AG-1",
                agreement_id="AG-1",
                channels=("kafka", "webhook"),
                ack_due=AT + timedelta(hours=1),
                event="alert.created",
            ),
            RoutingDecision(agency="KW-D", delivered=False, rule="no_agreement", reason="none"),
        ),
    )


def test_a_correlation_written_again_is_kept_once_and_the_routers_copy_is_not_one() -> None:
    """The correlator writes at least once: a repeat (its own found_at) changes nothing, nor does the router's
    intermediate copy (candidates set), even of a correlation not yet read."""
    desk = CorrelationDesk()
    assert desk.apply_correlated(found(1)) is True
    assert desk.apply_correlated(found(1, minutes=30)) is False
    assert desk.apply_correlated(found(1, candidates=["SA-C"])) is False
    assert desk.apply_correlated(found(2, candidates=["SA-C"])) is False
    expected = ([cid(1)], AT)
    assert expected == (list(desk.views), desk.views[cid(1)].found_at)


def test_whom_the_router_told_is_folded_in_whenever_its_decision_is_read() -> None:
    """Only the agencies delivered alert.correlated are notified, each at the first decision that told it; a
    decision read before its correlation waits for it; a second decision adds to the first."""
    desk = CorrelationDesk()
    desk.apply_decision(told(1, {"IQ-A", "SA-C"}, minutes=5))
    assert (len(desk), desk.waiting) == (0, 1)
    desk.apply_correlated(found(1))
    desk.apply_decision(told(1, {"SA-C", "KW-D"}, minutes=9))
    desk.apply_decision(told(1, {"IQ-A"}, minutes=2))
    view = desk.views[cid(1)]
    expected = (
        [("IQ-A", 2), ("KW-D", 9), ("SA-C", 5)],
        AT + timedelta(minutes=2),
        B_ALERT,
        0,
    )
    actual = (
        [(n.agency, (n.at - AT) // timedelta(minutes=1)) for n in view.notified],
        view.decided_at,
        view.decided_on,
        desk.waiting,
    )
    assert expected == actual


def test_a_correlation_decision_leaves_the_alerts_status_routing_and_waits_unchanged() -> None:
    """The decision names B_ALERT but is no version of it: B_ALERT's status, routing, pending acknowledgement,
    escalations owed and thread waits are exactly what its own routing made them (SA-C still owes its ack,
    JO-B and KW-D, told of the correlation, are no recipients)."""
    ledger = Ledger()
    ledger.apply_routed(routed_b(), partition=3)
    ledger.apply_correlated(found(1))
    late = AT + timedelta(hours=2)

    def seen() -> object:
        return copy.deepcopy(
            (
                ledger.status(B_ALERT, DESK),
                ledger.routing_of(B_ALERT, DESK),
                ledger.outstanding(None),
                ledger.due(late),
                ledger._waits,
                ledger.partition_of,
                ledger.resends,
                ledger.recipient(B_ALERT, "KW-D"),
            )
        )

    before = seen()
    ledger.apply_routed(told(1, {"JO-B", "KW-D"}, minutes=3), partition=7)
    assert before == seen()
    assert [n.agency for n in ledger.correlations.views[cid(1)].notified] == ["JO-B", "KW-D"]


def test_a_correlation_decision_read_first_does_not_stand_for_the_alerts_routing() -> None:
    """Read before the alert's own routing, the decision leaves the alert unknown, and the routing that follows
    is taken (not dropped as a routing read again)."""
    ledger = Ledger()
    ledger.apply_routed(told(1, {"KW-D"}))
    unknown = (ledger.status(B_ALERT, DESK)[0], ledger.routing_of(B_ALERT, DESK)[0], ledger.due(AT + timedelta(days=1)))
    ledger.apply_routed(routed_b())
    status, body = ledger.status(B_ALERT, DESK)
    expected: object = ((404, 404, []), 200, {"SA-C"}, None)
    assert expected == (unknown, status, set(body["recipients"]), ledger.routing[B_ALERT].correlation_id)


def test_pages_are_newest_first_and_a_cursor_continues_without_overlap() -> None:
    """Five correlations (two found at the same time) in pages of two: 2, 2, 1, newest first, ties by id,
    every one once; a cursor names a position, so it still works once its item is gone."""
    desk = CorrelationDesk()
    for n, minutes in [(1, 0), (2, 10), (3, 10), (4, 20), (5, 5)]:
        desk.apply_correlated(found(n, minutes=minutes))
    pages, before = [], None
    while True:
        views, after = desk.page(2, key_of(before) if before else None)
        pages.append([v.correlation_id for v in views])
        if after is None:
            break
        before = after
    expected = [[cid(4), cid(3)], [cid(2), cid(5)], [cid(1)]]
    assert expected == pages
    small = CorrelationDesk(CorrelationLimits(correlations=5))
    for n, minutes in [(1, 0), (2, 10), (3, 10), (4, 20), (5, 5)]:
        small.apply_correlated(found(n, minutes=minutes))
    _, cursor = small.page(2)
    assert cursor is not None
    small.apply_correlated(found(6, minutes=30))  # evicts the oldest; the cursor's own item stays irrelevant
    assert [v.correlation_id for v in small.page(2, key_of(cursor))[0]] == [cid(2), cid(5)]


def test_the_agency_filter_means_either_originator_or_a_notified_agency_and_kind_filters_too() -> None:
    """?agency= matches a's origin, b's origin or an agency told; ?kind= the kind; together, both."""
    desk = CorrelationDesk()
    desk.apply_correlated(found(1, a="IQ-A", b="JO-B", kind="phone"))
    desk.apply_correlated(found(2, a="SA-C", b="IQ-A", kind="subject_name", minutes=1))
    desk.apply_correlated(found(3, a="SA-C", b="JO-B", kind="phone", minutes=2))
    desk.apply_decision(told(3, {"KW-D"}))

    def ids(agency: str | None = None, kind: str | None = None) -> list[str]:
        return [v.correlation_id for v in desk.page(50, None, agency, kind)[0]]

    expected = {
        "IQ-A": [cid(2), cid(1)],
        "JO-B": [cid(3), cid(1)],
        "KW-D": [cid(3)],
        "EG-E": [],
        "phone": [cid(3), cid(1)],
        "IQ-A phone": [cid(1)],
    }
    actual = {
        "IQ-A": ids("IQ-A"),
        "JO-B": ids("JO-B"),
        "KW-D": ids("KW-D"),
        "EG-E": ids("EG-E"),
        "phone": ids(kind="phone"),
        "IQ-A phone": ids("IQ-A", "phone"),
    }
    assert expected == actual


def test_the_view_is_bounded_oldest_first_and_so_are_decisions_waiting() -> None:
    """Past its limit the desk lets the oldest correlation (by found_at) go; decisions waiting for a correlation
    not read are bounded too, the oldest dropped."""
    desk = CorrelationDesk(CorrelationLimits(correlations=3, early=2))
    for n, minutes in [(1, 5), (2, 0), (3, 10), (4, 15)]:
        desk.apply_correlated(found(n, minutes=minutes))
    for n in (10, 11, 12):
        desk.apply_decision(told(n, {"KW-D"}))
    desk.apply_correlated(found(10, minutes=20))
    desk.apply_correlated(found(12, minutes=25))
    # 2, 1 and 3 left in the order they were found; 10's decision was dropped (the oldest waiting), 12's
    # was folded in, 11's still waits.
    expected: object = ({cid(4), cid(10), cid(12)}, [], ["KW-D"], 3, 1)
    actual = (
        set(desk.views),
        [n.agency for n in desk.views[cid(10)].notified],
        [n.agency for n in desk.views[cid(12)].notified],
        desk.evicted,
        desk.waiting,
    )
    assert expected == actual


def test_only_operators_see_correlations() -> None:
    """Every agency, the originators and an agency told included, is refused the list and each correlation."""
    ledger = Ledger()
    ledger.apply_correlated(found(1))
    ledger.apply_routed(told(1, {"SA-C"}))
    for agency in ("IQ-A", "JO-B", "SA-C", "KW-D"):
        viewer = Viewer("agency", agency)
        page = ledger.correlation_page(viewer, 50, None, None, None)
        one = ledger.correlation(cid(1), viewer)
        assert (page[0], page[1]["error"], one[0], one[1]["error"]) == (403, "forbidden", 403, "forbidden")
    status, body = ledger.correlation(cid(1), DESK)
    # As the API answers it (JSON): the agency told and when, and which fields of b carry the value.
    assert msgspec.json.decode(msgspec.json.encode((status, body["notified"], body["b"]["fields"]))) == [
        200,
        [{"agency": "SA-C", "at": "2026-12-01T09:01:00Z"}],
        ["summary", "indicators"],
    ]
    assert ledger.correlation(cid(2), DESK)[0] == 404


def test_the_desks_views_are_out_of_the_collectors_reach() -> None:
    """Decoded as the tracker reads them, a kept correlation and its notified agencies are untracked by the
    collector, as the ledger's other state is (state.py says why)."""
    codec = Codec.from_directory()
    desk = CorrelationDesk()
    desk.apply_correlated(codec.decode(codec.encode(found(1)), AlertCorrelated))
    desk.apply_decision(codec.decode(codec.encode(told(1, {"SA-C"})), AlertRouted))
    gc.collect()
    view = desk.views[cid(1)]
    parts = [view, view.a, view.b, view.a.fields, view.notified, *view.notified]
    assert [p for p in parts if gc.is_tracked(p)] == []
    assert (view.a.fields, view.notified[0].agency) == (("indicators",), "SA-C")  # the walk reached them
