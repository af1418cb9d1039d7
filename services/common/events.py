"""What a recipient is sent about one version of an alert (AlertShared.event_type, RoutingDecision.event).

    alert.created    content: the first version this agency is permitted (an original, or a later version
                     after a TLP downgrade or a wider releasable_to)
    alert.updated    content: a new version of a thread the agency holds
    alert.withdrawn  a notice, no content: the agency is no longer permitted the thread and must purge it
    alert.cancelled  a notice, no content: the originator cancelled the thread
    alert.escalated  a reminder, no content: the agency has not acknowledged the version it names by its
                     deadline (reason `ack_overdue`); written by the tracker (tracker/escalation.py)

    onward.requested a notice to the originator: a recipient asks to share the thread with an agency it names
    onward.approved  a notice to that recipient: the originator approved; the agency was sent its copy
    onward.refused   a notice to that recipient: the originator (or the policy) refused, with a reason code

    alert.correlated a notice, no content: two threads the agency holds (or originated) carry the same value
                     (router/correlation.py); nothing to acknowledge

Shared by the router, which decides the first four (router/policy.py), and the tracker, which ends or starts
the wait for an acknowledgement by them and sends the reminder.
"""

from __future__ import annotations

from services.common.records import RoutingDecision

CREATED = "alert.created"
UPDATED = "alert.updated"
WITHDRAWN = "alert.withdrawn"
CANCELLED = "alert.cancelled"
ESCALATED = "alert.escalated"
CONTENT_EVENTS = frozenset({CREATED, UPDATED})
ONWARD_REQUESTED = "onward.requested"
ONWARD_APPROVED = "onward.approved"
ONWARD_REFUSED = "onward.refused"
# Notices about onward sharing (router/onward.py): no copy of the alert, and nothing to acknowledge.
ONWARD_EVENTS = frozenset({ONWARD_REQUESTED, ONWARD_APPROVED, ONWARD_REFUSED})
CORRELATED = "alert.correlated"
# The rule of a copy a version would have sent and did not, because the version is under embargo: nothing
# was sent, and an agency that held the thread still holds what it held (router/schedule.py).
EMBARGOED = "embargoed"


def event_of(msg_type: str, decision: RoutingDecision) -> str | None:
    """The event a decision sent its agency (None: nothing was sent to it).

    Decisions written before every version was decided whole carry no `event`: theirs is read from the
    message type and `delivered`, which is what such a decision meant (a Cancel's copy, or content).
    """
    if not decision.delivered:
        return None
    if decision.event:
        return decision.event
    return CANCELLED if msg_type == "Cancel" else (CREATED if msg_type == "Alert" else UPDATED)
