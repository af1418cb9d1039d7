"""Onward sharing decided step by step (router/onward.py), folded into the thread (threads.py), and what later
versions of the thread then give the approved agency (policy.fan_out). Every attack a hostile recipient or a
stranger could try at this layer has a test here; tests/integration/test_onward.py runs them end to end."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.events import CREATED, ONWARD_APPROVED, ONWARD_REFUSED, ONWARD_REQUESTED, UPDATED, WITHDRAWN
from services.common.records import AlertEnriched, AlertRouted, OnwardAction
from services.common.registry import Registry
from services.router.onward import (
    INVALID_TARGET,
    MAX_PENDING,
    MAX_PENDING_PER_REQUESTER,
    NOT_HOLDER,
    NOT_ORIGINATOR_CONTROL,
    NOT_PERMITTED,
    ONWARD_REVOKED,
    REFUSED_BY_ORIGINATOR,
    TOO_MANY_REQUESTS,
    Outcome,
    decide_step,
)
from services.router.policy import fan_out
from services.router.threads import Thread, advanced
from services.tracker.state import Ledger, Viewer
from tests.unit.samples import enriched, sample_alert
from tests.unit.test_resend import AT, agreement, registry_of, routed_of

# IQ-A originates; JO-B holds the thread (releasable to it only, under originator control).
ORCON = sample_alert(tlp="AMBER", releasable_to=["JO-B"], originator_control=True)


def shared_thread(registry: Registry, alert: Any = ORCON) -> tuple[Thread, AlertEnriched]:
    record = enriched(alert)
    verdicts = fan_out(record, None, registry)
    assert not isinstance(verdicts, str)
    thread = advanced(None, routed_of(record, verdicts))
    assert thread is not None
    return thread, record


def action(
    kind: str, agency: str, *, request_id: str = "req-1", target: str | None = None, text: str | None = None
) -> OnwardAction:
    return OnwardAction(
        action_id=f"{request_id}:{kind}",
        request_id=request_id,
        thread_id="alert-1",
        action=kind,  # type: ignore[arg-type]
        agency=agency,
        target=target,
        text=text,
        at=AT,
    )


def ask(agency: str = "JO-B", target: str = "SA-C") -> OnwardAction:
    return action("ask", agency, target=target, text="SA-C's border police need the names")


def recorded(outcome: Outcome, record: AlertEnriched) -> AlertRouted:
    """The decision the router writes for a step (service.py _onward_step), without the I/O."""
    assert outcome.step is not None
    return msgspec.structs.replace(
        routed_of(record, list(outcome.verdicts)), request_id=outcome.step.request_id, onward=outcome.step
    )


def after(thread: Thread, outcome: Outcome, record: AlertEnriched) -> Thread:
    folded = advanced(thread, recorded(outcome, record))
    assert folded is not None
    return folded


def everyone(redact: list[str] | None = None) -> Registry:
    """IQ-A shares with JO-B (redacting `redact`); with SA-C under a second agreement; KW-D has none with it."""
    return registry_of([agreement(["JO-B"], redact=redact, id="AG-JO"), agreement(["SA-C"], id="AG-SA")])


def test_a_holder_asks_and_the_originator_alone_is_told_with_the_reason() -> None:
    registry = everyone()
    thread, record = shared_thread(registry)
    assert set(thread.holders) == {"JO-B"}
    outcome = decide_step(ask(), thread, record, registry)
    assert outcome.step is not None and outcome.step.state == "requested"
    assert [(v.agency, v.event) for v in outcome.verdicts] == [("IQ-A", ONWARD_REQUESTED)]
    assert outcome.notices["IQ-A"].text == "SA-C's border police need the names"
    assert outcome.notices["IQ-A"].requester == "JO-B" and outcome.notices["IQ-A"].target == "SA-C"
    pending = after(thread, outcome, record).pending
    assert pending["req-1"].requester == "JO-B" and pending["req-1"].target == "SA-C"


def test_a_stranger_asking_learns_nothing_a_thread_that_does_not_exist_would_not_tell_it() -> None:
    """SA-C does not hold the thread: its answer is the one for an id never routed, field for field."""
    registry = everyone()
    thread, record = shared_thread(registry)
    stranger = decide_step(ask("SA-C", "KW-D"), thread, record, registry)
    nothing = decide_step(ask("SA-C", "KW-D"), None, None, registry)
    assert stranger == nothing
    assert stranger.step is None
    assert [(v.agency, v.event, v.notice) for v in stranger.verdicts] == [("SA-C", ONWARD_REFUSED, NOT_HOLDER)]
    assert "IQ-A" not in repr(stranger)  # neither the originator nor anything of the thread


def test_an_ask_the_policy_cannot_take_is_refused_to_the_asker_only() -> None:
    registry = everyone()
    open_thread, open_record = shared_thread(registry, sample_alert(tlp="AMBER", releasable_to=["JO-B"]))
    refused = decide_step(ask(), open_thread, open_record, registry)
    assert refused.step is None and refused.verdicts[0].notice == NOT_ORIGINATOR_CONTROL
    thread, record = shared_thread(registry)
    for target in ("IQ-A", "JO-B"):
        out = decide_step(ask(target=target), thread, record, registry)
        assert out.step is None and out.verdicts[0].notice == INVALID_TARGET
        assert [v.agency for v in out.verdicts] == ["JO-B"]


def test_only_the_originator_answers_and_only_a_pending_request() -> None:
    registry = everyone()
    thread, record = shared_thread(registry)
    thread = after(thread, decide_step(ask(), thread, record, registry), record)
    for agency in ("JO-B", "SA-C", "KW-D"):  # the requester, the target, a bystander
        out = decide_step(action("approve", agency), thread, record, registry)
        assert out.ignored is not None and out.step is None and not out.verdicts
    assert decide_step(action("approve", "IQ-A", request_id="forged"), thread, record, registry).ignored
    approved = decide_step(action("approve", "IQ-A"), thread, record, registry)
    thread = after(thread, approved, record)
    again = decide_step(action("approve", "IQ-A"), thread, record, registry)
    assert again.ignored is not None, "an approval is carried out once"
    assert decide_step(action("refuse", "IQ-A"), thread, record, registry).ignored


def test_an_approval_sends_the_agency_a_copy_redacted_at_least_as_the_requesters() -> None:
    registry = everyone(redact=["subjects", "indicators"])  # JO-B's agreement redacts; SA-C's does not
    thread, record = shared_thread(registry)
    thread = after(thread, decide_step(ask(), thread, record, registry), record)
    out = decide_step(action("approve", "IQ-A", text="yes, for the border police"), thread, record, registry)
    assert out.step is not None and out.step.state == "approved"
    copy = next(v for v in out.verdicts if v.agency == "SA-C")
    assert copy.delivered and copy.event == CREATED and copy.awaits_ack
    assert copy.agreement_id == "AG-SA"
    assert {"subjects", "indicators"} <= copy.redact, "no wider than the requester's own copy"
    told = next(v for v in out.verdicts if v.agency == "JO-B")
    assert told.event == ONWARD_APPROVED and out.notices["JO-B"].text == "yes, for the border police"
    thread = after(thread, out, record)
    assert "SA-C" in thread.holders and thread.grants["req-1"].floor >= {"subjects", "indicators"}
    assert not thread.pending


def test_an_agreement_that_exists_still_bounds_the_copy_and_the_requester_learns_nothing_of_it() -> None:
    registry = registry_of([agreement(["JO-B"], id="AG-JO"), agreement(["SA-C"], max_tlp="GREEN", id="AG-SA")])
    thread, record = shared_thread(registry)
    thread = after(thread, decide_step(ask(), thread, record, registry), record)
    out = decide_step(action("approve", "IQ-A"), thread, record, registry)
    assert out.step is not None and out.step.state == "refused" and out.step.reason == "tlp_exceeds_agreement"
    assert not next(v for v in out.verdicts if v.agency == "SA-C").delivered
    told = next(v for v in out.verdicts if v.agency == "JO-B")
    assert told.event == ONWARD_REFUSED and told.notice == NOT_PERMITTED
    assert "GREEN" not in repr(out.notices) and "AG-SA" not in repr(out.notices)
    assert "SA-C" not in after(thread, out, record).holders


def test_without_any_agreement_the_approval_alone_permits_with_the_requesters_redaction() -> None:
    registry = everyone(redact=["subjects"])
    thread, record = shared_thread(registry)
    thread = after(thread, decide_step(ask(target="KW-D"), thread, record, registry), record)
    out = decide_step(action("approve", "IQ-A"), thread, record, registry)
    copy = next(v for v in out.verdicts if v.agency == "KW-D")
    assert copy.delivered and copy.agreement_id is None and copy.redact == {"subjects"}


def test_a_suspended_target_gets_nothing_after_an_approval() -> None:
    registry = everyone()
    thread, record = shared_thread(registry)
    thread = after(thread, decide_step(ask(), thread, record, registry), record)
    suspended = registry_of([agreement(["JO-B"], id="AG-JO"), agreement(["SA-C"], id="AG-SA")], suspended=("SA-C",))
    out = decide_step(action("approve", "IQ-A"), thread, record, suspended)
    assert not any(v.delivered for v in out.verdicts if v.agency == "SA-C")
    assert out.step is not None and out.step.state == "refused"


def test_an_approval_while_the_latest_version_is_embargoed_sends_nothing_before_its_time() -> None:
    registry = everyone()
    thread, record = shared_thread(registry)
    thread = after(thread, decide_step(ask(), thread, record, registry), record)
    embargoed = update(tlp="AMBER", releasable_to=["JO-B"], embargo_until=AT + timedelta(hours=1))
    out = decide_step(action("approve", "IQ-A"), thread, embargoed, registry)
    assert out.step is not None and out.step.state == "approved"
    copy = next(v for v in out.verdicts if v.agency == "SA-C")
    assert not copy.delivered and copy.rule == "embargoed"
    thread = after(thread, out, embargoed)
    assert "SA-C" not in thread.holders and thread.grants["req-1"].target == "SA-C"
    # The release the tracker issues at the embargo's end reaches SA-C under the approval.
    release = msgspec.structs.replace(update(tlp="AMBER", releasable_to=["JO-B"]), alert_id="alert-r")
    verdicts = fan_out(release, thread, registry)
    assert not isinstance(verdicts, str)
    assert next(v for v in verdicts if v.agency == "SA-C").event == CREATED


def test_a_refusal_tells_the_requester_with_the_originators_note() -> None:
    registry = everyone()
    thread, record = shared_thread(registry)
    thread = after(thread, decide_step(ask(), thread, record, registry), record)
    out = decide_step(action("refuse", "IQ-A", text="source protection"), thread, record, registry)
    assert out.step is not None and out.step.state == "refused" and out.step.note == "source protection"
    assert [(v.agency, v.event, v.notice) for v in out.verdicts] == [("JO-B", ONWARD_REFUSED, REFUSED_BY_ORIGINATOR)]
    assert out.notices["JO-B"].text == "source protection"
    thread = after(thread, out, record)
    assert not thread.pending and not thread.grants and "SA-C" not in thread.holders


def approved_thread(registry: Registry) -> tuple[Thread, AlertEnriched]:
    thread, record = shared_thread(registry)
    thread = after(thread, decide_step(ask(), thread, record, registry), record)
    return after(thread, decide_step(action("approve", "IQ-A"), thread, record, registry), record), record


def update(**fields: Any) -> AlertEnriched:
    alert = sample_alert(msg_type="Update", references=["alert-1"], originator_control=True, **fields)
    record = enriched(alert, alert_id="alert-2")
    return msgspec.structs.replace(record, submitted_at=record.submitted_at + timedelta(minutes=5))


def test_an_approval_lasts_for_the_later_versions_of_the_thread() -> None:
    registry = everyone(redact=["subjects"])
    thread, _ = approved_thread(registry)
    verdicts = fan_out(update(tlp="AMBER", releasable_to=["JO-B"]), thread, registry)
    assert not isinstance(verdicts, str)
    sa = next(v for v in verdicts if v.agency == "SA-C")
    assert sa.delivered and sa.event == UPDATED and "subjects" in sa.redact
    # A version above what the agreement between IQ-A and SA-C allows (and above the TLP approved) withdraws it.
    narrow = registry_of([agreement(["JO-B"], id="AG-JO"), agreement(["SA-C"], max_tlp="AMBER", id="AG-SA")])
    thread, _ = approved_thread(narrow)
    verdicts = fan_out(update(tlp="RED", releasable_to=["JO-B"]), thread, narrow)
    assert not isinstance(verdicts, str)
    sa = next(v for v in verdicts if v.agency == "SA-C")
    assert sa.event == WITHDRAWN


def test_a_revocation_withdraws_the_copy_and_the_next_version_does_not_reach_it() -> None:
    registry = everyone()
    thread, record = approved_thread(registry)
    out = decide_step(action("revoke", "IQ-A"), thread, record, registry)
    assert out.step is not None and out.step.state == "revoked"
    assert [(v.agency, v.event, v.notice) for v in out.verdicts] == [("SA-C", WITHDRAWN, ONWARD_REVOKED)]
    thread = after(thread, out, record)
    assert "SA-C" not in thread.holders and not thread.grants
    verdicts = fan_out(update(tlp="AMBER", releasable_to=["JO-B"]), thread, registry)
    assert not isinstance(verdicts, str)
    assert not next(v for v in verdicts if v.agency == "SA-C").delivered
    assert decide_step(action("revoke", "IQ-A"), thread, record, registry).ignored, "revoked once"
    assert decide_step(action("revoke", "JO-B"), thread, record, registry).ignored


def test_a_cancelled_thread_takes_no_more_steps() -> None:
    registry = everyone()
    thread, record = shared_thread(registry)
    thread = after(thread, decide_step(ask(), thread, record, registry), record)
    cancel = enriched(sample_alert(msg_type="Cancel", references=["alert-1"]), alert_id="alert-3")
    verdicts = fan_out(cancel, thread, registry)
    assert not isinstance(verdicts, str)
    cancelled = advanced(thread, routed_of(cancel, verdicts))
    assert cancelled is not None and cancelled.cancelled and not cancelled.pending
    assert decide_step(action("approve", "IQ-A"), cancelled, record, registry).ignored
    assert decide_step(ask(), cancelled, record, registry).verdicts[0].notice == NOT_HOLDER


def asked_in_ledger(registry: Registry) -> tuple[Ledger, Thread, AlertEnriched]:
    """A tracker's ledger, and the thread, after the original was routed and JO-B asked for SA-C."""
    thread, record = shared_thread(registry)
    verdicts = fan_out(record, None, registry)
    assert not isinstance(verdicts, str)
    ledger = Ledger()
    ledger.apply_routed(routed_of(record, verdicts))
    asked = decide_step(ask(), thread, record, registry)
    ledger.apply_routed(recorded(asked, record))
    return ledger, after(thread, asked, record), record


