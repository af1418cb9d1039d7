"""Retention in the tracker's ledger: settled alerts older than the retention leave every structure, and their
status, routing and recipient queries answer from the summary by the same visibility rules. No I/O."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import msgspec

from services.common.codec import Codec
from services.common.records import AckSubmitted, AlertRetired, AlertRouted, OnwardStep, RoutingDecision
from services.tracker.escalation import escalation_for
from services.tracker.retention import pack, unpack
from services.tracker.state import Ledger, Viewer, unknown
from tests.unit.test_tracker_state import AT, attempt, routed

RETENTION = timedelta(days=7)
DUE = AT + timedelta(hours=1)
OPERATOR = Viewer("operator", "desk")


def awaited(alert_id: str = "a1") -> AlertRouted:
    """The sample decision with an ack deadline on both recipients' rows."""
    base = routed(alert_id)
    decisions = tuple(
        msgspec.structs.replace(d, ack_due=DUE, event="alert.created") if d.delivered else d for d in base.decisions
    )
    return msgspec.structs.replace(base, decisions=decisions)


def ack(agency: str, alert_id: str = "a1", note: str | None = "source: a named informant") -> AckSubmitted:
    return AckSubmitted(
        ack_id=f"k-{agency}",
        alert_id=alert_id,
        agency=agency,
        response="actioned",
        note=note,
        channel="http",
        submitted_at=AT + timedelta(minutes=5),
    )


def settled_ledger() -> Ledger:
    """One alert, both recipients acknowledged, the webhook copy delivered."""
    ledger = Ledger(retention=RETENTION)
    ledger.apply_routed(awaited())
    ledger.apply_attempt(attempt("delivered", 1))
    ledger.apply_ack(ack("JO-B"))
    ledger.apply_ack(ack("KW-C"))
    return ledger


def test_a_settled_alert_stays_until_the_retention_then_leaves_every_structure() -> None:
    """Nothing leaves before routed_at + retention; at it, the alert leaves every structure and its summary stays."""
    ledger = settled_ledger()
    before = ledger.sizes()

    assert ledger.retire(AT + RETENTION - timedelta(seconds=1)) == []
    assert before == ledger.sizes()
    summaries = ledger.retire(AT + RETENTION)

    assert [s.alert_id for s in summaries] == ["a1"]
    assert 1 == before["alerts"] == before["routing"] == before["partition_of"]
    expected = {"alerts": 0, "routing": 0, "resends": 0, "partition_of": 0, "waits": 0, "open": 0, "onward": 0}
    assert expected == {k: v for k, v in ledger.sizes().items() if k in expected}
    assert ledger.sizes()["retired"] == 1
    assert ledger.retire(AT + 2 * RETENTION) == []  # once


def test_the_summary_keeps_final_states_and_not_the_notes() -> None:
    """Each recipient's final state, response and webhook outcome are kept; the acknowledgement's note is not."""
    [summary] = settled_ledger().retire(AT + RETENTION)

    rows = {r.agency: r for r in summary.recipients}
    assert (rows["JO-B"].state, rows["JO-B"].response, rows["JO-B"].webhook) == (
        "acknowledged",
        "actioned",
        "delivered",
    )
    assert (AT + timedelta(minutes=5), None) == (rows["KW-C"].acknowledged_at, rows["KW-C"].webhook)
    assert "informant" not in msgspec.json.encode(summary).decode()
    codec = Codec.from_directory()
    assert summary == codec.decode(codec.encode(summary), AlertRetired)


def test_a_retired_alert_answers_from_its_summary_by_the_same_rules() -> None:
    """Operators and the originator see every row, a recipient only its own, a stranger the unknown alert's 404."""
    ledger = settled_ledger()
    _, held = ledger.status("a1", OPERATOR)
    ledger.retire(AT + RETENTION)

    status, body = ledger.status("a1", OPERATOR)
    assert status == 200
    assert held["recipients"].keys() == body["recipients"].keys()
    assert body["recipients"]["KW-C"]["state"] == "acknowledged"
    assert (200, body) == ledger.status("a1", Viewer("agency", "IQ-A"))
    status, own = ledger.status("a1", Viewer("agency", "JO-B"))
    assert (status, list(own["recipients"])) == (200, ["JO-B"])
    assert "registry_version" not in own and "thread_id" not in own
    assert unknown("a1") == ledger.status("a1", Viewer("agency", "SA-D"))


