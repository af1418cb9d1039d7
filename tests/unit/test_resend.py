"""Resend and replay decided by the sharing policy (router/resend.py, router/replay.py), and what they leave
in the thread state and the tracker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.records import AckSubmitted, AlertEnriched, AlertRouted, ResendRequested
from services.common.registry import Registry, RegistryPublished
from services.router.payload import notice, recipient_copy, webhook_request
from services.router.policy import Verdict, fan_out, verdict_for
from services.router.replay import replay_refusal
from services.router.resend import latest_versions, resend_plan
from services.router.threads import Thread, advanced
from services.tracker.state import Ledger, Viewer
from tests.unit.samples import enriched, sample_alert
from tests.unit.test_alert_life import routed_of as routed
from tests.unit.test_sharing_properties import alerts, registries

AT = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def registry_of(agreements: list[dict[str, Any]], suspended: tuple[str, ...] = ()) -> Registry:
    """IQ-A originates; JO-B, SA-C and KW-D subscribe to everything; `suspended` are inactive."""
    agencies = [
        {
            "code": c,
            "name": c,
            "country": c.split("-")[0],
            "subscriptions": [{"categories": ["*"]}],
            "active": c not in suspended,
        }
        for c in ("IQ-A", "JO-B", "SA-C", "KW-D")
    ]
    document = {
        "version": 2,
        "sha256": "x",
        "published_at": AT,
        "published_by": "t",
        "source": "t",
        "agencies": agencies,
        "agreements": agreements,
    }
    return Registry(msgspec.convert(document, RegistryPublished))


def agreement(to: list[str], max_tlp: str = "RED", redact: list[str] | None = None, id: str = "AG") -> dict[str, Any]:
    return {
        "id": id,
        "kind": "directed",
        "from": ["IQ-A"],
        "to": to,
        "categories": ["*"],
        "max_tlp": max_tlp,
        "redact": redact or [],
    }


def routed_of(record: AlertEnriched, verdicts: list[Verdict], request_id: str | None = None) -> AlertRouted:
    """The decision the router writes for `verdicts`; a resend's carries its request id."""
    return msgspec.structs.replace(routed(record, verdicts), request_id=request_id)


def request(agency: str = "SA-C") -> ResendRequested:
    return ResendRequested(
        request_id="r-1", agency=agency, since=AT - timedelta(days=1), requested_by="admin", requested_at=AT
    )


def routed_thread(registry: Registry, record: AlertEnriched) -> Thread:
    """The thread after `record`, an original, was routed under `registry`."""
    verdicts = fan_out(record, None, registry)
    assert not isinstance(verdicts, str)
    thread = advanced(None, routed_of(record, verdicts))
    assert thread is not None
    return thread


def test_a_newly_entitled_agency_is_sent_the_thread_and_owes_an_ack() -> None:
    """Routed when only JO had an agreement; SA is given one since: a resend creates SA's copy, awaiting an ack."""
    original = enriched(sample_alert(), alert_id="a-1")
    thread = routed_thread(registry_of([agreement(["JO-B"])]), original)
    today = registry_of([agreement(["JO-B", "SA-C"])])

    plan = resend_plan(request("SA-C"), {"a-1": original}, {"a-1": thread}, today, done=set())

    assert not isinstance(plan, str)
    expected = [("a-1", "SA-C", True, "shared", "alert.created", True)]
    assert expected == [(e.alert_id, v.agency, v.delivered, v.rule, v.event, v.awaits_ack) for e, v in plan]


def test_a_resend_sends_nothing_of_a_version_still_under_embargo() -> None:
    """The latest version is embargoed until after the request: recorded `embargoed`, nothing sent (its release
    will reach the agency); once the embargo is over, the same request sends it."""
    original = enriched(sample_alert(embargo_until=AT + timedelta(hours=2)), alert_id="a-1")
    thread = routed_thread(registry_of([agreement(["JO-B"])]), original)
    today = registry_of([agreement(["JO-B", "SA-C"])])

    plan = resend_plan(request("SA-C"), {"a-1": original}, {"a-1": thread}, today, done=set())
    assert not isinstance(plan, str)
    assert [(v.agency, v.delivered, v.rule, v.event) for _, v in plan] == [("SA-C", False, "embargoed", "")]

    later = msgspec.structs.replace(request("SA-C"), requested_at=AT + timedelta(hours=3))
    plan = resend_plan(later, {"a-1": original}, {"a-1": thread}, today, done=set())
    assert not isinstance(plan, str)
    assert [(v.agency, v.delivered, v.event) for _, v in plan] == [("SA-C", True, "alert.created")]


