"""The operators' list of alerts (Ledger.alert_list): newest first, what each awaits, the filters, the limit, the
refusal of agencies, and the change counter a poller asks with. No I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from services.common.records import AckSubmitted, AlertRouted, EscalationRaised, RoutingDecision
from services.tracker.state import ENDED, Ledger, Viewer
from services.tracker.waits import in_state, waits_of

AT = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
DESK = Viewer("operator", "desk")


def routed(
    alert_id: str,
    minutes: int,
    *,
    origin: str = "IQ-A",
    due: dict[str, int | None] | None = None,
    msg_type: str = "Alert",
    references: tuple[str, ...] = (),
) -> AlertRouted:
    """An alert routed `minutes` after AT to the agencies of `due`, each owing an ack that many minutes later
    (None: nothing to acknowledge)."""
    routed_at = AT + timedelta(minutes=minutes)
    return AlertRouted(
        alert_id=alert_id,
        origin=origin,
        msg_type=msg_type,
        severity="Severe",
        urgency="Expected",
        routed_at=routed_at,
        registry_version=4,
        references=references,
        decisions=tuple(
            RoutingDecision(
                agency=agency,
                delivered=True,
                rule="shared",
                reason="agreement G",
                agreement_id="G",
                channels=("kafka",),
                ack_due=routed_at + timedelta(minutes=after) if after is not None else None,
            )
            for agency, after in (due or {}).items()
        ),
    )


def ack(alert_id: str, agency: str) -> AckSubmitted:
    return AckSubmitted(ack_id=f"k-{alert_id}", alert_id=alert_id, agency=agency, channel="http", submitted_at=AT)


def escalation(alert_id: str, agency: str, level: int = 1) -> EscalationRaised:
    return EscalationRaised(
        alert_id=alert_id,
        agency=agency,
        origin="IQ-A",
        kind="ack_deadline",
        level=level,
        reason="ack_overdue",
        deadline=AT,
        raised_at=AT,
    )


def desk_ledger() -> Ledger:
    """a1 settled (acked), a2 open and not yet due, a3 overdue and escalated, a4 from SY-S with nothing owed,
    a5 an Update of a2 (its thread, so KW-C's wait on a2 is superseded by its own on a5) overdue but not
    escalated; routed in that order, a minute apart."""
    ledger = Ledger()
    ledger.apply_routed(routed("a1", 0, due={"JO-B": 60}))
    ledger.apply_ack(ack("a1", "JO-B"))
    ledger.apply_routed(routed("a2", 1, due={"JO-B": 120, "KW-C": 120}))
    ledger.apply_routed(routed("a3", 2, due={"JO-B": 10, "KW-C": None}))
    ledger.apply_escalation(escalation("a3", "JO-B"))
    ledger.apply_routed(routed("a4", 3, origin="SY-S", due={"JO-B": None}))
    ledger.apply_routed(routed("a5", 4, due={"KW-C": 5}, msg_type="Update", references=("a2",)))
    return ledger


NOW = AT + timedelta(minutes=30)


def listed(ledger: Ledger, **query: Any) -> list[tuple[str, int, int, int, str]]:
    status, body = ledger.alert_list(DESK, now=NOW, **query)
    assert status == 200, body
    return [(a["alert_id"], a["awaiting"], a["overdue"], a["escalation_level"], a["thread_id"]) for a in body["alerts"]]


def test_every_alert_newest_first_with_what_it_awaits() -> None:
    """Newest routed_at first; awaiting counts rows with a deadline not ended, overdue those past it at `now`."""
    assert listed(desk_ledger()) == [
        ("a5", 1, 1, 0, "a2"),
        ("a4", 0, 0, 0, "a4"),
        ("a3", 1, 1, 1, "a3"),
        ("a2", 1, 0, 0, "a2"),  # KW-C's wait moved to a5
        ("a1", 0, 0, 0, "a1"),
    ]


def test_each_item_is_the_operators_status_plus_the_counts() -> None:
    """An item is the alert's status as an operator sees it, recipients and all, with the four fields added."""
    ledger = desk_ledger()
    _, body = ledger.alert_list(DESK, now=NOW, limit=1, origin="SY-S")
    _, status = ledger.status("a4", DESK)
    assert body["alerts"] == [{**status, "awaiting": 0, "overdue": 0, "escalation_level": 0, "thread_id": "a4"}]


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("open", ["a5", "a3", "a2"]),
        ("overdue", ["a5", "a3"]),
        ("escalated", ["a3"]),
        ("settled", ["a4", "a1"]),
    ],
)
def test_the_state_filter(state: str, expected: list[str]) -> None:
    """open: awaits an ack; overdue: one past its deadline; escalated: an awaiting row was escalated; settled: none."""
    assert [a[0] for a in listed(desk_ledger(), state=state)] == expected


def test_since_origin_and_limit_narrow_the_list() -> None:
    """since keeps routed_at >= it (inclusive), origin one originator's, limit the newest that many."""
    ledger = desk_ledger()
    assert [a[0] for a in listed(ledger, since=AT + timedelta(minutes=2))] == ["a5", "a4", "a3"]
    assert [a[0] for a in listed(ledger, origin="SY-S")] == ["a4"]
    assert [a[0] for a in listed(ledger, origin="IQ-A", limit=2)] == ["a5", "a3"]
    assert [a[0] for a in listed(ledger, state="open", since=AT + timedelta(minutes=2), limit=1)] == ["a5"]


