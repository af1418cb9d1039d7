"""Embargoes and release schedules (issue 15): what the gateway accepts, what the router records at once and
schedules, when it refuses a release, and what the tracker issues."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from services.common.events import CREATED, UPDATED, WITHDRAWN
from services.common.records import AlertRouted, ReleaseScheduled, ReleaseStep, RoutingDecision
from services.common.registry import AgencyEntry, Registry, RegistryPublished
from services.gateway.submission import InvalidSubmission, parse_submission
from services.router.policy import Verdict, embargoed, fan_out
from services.router.schedule import EMBARGO_END, RELEASE, release_id, releases_of, under_embargo
from services.router.threads import Holding, Thread, advanced
from services.tracker.releases import Pending, submission_of
from tests.support.world import alert_json
from tests.unit.samples import enriched, sample_alert

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def at(minutes: float) -> str:
    return (NOW + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def problems(**fields: Any) -> list[tuple[str, str]]:
    with pytest.raises(InvalidSubmission) as caught:
        parse_submission(json.dumps(alert_json(**fields)).encode(), now=NOW)
    return caught.value.problems


def paths(**fields: Any) -> list[str]:
    return [path for path, _ in problems(**fields)]


def test_a_schedule_is_accepted_into_the_alert() -> None:
    """An embargo and release steps in order become the alert's embargo_until and release."""
    body = alert_json(
        tlp="RED",
        releasable_to=["JO"],
        embargo_until=at(10),
        release=[{"at": at(20), "tlp": "TLP:AMBER"}, {"at": at(30), "tlp": "GREEN", "releasable_to": ["SA", "JO"]}],
    )
    alert = parse_submission(json.dumps(body).encode(), now=NOW)
    expected = (
        NOW + timedelta(minutes=10),
        [
            ReleaseStep(at=NOW + timedelta(minutes=20), tlp="AMBER"),
            ReleaseStep(at=NOW + timedelta(minutes=30), tlp="GREEN", releasable_to=["SA", "JO"]),
        ],
    )
    assert expected == (alert.embargo_until, alert.release)


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"embargo_until": at(-1)}, "$.embargo_until"),
        ({"embargo_until": at(60 * 24 * 6 + 1)}, "$.embargo_until"),
        ({"embargo_until": "tomorrow"}, "$.embargo_until"),
        ({"embargo_until": at(10), "expires": at(5)}, "$.embargo_until"),
        ({"release": [{"at": at(5), "tlp": "GREEN"}], "embargo_until": at(10)}, "$.release[0].at"),
        ({"release": [{"at": at(20), "tlp": "GREEN"}, {"at": at(20), "tlp": "CLEAR"}]}, "$.release[1].at"),
        ({"release": [{"at": at(0), "tlp": "GREEN"}]}, "$.release[0].at"),
        ({"release": [{"at": at(5), "tlp": "PURPLE"}]}, "$.release[0].tlp"),
        ({"release": [{"at": at(5), "tlp": "RED"}]}, "$.release[0].releasable_to"),
        ({"release": [{"at": at(5), "tlp": "GREEN", "releasable_to": ["nobody"]}]}, "$.release[0].releasable_to[0]"),
        ({"release": [{"at": at(5)}]}, "$.release[0].tlp"),
        ({"release": [{"at": None, "tlp": "GREEN"}]}, "$.release[0].at"),
        ({"release": [{"at": at(5), "tlp": "GREEN", "colour": "red"}]}, "$.release[0].colour"),
        ({"release": [{"at": at(i + 1), "tlp": "GREEN"} for i in range(9)]}, "$.release"),
        ({"release": {"at": at(5)}}, "$.release"),
        ({"msg_type": "Cancel", "references": ["a"], "embargo_until": at(5)}, "$.embargo_until"),
        ({"msg_type": "Cancel", "references": ["a"], "release": [{"at": at(5), "tlp": "GREEN"}]}, "$.release"),
    ],
)
def test_a_bad_schedule_is_refused_at_its_path(fields: dict[str, Any], path: str) -> None:
    """Every schedule that cannot be issued as written is refused, at the JSON path of what is wrong."""
    assert [path] == paths(**fields)