def test_the_tracker_shows_a_request_to_its_two_parties_and_hides_the_policy_reason_from_the_requester() -> None:
    registry = registry_of([agreement(["JO-B"], id="AG-JO"), agreement(["SA-C"], max_tlp="GREEN", id="AG-SA")])
    ledger, thread, record = asked_in_ledger(registry)
    ledger.apply_routed(recorded(decide_step(action("approve", "IQ-A"), thread, record, registry), record))
    status, seen = ledger.onward_request("req-1", Viewer("agency", "IQ-A"))
    assert status == 200 and seen["state"] == "refused" and seen["refusal"] == "tlp_exceeds_agreement"
    status, seen = ledger.onward_request("req-1", Viewer("agency", "JO-B"))
    assert status == 200 and seen["state"] == "refused" and "refusal" not in seen
    assert ledger.onward_request("req-1", Viewer("agency", "SA-C"))[0] == 404
    stranger = Viewer("agency", "KW-D")
    assert ledger.onward_request("req-1", stranger) == Ledger().onward_request("req-1", stranger)
    assert ledger.onward_requests(Viewer("agency", "KW-D")) == []
    # The notices are no recipients' rows: the originator is no recipient of its own alert.
    assert "IQ-A" not in ledger.alerts["alert-1"].recipients


