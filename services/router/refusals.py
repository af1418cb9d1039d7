"""What an agency is told when the router refuses a version it submitted. Pure: no I/O.

    told = told_agency(refusal.rule, scheduled=enriched.scheduled_by is not None)   # AgencyRefusal or None

Operators read the router's full reason on alerts.rejected; it may name a thread's originator. The agency
that sent the version reads only this: on its own `agency.<CODE>.rejections` (a SubmissionRejected of stage
`router`, in the routing transaction) and in GET /v1/alerts/{id} (the tracker). Any agency may name any id in
an Update's `references`, so what it is told must not depend on another agency's thread:

    router's rule          agency is told     status  why
    (a scheduled release)  nothing                    the system issued it from the originator's schedule,
                                                      whatever the rule: the agency did not submit it, and
                                                      operators see why (release_superseded, ...)
    thread_unknown         thread_not_found   404     unknown here, or older than the router's window
    not_originator         thread_not_found   404     the same code and message as an unknown thread: else
                                                      an agency could probe which alert ids exist (and, from
                                                      the reason, who originated them)
    thread_cancelled       thread_cancelled   409     fan_out checks the originator first, so only the
                                                      originator gets here: it learns of its own thread only
    no_references          invalid_alert      422     a follow-up naming no thread (the gateway refuses one
                                                      first; this is for a record that did not pass it)
    unreadable             nothing                    no agency is known to tell
    any other rule         nothing                    a new rule tells no one until it is added here

Every message is fixed: it names no agency, no thread and no reason of the router's.
"""

from __future__ import annotations

import msgspec


class AgencyRefusal(msgspec.Struct, frozen=True):
    """What the agency is told: an error code and message in the shape of the HTTP API's errors, and the HTTP
    status of that meaning (the submission itself had its 202)."""

    error: str
    status: int
    message: str


_THREAD_NOT_FOUND = AgencyRefusal(
    "thread_not_found",
    404,
    "the follow-up (Update or Cancel) names, first in references, a thread your agency cannot change: no thread "
    "your agency originated is known by that id (it is unknown, older than the exchange's window, or not yours)",
)

RULES: dict[str, AgencyRefusal] = {
    "thread_unknown": _THREAD_NOT_FOUND,
    "not_originator": _THREAD_NOT_FOUND,
    "thread_cancelled": AgencyRefusal(
        "thread_cancelled", 409, "the thread this follow-up names was cancelled: it takes no more versions"
    ),
    "no_references": AgencyRefusal(
        "invalid_alert", 422, "an Update or Cancel names its thread's first alert id first in references"
    ),
}


def told_agency(rule: str, *, scheduled: bool = False) -> AgencyRefusal | None:
    """What the agency that submitted a version refused by `rule` is told; None: nothing. `scheduled`: the system
    issued the version from a release schedule (AlertEnriched.scheduled_by)."""
    return None if scheduled else RULES.get(rule)