def test_an_originator_controlled_step_must_name_its_recipients() -> None:
    """Under originator control a release step without releasable_to would share with no one named: refused."""
    fields = {"originator_control": True, "releasable_to": ["JO"], "release": [{"at": at(5), "tlp": "GREEN"}]}
    assert paths(**fields) == ["$.release[0].releasable_to"]


def test_an_update_may_carry_its_own_embargo() -> None:
    """An Update may be embargoed too: otherwise correcting an embargoed alert would publish it at once."""
    body = alert_json(msg_type="Update", references=["a"], embargo_until=at(10))
    assert NOW + timedelta(minutes=10) == parse_submission(json.dumps(body).encode(), now=NOW).embargo_until


def test_the_system_field_cannot_be_submitted() -> None:
    """`scheduled_by` is the system's mark on a release: a body that carries it is refused."""
    assert paths(scheduled_by="alert-0") == ["$.scheduled_by"]


def scheduled_version() -> Any:
    alert = sample_alert(
        tlp="RED",
        releasable_to=["JO-A1"],
        embargo_until=NOW + timedelta(minutes=10),
        release=[ReleaseStep(at=NOW + timedelta(minutes=20), tlp="AMBER")],
    )
    return enriched(alert, origin="IQ-A0", alert_id="alert-1")


def test_each_time_of_a_schedule_is_one_release_of_the_same_content() -> None:
    """The embargo's end releases the version as it is, each step with its TLP and releasable_to, as Updates
    of the thread with no schedule of their own, under ids the same version always gives."""
    releases = releases_of(scheduled_version(), "alert-1", NOW)
    expected = [
        (release_id("alert-1", 0), EMBARGO_END, NOW + timedelta(minutes=10), "RED", ["JO-A1"]),
        (release_id("alert-1", 1), RELEASE, NOW + timedelta(minutes=20), "AMBER", []),
    ]
    assert expected == [(r.release_id, r.kind, r.due_at, r.alert.tlp, r.alert.releasable_to) for r in releases]
    version = scheduled_version().alert
    for r in releases:
        same = msgspec.structs.replace(
            r.alert,
            msg_type="Alert",
            references=[],
            tlp=version.tlp,
            releasable_to=version.releasable_to,
            embargo_until=version.embargo_until,
            release=version.release,
            sent=version.sent,
        )
        assert (version, "Update", ["alert-1"], "IQ-A0", "alert-1") == (
            same,
            r.alert.msg_type,
            r.alert.references,
            r.origin,
            r.scheduled_by,
        )


def test_a_version_without_a_schedule_schedules_nothing() -> None:
    """No embargo, no steps: no release."""
    assert releases_of(enriched(sample_alert()), "alert-1", NOW) == []


def test_embargo_holds_back_content_and_lets_a_withdrawal_go() -> None:
    """Under embargo a copy with content is recorded as not sent, naming the time and the rule that would have
    sent it; a withdrawal (it reveals nothing) goes at once; what was withheld anyway stays as it was."""
    until = NOW + timedelta(minutes=10)
    verdicts = [
        Verdict("A", True, "shared", "shared under AG-1", "AG-1", frozenset({"summary"}), CREATED, True),
        Verdict("B", True, "shared", "shared under AG-2", "AG-2", frozenset(), UPDATED, False),
        Verdict("C", True, "withdrawn", "withdrawn: x", event=WITHDRAWN, notice="not_releasable"),
        Verdict("D", False, "not_subscribed", "no subscription"),
    ]
    expected = [
        Verdict("A", False, "embargoed", f"embargoed until {until.isoformat()}: shared under AG-1", "AG-1"),
        Verdict("B", False, "embargoed", f"embargoed until {until.isoformat()}: shared under AG-2", "AG-2"),
        verdicts[2],
        verdicts[3],
    ]
    assert expected == embargoed(verdicts, until)


def test_a_release_is_never_itself_under_embargo() -> None:
    """The release of an embargo carries the time of the version it releases only in that version."""
    version = scheduled_version()
    release = msgspec.structs.replace(version, scheduled_by="alert-0")
    assert (NOW + timedelta(minutes=10), None) == (under_embargo(version), under_embargo(release))