@settings(max_examples=200, deadline=None)
@given(
    requester_redact=st.sets(st.sampled_from(["subjects", "indicators", "locations", "summary"])),
    target_redact=st.sets(st.sampled_from(["subjects", "indicators", "locations", "summary"])),
    target_tlp=st.sampled_from(["CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED"]),
    with_agreement=st.booleans(),
    tlp=st.sampled_from(["GREEN", "AMBER", "AMBER+STRICT", "RED"]),
)
def test_an_approved_copy_never_holds_a_field_the_requesters_copy_or_an_agreement_left_out(
    requester_redact: set[str], target_redact: set[str], target_tlp: str, with_agreement: bool, tlp: str
) -> None:
    agreements = [agreement(["JO-B"], redact=sorted(requester_redact), id="AG-JO")]
    if with_agreement:
        agreements.append(agreement(["SA-C"], max_tlp=target_tlp, redact=sorted(target_redact), id="AG-SA"))
    registry = registry_of(agreements)
    alert = sample_alert(tlp=tlp, releasable_to=["JO-B"], originator_control=True)
    thread, record = shared_thread(registry, alert)
    thread = after(thread, decide_step(ask(), thread, record, registry), record)
    out = decide_step(action("approve", "IQ-A"), thread, record, registry)
    copy = next(v for v in out.verdicts if v.agency == "SA-C")
    levels = ["CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED"]
    permitted = not with_agreement or levels.index(target_tlp) >= levels.index(tlp)
    assert copy.delivered == permitted
    if copy.delivered:
        assert requester_redact <= copy.redact
        if with_agreement:
            assert target_redact <= copy.redact


