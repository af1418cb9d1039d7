"""An originator's embargo and release schedule, as the releases the system will issue. Pure: no I/O.

    releases = releases_of(enriched, thread_id, now)   # ReleaseScheduled records, in the order they fall due

A version may carry `embargo_until` (delivered to nobody before then) and `release`, steps `{at, tlp,
releasable_to}` (gateway/submission.py checks them: in the future, in order, after the embargo's end, before
the alert expires). The router routes the version at once (under embargo: policy.embargoed) and, in the
same transaction, schedules one release per time:

    embargo_until   an Update of the same content, TLP and releasable_to: what the embargo held back
    release[i]      an Update of the same content with the step's TLP and releasable_to (empty: as the
                    agreements allow), so a downgrade re-disseminates and a narrowing withdraws

The tracker issues each when it falls due, exactly once (services/tracker/releases.py), as an AlertSubmitted
from the originator marked `scheduled_by` this version, and the router decides it like any Update. A later
version from the originator replaces this schedule: the router refuses what is left of it (policy.fan_out).

A release's id is also the alert id of the Update it issues, derived from the version's id and the step, so
the same schedule always gives the same ids and a release routed twice is a duplicate the router skips.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from services.common.records import AlertEnriched, ReleaseScheduled

_NAMESPACE = uuid.UUID("4b7f0d2e-58a1-4c3e-9f6d-2a8e1c7b5d90")
EMBARGO_END = "embargo_end"
RELEASE = "release"


def release_id(version_id: str, step: int) -> str:
    """The id of a version's release `step` (0: its embargo's end; i: release[i-1]), a canonical UUID."""
    return str(uuid.uuid5(_NAMESPACE, f"{version_id}:{step}"))


def releases_of(enriched: AlertEnriched, thread_id: str, now: datetime) -> list[ReleaseScheduled]:
    """The releases a version schedules (none for one without a schedule), in the order they fall due."""
    alert = enriched.alert
    base = msgspec.structs.replace(alert, msg_type="Update", references=[thread_id], embargo_until=None, release=[])

    def scheduled(step: int, kind: str, at: datetime, tlp: str, releasable_to: list[str]) -> ReleaseScheduled:
        return ReleaseScheduled(
            release_id=release_id(enriched.alert_id, step),
            thread_id=thread_id,
            scheduled_by=enriched.alert_id,
            origin=enriched.origin,
            kind=kind,
            due_at=at,
            scheduled_at=now,
            alert=msgspec.structs.replace(base, sent=at, tlp=tlp, releasable_to=sorted(set(releasable_to))),
        )

    releases = []
    if alert.embargo_until is not None:
        releases.append(scheduled(0, EMBARGO_END, alert.embargo_until, alert.tlp, alert.releasable_to))
    for i, step in enumerate(alert.release, start=1):
        releases.append(scheduled(i, RELEASE, step.at, step.tlp, step.releasable_to))
    return releases


def under_embargo(enriched: AlertEnriched) -> datetime | None:
    """Until when the version is embargoed (None: it is not). A release is never itself under embargo."""
    return enriched.alert.embargo_until if enriched.scheduled_by is None else None
