"""What an agency is told when the router refuses its follow-up (services/router/refusals.py), and that it can
learn nothing from it about another agency's thread: the rules, then a hostile agency's view (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from services.common.records import Alert, AlertEnriched
from services.common.registry import AgencyEntry, Registry, RegistryPublished
from services.router.policy import Refusal, fan_out
from services.router.refusals import RULES, AgencyRefusal, told_agency
from services.router.threads import Holding, Thread
from tests.unit.samples import enriched

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
CODES = ["IQ-A", "JO-B", "SA-C"]
REGISTRY = Registry(
    RegistryPublished(
        version=1,
        sha256="x",
        published_at=NOW,
        published_by="t",
        source="t",
        agencies=[AgencyEntry(code=c, name=c, country=c[:2]) for c in CODES],
    )
)
ROOT = "0b5f4f0e-7f43-4b5e-9b7e-1b2a3c4d5e6f"


def follow_up(msg_type: str, sender: str, *, scheduled_by: str | None = None) -> AlertEnriched:
    alert = Alert(
        msg_type=msg_type,  # type: ignore[arg-type]
        references=[ROOT],
        category="cbrn",
        severity="Severe",
        urgency="Immediate",
        certainty="Likely",
        tlp="AMBER",
        title="a follow-up",
        sent=NOW,
    )
    record = enriched(alert, origin=sender, alert_id="c6a0c0de-0000-4000-8000-000000000001")
    return msgspec.structs.replace(record, scheduled_by=scheduled_by)


def thread(origin: str, *, cancelled: bool = False, holders: tuple[str, ...] = (), latest: str = "") -> Thread:
    held = {code: Holding("AG", frozenset()) for code in holders}
    return Thread(root=ROOT, origin=origin, severity="Severe", holders=held, cancelled=cancelled, latest=latest)


def refused(result: object) -> Refusal:
    assert isinstance(result, Refusal), result
    return result


def test_each_rule_tells_the_agency_what_the_table_says() -> None:
    """Unknown thread and a thread of another's: one code; a cancelled one: its own; what the system issued, an
    unreadable record and any rule not in the table: nothing."""
    expected = {
        "thread_unknown": ("thread_not_found", 404),
        "not_originator": ("thread_not_found", 404),
        "thread_cancelled": ("thread_cancelled", 409),
        "no_references": ("invalid_alert", 422),
        "release_superseded": None,
        "release_origin_inactive": None,
        "unreadable": None,
        "a_rule_added_later": None,
    }
    actual = {rule: (t.error, t.status) if (t := told_agency(rule)) else None for rule in expected}
    assert expected == actual


def test_an_unknown_thread_and_another_agencys_thread_are_told_alike() -> None:
    """JO-B names a thread nobody has and one IQ-A originated: the same code and the same message, word for word."""
    unknown = told_agency(refused(fan_out(follow_up("Update", "JO-B"), None, REGISTRY)).rule)
    others = told_agency(refused(fan_out(follow_up("Update", "JO-B"), thread("IQ-A"), REGISTRY)).rule)
    assert unknown is not None
    assert unknown == others


def test_only_the_originator_learns_that_its_thread_was_cancelled() -> None:
    """IQ-A's Update of its own cancelled thread is told thread_cancelled; JO-B's of the same thread (which it
    held) is told what an unknown thread is told."""
    cancelled = thread("IQ-A", cancelled=True, holders=("JO-B",))
    own = told_agency(refused(fan_out(follow_up("Update", "IQ-A"), cancelled, REGISTRY)).rule)
    stranger = told_agency(refused(fan_out(follow_up("Cancel", "JO-B"), cancelled, REGISTRY)).rule)
    assert (own.error if own else None, stranger) == ("thread_cancelled", told_agency("thread_unknown"))


def test_a_refused_scheduled_release_is_told_to_no_agency() -> None:
    """The system issued it from the originator's schedule: operators see why, the agency is told nothing,
    even when its thread is no longer known (a router restarted after its window)."""
    superseded = fan_out(follow_up("Update", "IQ-A", scheduled_by="v1"), thread("IQ-A", latest="v2"), REGISTRY)
    assert refused(superseded).rule == "release_superseded"
    assert told_agency(refused(superseded).rule, scheduled=True) is None
    assert told_agency("thread_unknown", scheduled=True) is None


def test_the_operators_reason_still_names_the_originator() -> None:
    """The full reason stays with operators (alerts.rejected): a refusal is the reason itself, with its rule."""
    refusal = refused(fan_out(follow_up("Update", "JO-B"), thread("IQ-A"), REGISTRY))
    assert (refusal.rule, "only IQ-A" in refusal, isinstance(refusal, str)) == ("not_originator", True, True)


def test_no_message_names_an_agency_a_thread_or_a_reason() -> None:
    """Every message is fixed text: no agency code, no alert id, nothing to fill in."""
    for told in RULES.values():
        assert not any(c in told.message for c in "{}%"), told
        assert not any(code in told.message for code in CODES), told
        assert ROOT not in told.message


@given(
    originator=st.sampled_from(CODES),
    sender=st.sampled_from(CODES),
    msg_type=st.sampled_from(["Update", "Cancel"]),
    cancelled=st.booleans(),
    holders=st.lists(st.sampled_from(CODES), unique=True),
    scheduled=st.booleans(),
)
def test_a_hostile_agency_learns_nothing_of_a_thread_it_did_not_originate(
    originator: str, sender: str, msg_type: str, cancelled: bool, holders: list[str], scheduled: bool
) -> None:
    """Whatever another agency's thread is (cancelled or not, whoever holds it, the sender included), what the
    sender is told of its follow-up is exactly what it is told for a thread that does not exist; and only the
    thread's originator is ever told thread_cancelled."""
    existing = thread(originator, cancelled=cancelled, holders=tuple(holders), latest="v1")
    version = follow_up(msg_type, sender, scheduled_by="v1" if scheduled else None)
    result = fan_out(version, existing, REGISTRY)
    told: AgencyRefusal | None = told_agency(result.rule, scheduled=scheduled) if isinstance(result, Refusal) else None
    if sender != originator:
        assert told == told_agency(refused(fan_out(version, None, REGISTRY)).rule, scheduled=scheduled)
        assert originator not in msgspec.json.encode(told).decode()
        assert (told is None) == scheduled
    if told is not None and told.error == "thread_cancelled":
        assert sender == originator and cancelled