def test_a_holder_is_sent_an_update_and_owes_no_new_ack() -> None:
    """JO holds the thread: its resent copy is alert.updated, and its acknowledgement obligation stays where it was."""
    original = enriched(sample_alert(), alert_id="a-1")
    registry = registry_of([agreement(["JO-B"])])
    thread = routed_thread(registry, original)

    plan = resend_plan(request("JO-B"), {"a-1": original}, {"a-1": thread}, registry, done=set())

    assert not isinstance(plan, str)
    assert [(v.event, v.awaits_ack) for _, v in plan] == [("alert.updated", False)]


def test_what_is_no_longer_permitted_is_withdrawn_or_refused_with_its_rule() -> None:
    """JO held it under an agreement since capped at GREEN: withdrawn (a notice, no content); KW never had one:
    refused as no_agreement."""
    original = enriched(sample_alert(tlp="AMBER"), alert_id="a-1")
    thread = routed_thread(registry_of([agreement(["JO-B"])]), original)
    today = registry_of([agreement(["JO-B"], max_tlp="GREEN")])

    withdrawn = resend_plan(request("JO-B"), {"a-1": original}, {"a-1": thread}, today, done=set())
    refused = resend_plan(request("KW-D"), {"a-1": original}, {"a-1": thread}, today, done=set())

    assert not isinstance(withdrawn, str) and not isinstance(refused, str)
    assert [(v.delivered, v.rule, v.event, v.notice) for _, v in withdrawn] == [
        (True, "withdrawn", "alert.withdrawn", "tlp_exceeds_agreement")
    ]
    assert [(v.delivered, v.rule) for _, v in refused] == [(False, "no_agreement")]


def test_cancelled_own_done_and_unknown_threads() -> None:
    """A cancelled thread is refused; the agency's own threads, threads this request decided already, and threads
    the router does not know are left out; an agency missing from the registry is refused as a whole."""
    registry = registry_of([agreement(["JO-B", "SA-C"])])
    a1, a2, a3 = (enriched(sample_alert(), alert_id=f"a-{n}") for n in (1, 2, 3))
    own = enriched(sample_alert(), origin="SA-C", alert_id="a-4")
    cancelled = msgspec.structs.replace(routed_thread(registry, a1), cancelled=True, holders={})
    threads = {"a-1": cancelled, "a-2": routed_thread(registry, a2), "a-4": routed_thread(registry, own)}
    latest = {"a-1": a1, "a-2": a2, "a-3": a3, "a-4": own}

    plan = resend_plan(request("SA-C"), latest, threads, registry, done={"a-2"})

    assert not isinstance(plan, str)
    assert [(e.alert_id, v.delivered, v.rule) for e, v in plan] == [("a-1", False, "thread_cancelled")]
    assert resend_plan(request("XX-Z"), latest, threads, registry, done=set()) == "XX-Z is not in the registry"


def test_latest_versions_takes_each_threads_last_routed_version_since_the_time() -> None:
    """The last routed version of each thread with a version in [since, until]; unrouted versions are none."""
    old = msgspec.structs.replace(enriched(sample_alert(), alert_id="t-0"), submitted_at=AT - timedelta(days=9))
    original = enriched(sample_alert(), alert_id="t-1")
    update = enriched(sample_alert(msg_type="Update", references=["t-1"]), alert_id="t-2")
    refused = enriched(sample_alert(msg_type="Update", references=["t-1"]), alert_id="t-3")
    routed = {"t-0", "t-1", "t-2"}

    latest = latest_versions(
        [old, original, update, refused], routed.__contains__, since=AT - timedelta(days=1), until=AT
    )

    assert {root: v.alert_id for root, v in latest.items()} == {"t-1": "t-2"}


def test_a_resend_decision_adds_a_holder_and_keeps_the_thread() -> None:
    """The thread state after a resend decision: SA holds it too; the others and the severity are unchanged."""
    original = enriched(sample_alert(), alert_id="a-1")
    thread = routed_thread(registry_of([agreement(["JO-B"])]), original)
    verdict = verdict_for(original, registry_of([agreement(["JO-B", "SA-C"])]), _agency("SA-C"))

    after = advanced(thread, routed_of(original, [verdict], request_id="r-1"))

    assert after is not None
    assert ({"JO-B", "SA-C"}, thread.severity, "a-1") == (set(after.holders), after.severity, after.root)