def test_an_approval_ends_where_the_requesters_own_permission_ends() -> None:
    """Red team: an Update narrowed to another agency (and raised to RED) withdrew the requester but still
    reached the agency it had asked for. The approval shares what the requester may hold, no more."""
    registry = registry_of(
        [agreement(["JO-B"], id="AG-JO"), agreement(["KW-D"], id="AG-KW"), agreement(["SA-C"], id="AG-SA")]
    )
    thread, _ = approved_thread(registry)
    verdicts = fan_out(update(tlp="RED", releasable_to=["KW-D"]), thread, registry)
    assert not isinstance(verdicts, str)
    by = {v.agency: v for v in verdicts}
    assert by["JO-B"].event == WITHDRAWN and by["SA-C"].event == WITHDRAWN
    assert by["KW-D"].event == CREATED


def test_an_approval_does_not_cover_a_version_above_the_tlp_approved() -> None:
    registry = everyone()  # no agreement caps SA-C below RED, and JO-B may have RED
    thread, _ = approved_thread(registry)  # approved at AMBER
    verdicts = fan_out(update(tlp="RED", releasable_to=["JO-B"]), thread, registry)
    assert not isinstance(verdicts, str)
    by = {v.agency: v for v in verdicts}
    assert by["JO-B"].event == UPDATED and by["SA-C"].event == WITHDRAWN