def test_a_retired_alerts_routing_and_recipient_queries() -> None:
    """Routing: the summary to the originator and operators, 403 to a recipient, 404 to anyone else; recipient()
    still answers for a row it holds, so an ack for it is not refused as for an unknown alert."""
    ledger = settled_ledger()
    ledger.retire(AT + RETENTION)

    assert ledger.routing_of("a1", Viewer("agency", "IQ-A"))[0] == 200
    assert ledger.routing_of("a1", Viewer("agency", "KW-C"))[0] == 403
    assert unknown("a1") == ledger.routing_of("a1", Viewer("agency", "SA-D"))
    assert (lambda a: (a[0], a[1]["state"]))(ledger.recipient("a1", "KW-C")) == (200, "acknowledged")
    assert unknown("a1") == ledger.recipient("a1", "SA-D")


def test_an_awaited_ack_holds_the_alert_until_it_lapses_to_the_duty_desk() -> None:
    """A recipient that owes an ack holds the alert past the retention; once the duty desk is called it lapses."""
    ledger = Ledger(retention=RETENTION)
    ledger.apply_routed(awaited())
    ledger.apply_attempt(attempt("delivered", 1))
    ledger.apply_ack(ack("JO-B"))
    assert ledger.retire(AT + RETENTION) == []

    for due in ledger.due(AT + RETENTION):
        ledger.apply_escalation(escalation_for(due, AT + RETENTION))
    assert ledger.retire(AT + RETENTION) == []  # reminded only (level 1)
    for due in ledger.due(AT + RETENTION):
        ledger.apply_escalation(escalation_for(due, AT + RETENTION))
    [summary] = ledger.retire(AT + RETENTION)

    assert {r.agency: (r.state, r.escalation_level) for r in summary.recipients if r.state != "acknowledged"} == {
        "KW-C": ("delivered", 2)
    }


def test_a_webhook_still_retrying_holds_the_alert() -> None:
    """A copy the dispatcher still retries holds the alert; its outcome lets it go."""
    ledger = Ledger(retention=RETENTION)
    ledger.apply_routed(routed())  # no deadline: nothing to acknowledge
    ledger.apply_attempt(attempt("retrying", 1))
    assert ledger.retire(AT + RETENTION) == []

    ledger.apply_attempt(attempt("dead", 2))
    assert [s.alert_id for s in ledger.retire(AT + RETENTION)] == ["a1"]


def test_records_about_a_retired_alert_change_nothing_and_are_counted() -> None:
    """A late ack or delivery, and a replay of its routing, neither rebuild it nor wait in the early buffer."""
    ledger = settled_ledger()
    ledger.retire(AT + RETENTION)
    version = ledger.version

    assert not ledger.apply_ack(ack("JO-B"))
    ledger.apply_attempt(attempt("delivered", 2))
    ledger.apply_routed(awaited())

    assert (0, 0, version) == (ledger.sizes()["alerts"], ledger.sizes()["early"], ledger.version)
    assert ledger.dropped["retired"] == 3


def rebuilt(summary: AlertRetired) -> Ledger:
    """A restarted tracker: a new ledger given the summary first, then a1 and a2 routed and a1's webhook
    delivered, read again from the topics' beginning."""
    new = Ledger(retention=RETENTION)
    new.apply_retired(summary)
    for alert_id in ("a1", "a2"):
        new.apply_routed(awaited(alert_id))
    new.apply_attempt(attempt("delivered", 1))
    return new


def test_a_rebuild_reads_the_summaries_first_and_skips_the_retired_alert() -> None:
    """A new ledger given the summary, then the topics from their beginning, holds only what was not retired."""
    old = settled_ledger()
    old.apply_routed(awaited("a2"))
    [summary] = old.retire(AT + RETENTION)

    new = rebuilt(summary)
    new.apply_ack(ack("JO-B"))

    assert list(new.alerts) == ["a2"]
    assert old.status("a1", OPERATOR) == new.status("a1", OPERATOR)


def test_the_webhook_tally_is_the_same_after_retiring_as_after_a_rebuild() -> None:
    """A retired alert's delivered webhook leaves the endpoints page's counts at once, as a restarted tracker
    (which skips retired alerts) would count them; the held alert's webhook still counts."""
    old = settled_ledger()
    old.apply_routed(awaited("a2"))
    old.apply_attempt(attempt("dead", 5, alert_id="a2"))
    assert old.webhook_tally()["agencies"]["JO-B"]["delivered"] == 1
    [summary] = old.retire(AT + RETENTION)

    new = rebuilt(summary)
    new.apply_attempt(attempt("dead", 5, alert_id="a2"))

    counts = {k: old.webhook_tally()["agencies"]["JO-B"][k] for k in ("dead", "retrying", "delivered")}
    assert counts == {"dead": 1, "retrying": 0, "delivered": 0}
    assert counts == {k: new.webhook_tally()["agencies"]["JO-B"][k] for k in ("dead", "retrying", "delivered")}


