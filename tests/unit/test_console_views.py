"""What the console's pages show, from the tracker's answers (views.py), and how the templates render
other people's text: escaped, with its direction, never as markup."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from services.common.records import DeliveryAttempted, EndpointChanged
from services.console.pages import templates
from services.console.views import Content, alert_page, endpoint_rows, now_rows
from services.tracker.webhooks import WebhookTally

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def recipient(
    agency: str, state: str = "delivered", due_min: int | None = 30, level: int = 0, **extra: Any
) -> dict[str, Any]:
    return {
        "agency": agency,
        "state": state,
        "channels": ["kafka", "webhook"],
        "ack_due": (T0 + timedelta(minutes=due_min)).isoformat() if due_min is not None else None,
        "escalation_level": level,
        "webhook": {"status": "retrying", "attempts": 2},
        "escalations": [],
        **extra,
    }


def alert(alert_id: str, *recipients: dict[str, Any], level: int = 0, origin: str = "IQ-NAB") -> dict[str, Any]:
    return {
        "alert_id": alert_id,
        "origin": origin,
        "msg_type": "Alert",
        "severity": "Severe",
        "urgency": "Immediate",
        "routed_at": T0.isoformat(),
        "registry_version": 3,
        "escalation_level": level,
        "overdue": 0,
        "recipients": {r["agency"]: r for r in recipients},
    }


def content(alert_id: str, title: str = "Convoy", priority: int = 2, references: tuple[str, ...] = ()) -> Content:
    return Content(
        alert_id=alert_id,
        origin="IQ-NAB",
        msg_type="Update" if references else "Alert",
        title=title,
        summary="",
        category="Security",
        tlp="TLP:AMBER",
        priority=priority,
        severity="Severe",
        urgency="Immediate",
        submitted_at=T0,
        references=references,
    )


def test_now_puts_escalated_first_then_priority_then_the_soonest_deadline() -> None:
    rows = now_rows(
        [
            alert("a", recipient("JO-GID", due_min=5)),
            alert("b", recipient("JO-GID", due_min=50), level=2),
            alert("c", recipient("JO-GID", due_min=1)),
            alert("d", recipient("JO-GID", due_min=2)),
        ],
        {"a": content("a", priority=1), "c": content("c", priority=3), "d": content("d", priority=1)},
    )
    assert [r.alert_id for r in rows] == ["b", "d", "a", "c"]


def test_a_row_lists_awaited_recipients_first_and_no_deadline_once_acknowledged() -> None:
    (row,) = now_rows(
        [
            alert(
                "a",
                recipient("AE-SSD", state="acknowledged", due_min=1, response="actioned"),
                recipient("JO-GID", due_min=20, level=1),
                recipient("SA-PSS", due_min=10),
            )
        ],
        {},
    )
    assert [c.agency for c in row.cells] == ["SA-PSS", "JO-GID", "AE-SSD"]
    acked = row.cells[-1]
    assert acked.ack_due is None and not acked.awaited and acked.response == "actioned"
    assert row.cells[1].escalation_level == 1 and row.cells[1].webhook == "retrying"
    assert row.content is None and row.priority is None


def test_the_alert_page_orders_decisions_sent_first_and_lists_the_thread() -> None:
    first = dataclasses.replace(content("a"), submitted_at=T0 - timedelta(minutes=5))
    update = content("b", title="Convoy moved", references=("a",))
    page = alert_page(
        "b",
        alert("b", recipient("JO-GID")),
        {
            "registry_version": 4,
            "decisions": [
                {"agency": "AE-SSD", "delivered": False, "rule": "no_agreement", "reason": "none"},
                {"agency": "JO-GID", "delivered": True, "rule": "agreement", "reason": "ok", "channels": ["kafka"]},
            ],
            "resends": [{}],
        },
        {"a": first, "b": update},
        [update, first],
        [],
    )
    assert [d.agency for d in page.decisions] == ["JO-GID", "AE-SSD"]
    assert [v.alert_id for v in page.versions] == ["a", "b"]  # oldest first, whatever order they came in
    assert page.content is update and page.registry_version == 4 and page.resends == 1
    assert update.thread_id == "a" and first.thread_id == "a"


def test_hostile_text_is_escaped_and_keeps_its_direction() -> None:
    title = '<img src=x onerror="alert(1)">قافلة متجهة'
    rows = now_rows([alert("a", recipient("JO-GID", response="<script>x</script>"))], {"a": content("a", title=title)})
    html = templates().get_template("_now.html").render(rows=rows, stale=False, server_now=T0.isoformat())
    assert "<img" not in html and "<script>x" not in html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;قافلة متجهة" in html
    assert '<bdi dir="auto" class="title">' in html


def test_endpoints_show_the_state_in_force_for_the_url_in_force() -> None:
    class Hook:
        def __init__(self, url: str) -> None:
            self.url = url

    class Entry:
        def __init__(self, url: str | None, active: bool = True) -> None:
            self.webhook = Hook(url) if url else None
            self.active = active
            self.name = "x"

    class Reg:
        agencies = {"JO-GID": Entry("https://jo/hook"), "SA-PSS": Entry("https://sa/new"), "KW-X": Entry(None)}

    moved = EndpointChanged(
        agency="SA-PSS", url="https://sa/old", state="disabled", reason="410", changed_at=T0, changed_by="dispatcher"
    )
    failing = EndpointChanged(
        agency="JO-GID", url="https://jo/hook", state="failing", reason="breaker", changed_at=T0, changed_by="d"
    )
    rows = endpoint_rows(Reg(), {"SA-PSS": moved, "JO-GID": failing}, {"JO-GID": {"dead": 3}})  # type: ignore[arg-type]
    assert [(r.agency, r.state, r.dead) for r in rows] == [("JO-GID", "failing", 3), ("SA-PSS", "active", 0)]
    assert endpoint_rows(None, {}, {}) == []


def attempt(outcome: str, n: int, error: str | None = None, code: int | None = None) -> DeliveryAttempted:
    return DeliveryAttempted(
        webhook_id="w",
        alert_id="a",
        agency="JO-GID",
        attempt=n,
        outcome=outcome,
        status_code=code,  # type: ignore[arg-type]
        latency_ms=1.0,
        error=error,
        attempted_at=T0,
    )


def test_the_tally_follows_rows_as_they_move() -> None:
    tally = WebhookTally()
    tally.moved("JO-GID", "pending", "retrying", attempt("retrying", 1, code=503))
    tally.moved("JO-GID", "retrying", "retrying", attempt("retrying", 2, error="timeout"))
    tally.moved("JO-GID", "retrying", "dead", attempt("dead", 3, error="timeout"))
    tally.moved("JO-GID", "pending", "delivered", attempt("delivered", 1))
    assert tally.of("JO-GID") | {"last_failure_at": None} == {
        "dead": 1,
        "retrying": 0,
        "delivered": 1,
        "last_failure": "timeout",
        "last_failure_at": None,
    }
    tally.moved("JO-GID", "dead", "delivered", attempt("delivered", 1))  # replayed
    assert tally.of("JO-GID")["dead"] == 0 and tally.of("JO-GID")["delivered"] == 2
    assert tally.of("KW-X") == {"dead": 0, "retrying": 0, "delivered": 0, "last_failure": None, "last_failure_at": None}