def test_the_floor_follows_the_requesters_agreement_as_it_is_now() -> None:
    """Red team: the requester's agreement tightened after the approval; the agency's copy must tighten too."""
    thread, _ = approved_thread(everyone(redact=["subjects"]))
    tighter = everyone(redact=["subjects", "locations"])
    verdicts = fan_out(update(tlp="AMBER", releasable_to=["JO-B"]), thread, tighter)
    assert not isinstance(verdicts, str)
    sa = next(v for v in verdicts if v.agency == "SA-C")
    assert sa.event == UPDATED and {"subjects", "locations"} <= sa.redact


def test_revoking_one_of_two_approvals_for_an_agency_keeps_the_other_and_its_stricter_floor() -> None:
    """Red team: a second approval replaced the first (and its stricter floor), and revoking the first was
    then silently ignored."""
    registry = registry_of(
        [
            agreement(["JO-B"], redact=["subjects"], id="AG-JO"),
            agreement(["KW-D"], id="AG-KW"),
            agreement(["SA-C"], id="AG-SA"),
        ]
    )
    record = enriched(sample_alert(tlp="AMBER", releasable_to=["JO-B", "KW-D"], originator_control=True))
    thread, record = shared_thread(registry, record.alert)
    for rid, requester in (("req-1", "JO-B"), ("req-2", "KW-D")):
        asked = decide_step(
            action("ask", requester, request_id=rid, target="SA-C", text="why"), thread, record, registry
        )
        thread = after(thread, asked, record)
        thread = after(thread, decide_step(action("approve", "IQ-A", request_id=rid), thread, record, registry), record)
    assert {r: g.target for r, g in thread.grants.items()} == {"req-1": "SA-C", "req-2": "SA-C"}
    verdicts = fan_out(update(tlp="AMBER", releasable_to=["JO-B", "KW-D"]), thread, registry)
    assert not isinstance(verdicts, str)
    assert "subjects" in next(v for v in verdicts if v.agency == "SA-C").redact, "the stricter floor holds"
    out = decide_step(action("revoke", "IQ-A", request_id="req-1"), thread, record, registry)
    assert out.step is not None and out.step.state == "revoked" and not out.verdicts  # req-2 still covers it
    thread = after(thread, out, record)
    out = decide_step(action("revoke", "IQ-A", request_id="req-2"), thread, record, registry)
    assert [(v.agency, v.event) for v in out.verdicts] == [("SA-C", WITHDRAWN)]