def test_a_summary_read_drops_the_alert_another_replica_retired() -> None:
    """A summary read while the alert is held (another replica retired it first) replaces its state."""
    ledger = settled_ledger()
    [summary] = settled_ledger().retire(AT + RETENTION)

    ledger.apply_retired(summary)

    assert (ledger.sizes()["alerts"], ledger.sizes()["routing"], ledger.sizes()["retired"]) == (0, 0, 1)


def test_a_later_version_of_a_retired_alerts_thread_is_tracked() -> None:
    """An Update of a thread whose first version was retired starts its own waits, and a Cancel ends them."""
    ledger = settled_ledger()
    ledger.retire(AT + RETENTION)
    later = AT + RETENTION + timedelta(hours=1)

    update = msgspec.structs.replace(awaited("a2"), msg_type="Update", references=("a1",), routed_at=later)
    ledger.apply_routed(update)
    cancel = msgspec.structs.replace(
        routed("a3"),
        msg_type="Cancel",
        references=("a1",),
        routed_at=later,
        decisions=tuple(
            RoutingDecision(agency=a, delivered=True, rule="shared", reason="x", channels=("kafka",))
            for a in ("JO-B", "KW-C")
        ),
    )
    ledger.apply_routed(cancel)

    _, body = ledger.status("a2", OPERATOR)
    assert {"cancelled"} == {r["state"] for r in body["recipients"].values()}
    assert ledger.recipient("a2", "JO-B")[1]["thread_id"] == "a1"


def test_without_a_retention_nothing_is_retired() -> None:
    """A ledger made without a retention (the tests' and tools' default) keeps everything."""
    ledger = settled_ledger()
    ledger.retention = None

    assert ledger.retire(AT + 100 * RETENTION) == []
    assert ledger.sizes()["alerts"] == 1


def test_a_packed_summary_reads_back_whole_and_small() -> None:
    """pack() keeps every field (a word it does not number too) in a few hundred bytes for eight recipients."""
    [summary] = settled_ledger().retire(AT + RETENTION)
    rows = tuple(
        msgspec.structs.replace(summary.recipients[0], agency=f"A{n}-GID", event="alert.someday" if n else None)
        for n in range(8)
    )
    wide = msgspec.structs.replace(summary, recipients=rows, thread_id="t-1")

    assert (summary, wide) == (unpack(pack(summary)), unpack(pack(wide)))
    assert len(pack(wide)) < 400 < len(msgspec.json.encode(wide))


def test_onward_requests_leave_with_their_threads_last_alert_once_over() -> None:
    """A refused request of a thread whose alerts are all retired leaves; one still awaiting the originator stays."""
    ledger = settled_ledger()
    for request_id, state in (("r-over", "refused"), ("r-open", "requested")):
        asked = OnwardStep(request_id=request_id, requester="JO-B", target="SA-D", state="requested")
        ledger.apply_routed(msgspec.structs.replace(routed("a1"), request_id=request_id, onward=asked, decisions=()))
        if state == "refused":
            done = msgspec.structs.replace(asked, state="refused")
            ledger.apply_routed(msgspec.structs.replace(routed("a1"), request_id=request_id, onward=done, decisions=()))

    ledger.retire(AT + RETENTION)

    assert list(ledger.onward) == ["r-open"]
    assert [r["request_id"] for r in ledger.onward_requests(Viewer("agency", "JO-B"))] == ["r-open"]


def test_a_retired_alerts_status_has_the_shape_the_api_documents() -> None:
    """The public GET /v1/alerts/{id} answer (docs/openapi.yaml, AlertStatus) is the same shape for a held alert and
    a retired one, for operators and for a recipient."""
    import jsonschema
    import yaml
    from referencing import Registry, Resource

    spec = yaml.safe_load(Path(__file__).resolve().parents[2].joinpath("docs", "openapi.yaml").read_text())
    registry = Registry().with_resource("urn:api", Resource.from_contents({**spec, "$schema": DRAFT}))
    validator = jsonschema.Draft202012Validator({"$ref": "urn:api#/components/schemas/AlertStatus"}, registry=registry)
    ledger = settled_ledger()

    def wire(body: object) -> object:
        return msgspec.json.decode(msgspec.json.encode(body))  # as the API sends it

    for viewer in (OPERATOR, Viewer("agency", "JO-B")):
        validator.validate(wire(ledger.status("a1", viewer)[1]))
    ledger.retire(AT + RETENTION)
    for viewer in (OPERATOR, Viewer("agency", "JO-B"), Viewer("agency", "IQ-A")):
        status, body = ledger.status("a1", viewer)
        assert status == 200 and "retired_at" in body
        validator.validate(wire(body))
    assert ledger.status("a1", OPERATOR)[1]["recipients"]["JO-B"]["webhook"] == {"status": "delivered"}


DRAFT = "https://json-schema.org/draft/2020-12/schema"