def routed(alert_id: str, msg_type: str, decisions: list[RoutingDecision], scheduled_by: str | None = None) -> Any:
    return AlertRouted(
        alert_id=alert_id,
        origin="IQ-A0",
        msg_type=msg_type,  # type: ignore[arg-type]
        references=() if msg_type == "Alert" else ("alert-1",),
        severity="Severe",
        urgency="Immediate",
        routed_at=NOW,
        registry_version=1,
        decisions=tuple(decisions),
        scheduled_by=scheduled_by,
    )


def test_the_thread_remembers_the_originators_latest_version_not_the_systems() -> None:
    """A release moves the thread's holders but not its latest version: the rest of the schedule still holds."""
    thread = advanced(None, routed("alert-1", "Alert", []))
    shared = RoutingDecision(agency="JO-A1", delivered=True, rule="shared", reason="", event=CREATED)
    thread = advanced(thread, routed("release-1", "Update", [shared], scheduled_by="alert-1"))
    assert thread is not None
    assert (thread.latest, list(thread.holders)) == ("alert-1", ["JO-A1"])
    thread = advanced(thread, routed("alert-2", "Update", [shared]))
    assert thread is not None and thread.latest == "alert-2"


def test_an_embargoed_update_leaves_its_holders_holding() -> None:
    """A holder whose update the embargo held back still holds the thread: the release is an update to it."""
    thread = Thread(root="alert-1", origin="IQ-A0", severity="Severe", holders={"JO-A1": Holding("AG", frozenset())})
    held_back = RoutingDecision(agency="JO-A1", delivered=False, rule="embargoed", reason="")
    after = advanced(thread, routed("alert-2", "Update", [held_back]))
    assert after is not None and list(after.holders) == ["JO-A1"]


def test_a_release_of_a_replaced_schedule_is_refused() -> None:
    """Once the originator sent a later version, a release its earlier schedule left is refused, with why;
    a release of the latest version's schedule is decided, unless its originator is suspended by then."""
    registry = Registry(
        RegistryPublished(
            version=1,
            sha256="x",
            published_at=NOW,
            published_by="t",
            source="t",
            agencies=[
                AgencyEntry(code="IQ-A0", name="a", country="IQ"),
                AgencyEntry(code="JO-A1", name="b", country="JO"),
            ],
        )
    )
    release = msgspec.structs.replace(
        enriched(sample_alert(msg_type="Update", references=["alert-1"]), origin="IQ-A0", alert_id="r-1"),
        scheduled_by="alert-1",
    )
    replaced = Thread(root="alert-1", origin="IQ-A0", severity="Severe", holders={}, latest="alert-2")
    current = msgspec.structs.replace(replaced, latest="alert-1")
    refused, decided = fan_out(release, replaced, registry), fan_out(release, current, registry)
    assert isinstance(refused, str) and "replaced" in refused
    assert [v.agency for v in decided] == ["IQ-A0", "JO-A1"]  # type: ignore[union-attr]
    suspended = Registry(
        msgspec.structs.replace(
            registry.published,
            agencies=[msgspec.structs.replace(a, active=a.code != "IQ-A0") for a in registry.published.agencies],
        )
    )
    assert "not an active agency" in str(fan_out(release, current, suspended))


def test_pending_is_what_was_scheduled_and_not_issued() -> None:
    """Releases fall due in time order; an issued one never again, whichever of its records is read first."""
    releases = releases_of(scheduled_version(), "alert-1", NOW)
    pending = Pending()
    pending.issued(releases[1].release_id)  # compaction may leave the marker alone, or before nothing
    for r in releases:
        pending.scheduled(r)
    assert pending.due(NOW + timedelta(minutes=9)) == []
    assert [releases[0]] == pending.due(NOW + timedelta(minutes=30))
    pending.issued(releases[0].release_id)
    assert pending.due(NOW + timedelta(days=1)) == []


def test_a_release_is_submitted_as_the_originators_update_marked_as_the_systems() -> None:
    """The Update a release issues has the release's id, the originator as origin and the version that
    scheduled it, and the release's content."""
    release: ReleaseScheduled = releases_of(scheduled_version(), "alert-1", NOW)[1]
    submitted = submission_of(release, NOW + timedelta(minutes=20))
    expected = (release.release_id, "IQ-A0", "alert-1", release.alert, NOW + timedelta(minutes=20))
    assert expected == (
        submitted.alert_id,
        submitted.origin,
        submitted.scheduled_by,
        submitted.alert,
        submitted.submitted_at,
    )