def test_the_same_ask_twice_or_a_flood_of_asks_does_not_reach_the_originator_again() -> None:
    registry = everyone()
    thread, record = shared_thread(registry)
    thread = after(thread, decide_step(ask(), thread, record, registry), record)
    assert decide_step(ask(), thread, record, registry).ignored is not None  # the same request id
    again = action("ask", "JO-B", request_id="req-9", target="SA-C", text="again")
    assert decide_step(again, thread, record, registry).ignored is not None  # the same agency, pending
    for i in range(1, MAX_PENDING_PER_REQUESTER):
        step = action("ask", "JO-B", request_id=f"req-{i + 10}", target=f"X-{i}", text="flood")
        thread = after(thread, decide_step(step, thread, record, registry), record)
    assert len(thread.pending) == MAX_PENDING_PER_REQUESTER < MAX_PENDING
    flood = decide_step(
        action("ask", "JO-B", request_id="req-99", target="KW-D", text="more"), thread, record, registry
    )
    assert flood.step is None and flood.verdicts[0].notice == TOO_MANY_REQUESTS


def test_asking_while_the_originator_is_suspended_does_not_say_so() -> None:
    registry = everyone()
    thread, record = shared_thread(registry)
    suspended = registry_of([agreement(["JO-B"], id="AG-JO"), agreement(["SA-C"], id="AG-SA")], suspended=("IQ-A",))
    out = decide_step(ask(), thread, record, suspended)
    assert out.step is None and out.verdicts[0].notice == NOT_PERMITTED