def test_an_acknowledgement_settles_and_a_later_now_makes_overdue() -> None:
    """The counts follow the ledger and the clock: a2 overdue past its deadline; acknowledged, settled."""
    ledger = desk_ledger()
    later = AT + timedelta(hours=3)
    _, body = ledger.alert_list(DESK, now=later, state="overdue")
    assert [a["alert_id"] for a in body["alerts"]] == ["a5", "a3", "a2"]
    ledger.apply_ack(ack("a2", "JO-B"))
    _, body = ledger.alert_list(DESK, now=later, state="settled")
    assert [a["alert_id"] for a in body["alerts"]] == ["a4", "a2", "a1"]


def test_an_agency_is_refused_and_bad_arguments_are_400() -> None:
    """Agencies get 403 forbidden (even the originator); an unknown state or a limit out of 1..1000 is 400."""
    ledger = desk_ledger()
    answers = [
        ledger.alert_list(Viewer("agency", "IQ-A"), now=NOW),
        ledger.alert_list(DESK, now=NOW, state="closed"),
        ledger.alert_list(DESK, now=NOW, limit=0),
        ledger.alert_list(DESK, now=NOW, limit=1001),
    ]
    assert [(status, body["error"]) for status, body in answers] == [
        (403, "forbidden"),
        (400, "bad_request"),
        (400, "bad_request"),
        (400, "bad_request"),
    ]
    assert len(ledger.alert_list(DESK, now=NOW, limit=1000)[1]["alerts"]) == 5


def test_the_default_limit_is_100() -> None:
    """Without a limit, the newest 100."""
    ledger = Ledger()
    for n in range(120):
        ledger.apply_routed(routed(f"x{n:03}", n))
    _, body = ledger.alert_list(DESK, now=NOW)
    assert [a["alert_id"] for a in body["alerts"]] == [f"x{n:03}" for n in range(119, 19, -1)]


def test_the_version_counts_changes_and_only_changes() -> None:
    """Each apply_* that changes something adds one; a repeat, a foreign ack or a routing read twice adds none."""
    ledger = Ledger()
    steps = [
        lambda: ledger.apply_routed(routed("a1", 0, due={"JO-B": 10})),
        lambda: ledger.apply_routed(routed("a1", 0, due={"JO-B": 10})),  # routed again: the first stands
        lambda: ledger.apply_ack(ack("a1", "JO-B")),
        lambda: ledger.apply_ack(ack("a1", "JO-B")),  # a repeat
        lambda: ledger.apply_ack(ack("a1", "SA-D")),  # not a recipient
        lambda: ledger.apply_escalation(escalation("a1", "JO-B")),
        lambda: ledger.apply_escalation(escalation("a1", "JO-B")),  # the same escalation twice
        lambda: ledger.apply_ack(ack("a9", "JO-B")),  # early: nothing to show until a9 is routed
        lambda: ledger.apply_routed(routed("a9", 1, due={"JO-B": 10})),  # a9 and its early ack
    ]
    versions = []
    for step in steps:
        step()
        versions.append(ledger.version)
    assert versions == [1, 1, 2, 2, 2, 3, 3, 3, 5]


def _walked(ledger: Ledger, state: str, now: datetime) -> list[str]:
    """The ids a walk of every alert finds in `state` (what the index of open alerts must agree with)."""
    return sorted(
        (a.alert_id for a in ledger.alerts.values() if in_state(waits_of(a.recipients.values(), now, ENDED), state)),
        key=lambda i: (ledger.alerts[i].routed_at, i),
        reverse=True,
    )


@pytest.mark.parametrize("state", ["open", "overdue", "escalated"])
def test_the_awaiting_states_come_from_the_index_of_open_alerts_and_agree_with_a_walk(state: str) -> None:
    ledger = desk_ledger()
    for now in (AT, AT + timedelta(minutes=30), AT + timedelta(hours=5)):
        _, body = ledger.alert_list(DESK, now=now, state=state, limit=1000)
        assert [a["alert_id"] for a in body["alerts"]] == _walked(ledger, state, now)


def test_a_settled_alert_leaves_the_index_and_a_resend_puts_its_new_wait_back() -> None:
    ledger = desk_ledger()
    ledger.alert_list(DESK, now=AT, state="open")
    assert "a1" not in ledger._open and "a4" not in ledger._open  # acked; nothing owed
    assert {"a2", "a3"} <= set(ledger._open)
    ledger.apply_ack(ack("a3", "JO-B"))
    ledger.alert_list(DESK, now=AT, state="open")
    assert "a3" not in ledger._open
    # A resend gives SY-S a copy of a1 that it owes an acknowledgement for: a1 awaits again.
    resent = routed("a1", 0, due={"SY-S": 60})
    ledger.apply_routed(msgspec.structs.replace(resent, request_id="r-1"))
    _, body = ledger.alert_list(DESK, now=AT, state="open", limit=1000)
    assert "a1" in [a["alert_id"] for a in body["alerts"]]