def test_the_tracker_gives_a_resent_agency_a_row_it_can_ack() -> None:
    """Before the resend, SA's ack is refused; after its decision the tracker has SA's row, awaiting an ack, and
    accepts it; JO's row is left as it was."""
    original = enriched(sample_alert(), alert_id="a-1")
    first = fan_out(original, None, registry_of([agreement(["JO-B"])]))
    assert not isinstance(first, str)
    ledger = Ledger()
    ledger.apply_routed(routed_of(original, first))
    ack = AckSubmitted(ack_id="k", alert_id="a-1", agency="SA-C", channel="http", submitted_at=AT)
    assert ledger.recipient("a-1", "SA-C")[0] == 404

    verdict = verdict_for(original, registry_of([agreement(["JO-B", "SA-C"])]), _agency("SA-C"))
    ledger.apply_routed(routed_of(original, [verdict], request_id="r-1"))

    assert (ledger.recipient("a-1", "SA-C")[0], ledger.recipient("a-1", "SA-C")[1]["state"]) == (200, "delivered")
    assert [(o["alert_id"], o["agency"]) for o in ledger.outstanding("SA-C")] == [("a-1", "SA-C")]
    assert ledger.apply_ack(ack)
    _, routing = ledger.routing_of("a-1", Viewer("operator", "desk"))
    assert [(r["request_id"], r["decisions"][0]["agency"]) for r in routing["resends"]] == [("r-1", "SA-C")]
    assert ledger.routing_of("a-1", Viewer("agency", "SA-C"))[0] == 403
    assert {a: r.state for a, r in ledger.alerts["a-1"].recipients.items()} == {
        "JO-B": "delivered",
        "SA-C": "acknowledged",
    }


def _agency(code: str) -> Any:
    return registry_of([]).agencies[code]


def dead_copy(record: AlertEnriched, registry: Registry, agency: str) -> Any:
    """The DeliverWebhook the router made for `agency`'s copy under `registry` (as it would lie in deliveries.dead)."""
    verdict = verdict_for(record, registry, registry.agencies[agency])
    assert verdict.delivered
    return webhook_request(recipient_copy(record, verdict, AT), record.alert.urgency, AT)


def test_replay_drops_what_today_no_longer_permits() -> None:
    """A copy made under yesterday's registry is replayed only if today's permits it as it was redacted."""
    record = enriched(sample_alert(), alert_id="a-1")
    dead = dead_copy(record, registry_of([agreement(["JO-B"])]), "JO-B")

    assert replay_refusal(dead, record, registry_of([agreement(["JO-B"])])) is None
    assert _rule(replay_refusal(dead, record, registry_of([agreement(["JO-B"])], ("JO-B",)))) == "agency_inactive"
    assert _rule(replay_refusal(dead, record, registry_of([agreement(["SA-C"])]))) == "no_agreement"
    tightened = registry_of([agreement(["JO-B"], redact=["subjects"])])
    assert _rule(replay_refusal(dead, record, tightened)) == "redaction_tightened"
    assert _rule(replay_refusal(dead, None, registry_of([agreement(["JO-B"])]))) == "version_unknown"


def test_replay_sends_a_notice_to_any_active_agency() -> None:
    """A withdrawal notice carries no content: replayed to an active agency without an agreement, not to a
    suspended one."""
    record = enriched(sample_alert(), alert_id="a-1")
    withdrawal = Verdict("JO-B", True, "withdrawn", "w", event="alert.withdrawn", notice="no_agreement")
    dead = webhook_request(notice(record, withdrawal, AT), "Immediate", AT)

    assert replay_refusal(dead, None, registry_of([])) is None
    assert _rule(replay_refusal(dead, None, registry_of([], ("JO-B",)))) == "agency_inactive"


def _rule(refusal: tuple[str, str] | None) -> str | None:
    return refusal[0] if refusal else None


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_a_resend_never_sends_content_the_policy_does_not_permit(data: st.DataObject) -> None:
    """For every registry and alert: a resend sends content to an agency exactly when the policy permits it
    today, redacted as the permitting agreement says, and a replay keeps a dead copy only then."""
    before = data.draw(registries())
    today = data.draw(registries())
    origin, alert = data.draw(alerts(before))
    record = enriched(alert, origin=origin, alert_id="a-1")
    if origin not in today.agencies:
        return
    verdicts = fan_out(record, None, before)
    assert not isinstance(verdicts, str)
    thread = advanced(None, routed_of(record, verdicts))
    assert thread is not None
    for code, agency in today.agencies.items():
        plan = resend_plan(request(code), {"a-1": record}, {"a-1": thread}, today, done=set())
        assert not isinstance(plan, str)
        permitted = verdict_for(record, today, agency)
        sent = [v for _, v in plan if v.event in ("alert.created", "alert.updated")]
        if code == origin:
            assert plan == []
        elif permitted.delivered:
            assert [(permitted.agreement_id, permitted.redact)] == [(v.agreement_id, v.redact) for v in sent]
        else:
            assert sent == []