def test_a_cancel_ends_the_requests_the_tracker_shows_as_pending() -> None:
    registry = everyone()
    ledger, thread, _ = asked_in_ledger(registry)
    cancel = enriched(sample_alert(msg_type="Cancel", references=["alert-1"]), alert_id="alert-3")
    cancelled = fan_out(cancel, thread, registry)
    assert not isinstance(cancelled, str)
    ledger.apply_routed(routed_of(cancel, cancelled))
    status, seen = ledger.onward_request("req-1", Viewer("agency", "JO-B"))
    assert status == 200 and seen["state"] == "cancelled" and "alert_id" not in seen


def test_revoking_an_approval_withdraws_the_chain_that_held_through_it() -> None:
    """Red team: JO-B asked for SA-C, then SA-C for KW-D; revoking the first left KW-D its copy, untold."""
    registry = everyone()
    thread, record = approved_thread(registry)  # req-1: JO-B -> SA-C
    chained = action("ask", "SA-C", request_id="req-2", target="KW-D", text="KW too")
    thread = after(thread, decide_step(chained, thread, record, registry), record)
    thread = after(thread, decide_step(action("approve", "IQ-A", request_id="req-2"), thread, record, registry), record)
    assert {"SA-C", "KW-D"} <= set(thread.holders)
    out = decide_step(action("revoke", "IQ-A", request_id="req-1"), thread, record, registry)
    assert sorted((v.agency, v.event) for v in out.verdicts) == [("KW-D", WITHDRAWN), ("SA-C", WITHDRAWN)]


def test_approving_for_an_agency_that_holds_by_the_rules_leaves_no_grant_to_shield_it() -> None:
    """Red team: a no-op approval for a holder kept it receiving after the originator narrowed the thread."""
    registry = everyone()
    alert = sample_alert(tlp="AMBER", releasable_to=["JO-B", "SA-C"], originator_control=True)
    thread, record = shared_thread(registry, alert)
    thread = after(thread, decide_step(ask(), thread, record, registry), record)
    out = decide_step(action("approve", "IQ-A"), thread, record, registry)
    assert out.step is not None and out.step.state == "approved"
    thread = after(thread, out, record)
    assert not thread.grants
    verdicts = fan_out(update(tlp="AMBER", releasable_to=["JO-B"]), thread, registry)
    assert not isinstance(verdicts, str)
    assert next(v for v in verdicts if v.agency == "SA-C").event == WITHDRAWN


def test_an_approval_shares_only_what_the_requester_may_hold_today() -> None:
    """Red team: the requester's agreement fell to GREEN with no new version, and an approval still sent the
    AMBER version on."""
    thread, record = shared_thread(everyone())
    thread = after(thread, decide_step(ask(), thread, record, everyone()), record)
    lowered = registry_of([agreement(["JO-B"], max_tlp="GREEN", id="AG-JO"), agreement(["SA-C"], id="AG-SA")])
    out = decide_step(action("approve", "IQ-A"), thread, record, lowered)
    assert out.step is not None and out.step.state == "refused" and out.step.reason == "requester_not_holder"
    assert not any(v.delivered for v in out.verdicts if v.agency == "SA-C")


def test_a_grant_recorded_without_its_tlp_covers_only_clear() -> None:
    """Approvals written before the step recorded the TLP approved are read as the strictest bound."""
    registry = everyone()
    thread, record = shared_thread(registry)
    thread = after(thread, decide_step(ask(), thread, record, registry), record)
    out = decide_step(action("approve", "IQ-A"), thread, record, registry)
    assert out.step is not None
    legacy = msgspec.structs.replace(out, step=msgspec.structs.replace(out.step, tlp=None))
    thread = after(thread, legacy, record)
    assert thread.grants["req-1"].tlp == "CLEAR"
    verdicts = fan_out(update(tlp="AMBER", releasable_to=["JO-B"]), thread, registry)
    assert not isinstance(verdicts, str)
    assert next(v for v in verdicts if v.agency == "SA-C").event == WITHDRAWN
