"""The tracker's per-recipient state, folded from records, and who may see it. No I/O."""

from __future__ import annotations

from datetime import UTC, datetime

from services.common.records import AckSubmitted, AlertRouted, DeliveryAttempted, RoutingDecision
from services.tracker.state import Ledger, Viewer

AT = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def routed(alert_id: str = "a1") -> AlertRouted:
    return AlertRouted(
        alert_id=alert_id,
        origin="IQ-A",
        msg_type="Alert",
        severity="Severe",
        urgency="Immediate",
        routed_at=AT,
        registry_version=3,
        decisions=[
            RoutingDecision(agency="IQ-A", delivered=False, rule="originator", reason="submitted"),
            RoutingDecision(
                agency="JO-B",
                delivered=True,
                rule="shared",
                reason="x",
                agreement_id="G",
                channels=["kafka", "webhook"],
            ),
            RoutingDecision(
                agency="KW-C", delivered=True, rule="shared", reason="x", agreement_id="G", channels=["kafka"]
            ),
            RoutingDecision(agency="SA-D", delivered=False, rule="no_agreement", reason="none"),
        ],
    )


def attempt(outcome: str, n: int, agency: str = "JO-B", alert_id: str = "a1") -> DeliveryAttempted:
    return DeliveryAttempted(
        webhook_id="msg_1",
        alert_id=alert_id,
        agency=agency,
        attempt=n,
        outcome=outcome,  # type: ignore[arg-type]
        status_code=204 if outcome == "delivered" else 500,
        latency_ms=3.0,
        attempted_at=AT,
    )


def ack(agency: str = "JO-B", alert_id: str = "a1") -> AckSubmitted:
    return AckSubmitted(
        ack_id="k", alert_id=alert_id, agency=agency, response="actioned", channel="http", submitted_at=AT
    )


def test_states_follow_routing_delivery_and_ack() -> None:
    """Recipients are delivered once their topic copy exists; the webhook is tracked beside; an ack wins."""
    ledger = Ledger()
    ledger.apply_routed(routed())
    ledger.apply_attempt(attempt("retrying", 1))
    _, body = ledger.status("a1", Viewer("operator", "desk"))
    assert set(body["recipients"]) == {"JO-B", "KW-C"}
    assert body["recipients"]["JO-B"]["webhook"]["status"] == "retrying"
    ledger.apply_attempt(attempt("delivered", 2))
    assert ledger.apply_ack(ack()) is True
    _, body = ledger.status("a1", Viewer("operator", "desk"))
    jo = body["recipients"]["JO-B"]
    assert (jo["state"], jo["response"], jo["webhook"]["status"], jo["webhook"]["attempts"]) == (
        "acknowledged",
        "actioned",
        "delivered",
        2,
    )
    assert body["recipients"]["KW-C"]["state"] == "delivered"


def test_repeated_and_foreign_acks_change_nothing() -> None:
    """A second ack, or an ack from a non-recipient, is reported as no change."""
    ledger = Ledger()
    ledger.apply_routed(routed())
    assert ledger.apply_ack(ack()) is True
    assert ledger.apply_ack(ack()) is False
    assert ledger.apply_ack(ack(agency="SA-D")) is False


def test_records_arriving_before_the_routing_wait_for_it() -> None:
    """A delivery event read before its routing decision is applied once the decision arrives."""
    ledger = Ledger()
    ledger.apply_attempt(attempt("delivered", 1))
    ledger.apply_routed(routed())
    _, body = ledger.status("a1", Viewer("agency", "IQ-A"))
    assert body["recipients"]["JO-B"]["webhook"]["status"] == "delivered"


def test_visibility() -> None:
    """Originator and operators see all; a recipient sees only itself; others are refused; routing is private."""
    ledger = Ledger()
    ledger.apply_routed(routed())
    assert set(ledger.status("a1", Viewer("agency", "IQ-A"))[1]["recipients"]) == {"JO-B", "KW-C"}
    status, body = ledger.status("a1", Viewer("agency", "KW-C"))
    assert (status, set(body["recipients"])) == (200, {"KW-C"})
    assert "registry_version" not in body
    assert ledger.status("a1", Viewer("agency", "SA-D"))[0] == 403
    assert ledger.status("nope", Viewer("operator", "desk"))[0] == 404
    assert ledger.routing_of("a1", Viewer("agency", "JO-B"))[0] == 403
    assert ledger.routing_of("a1", Viewer("operator", "desk"))[0] == 200
    assert ledger.recipient("a1", "SA-D")[1]["recipient"] is False
