"""What a request may name before the gateway does any work for it. Pure: no I/O.

    path_problem(request.match_info)              # None, or why the path names nothing (answered 404)
    outstanding_scope(principal, query.items())   # whose outstanding acks, or the refusal
    correlations_query(principal, query.items())  # the page of correlations asked for, or the refusal
    alerts_query(principal, query.items())        # the list of alerts asked for, or the refusal
    desk_refusal(principal)                       # None for an operator; 403 for anyone else

| rule | answer |
|---|---|
| a path parameter is not in its exact form (an alert or request id is a canonical UUID) | 404, as for no such alert |
| a path parameter this table does not know (a new route nobody described here) | 404: closed until described |
| /v1/acks/outstanding with an unknown or repeated query parameter | 400 `bad_query` |
| an agency asks for another agency's outstanding acks | 403 `forbidden` |
| an agency asks for its own, or names nobody | its own |
| an operator names an agency, or nobody | that agency's, or everyone's |
| an agency asks for correlations (/v1/correlations, any id) | 403 `forbidden`, before anything else (below) |
| /v1/correlations: a parameter unknown, repeated or out of its form (pages.py; agency, kind) | 400 `bad_query` |
| an agency lists alerts (GET /v1/alerts) | 403 `forbidden`, before anything else |
| GET /v1/alerts: a parameter unknown, repeated or out of its form (since, state, origin, limit) | 400 `bad_query` |

The list of alerts names every originator and every recipient: an agency reads its own alerts one by one
(GET /v1/alerts/{id}) and what it owes (/v1/acks/outstanding).

An agency learns of a correlation only through its own alert.correlated notice: the duty desk's view names
both originators and every agency told.

A value that passed these rules still reaches the tracker only as a quoted query parameter or a path
segment that is a UUID, never spliced into a URL (services/common/internal.py says why).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from services.common.internal import is_alert_id, query_problem
from services.common.pages import page_problem
from services.common.registry.model import Principal

# Every path parameter of the public API, and the form it must have (a correlation id is a uuid5).
PATH_PARAMETERS: dict[str, Callable[[str], bool]] = {
    "alert_id": is_alert_id,
    "request_id": is_alert_id,
    "correlation_id": is_alert_id,
}
_NAMED = {"request_id": "a request", "correlation_id": "a correlation"}


def path_problem(parameters: Mapping[str, str]) -> str | None:
    """Why these path parameters name nothing the API serves, or None when each has its exact form."""
    for name, value in parameters.items():
        valid = PATH_PARAMETERS.get(name)
        if valid is None or not valid(value):
            article, what = _NAMED.get(name, "an alert").split(" ")
            return f"no such {what}: {article} {what} id is a UUID such as 0b7c5a4e-1f2d-4c3b-9a8e-7d6f5e4c3b2a"
    return None


@dataclass(frozen=True)
class Refusal:
    status: int
    error: str
    message: str


@dataclass(frozen=True)
class Scope:
    """Whose outstanding acknowledgements to list: one agency's, or (None) everyone's."""

    agency: str | None


def outstanding_scope(principal: Principal, query: Iterable[tuple[str, str]]) -> Scope | Refusal:
    """The scope of GET /v1/acks/outstanding for this principal and query string (repeats included)."""
    items = list(query)
    problem = query_problem((name for name, _ in items), allowed={"agency"})
    if problem is not None:
        return Refusal(400, "bad_query", problem)
    named = items[0][1] if items else None
    kind, name = principal
    if kind == "operator":
        return Scope(named or None)
    if named is not None and named != name:
        return Refusal(403, "forbidden", "an agency sees only its own outstanding acknowledgements")
    return Scope(name)


# An agency's code as the registry spells them, and a correlation's kind (an indicator type, subject_name,
# subject_identifier): anything else names nothing, and is refused rather than passed on.
_AGENCY = re.compile(r"[A-Z0-9][A-Z0-9-]{0,31}")
_KIND = re.compile(r"[a-z][a-z_]{0,31}")
DESK_ONLY = "only operators see correlations; an agency learns of one through its own alert.correlated notice"


@dataclass(frozen=True)
class CorrelationsQuery:
    """A page of correlations as the tracker's internal API takes it (only the parameters given)."""

    params: dict[str, str]


def desk_refusal(principal: Principal) -> Refusal | None:
    """The refusal of anyone but an operator on /v1/correlations and /v1/correlations/{id}, else None."""
    return None if principal[0] == "operator" else Refusal(403, "forbidden", DESK_ONLY)


def correlations_query(principal: Principal, query: Iterable[tuple[str, str]]) -> CorrelationsQuery | Refusal:
    """The page of GET /v1/correlations an operator asks for; an agency is refused before its query is read."""
    refusal = desk_refusal(principal)
    if refusal is not None:
        return refusal
    items = list(query)
    problem = query_problem((name for name, _ in items), allowed={"limit", "before", "agency", "kind"})
    params = dict(items)
    problem = problem or page_problem(params.get("limit"), params.get("before"))
    if problem is None and "agency" in params and not _AGENCY.fullmatch(params["agency"]):
        problem = "agency is an agency's code, such as JO-GID"
    if problem is None and "kind" in params and not _KIND.fullmatch(params["kind"]):
        problem = "kind is a correlation's kind, such as phone or subject_name"
    if problem is not None:
        return Refusal(400, "bad_query", problem)
    return CorrelationsQuery(params)


ALERT_STATES = ("open", "overdue", "escalated", "settled")  # services/tracker/state.py says what each means
ALERTS_MAX = 1000
_LIMIT = re.compile(r"[1-9][0-9]{0,3}")


@dataclass(frozen=True)
class AlertsQuery:
    """The list of alerts as the tracker's internal API takes it (only the parameters given)."""

    params: dict[str, str]


def alerts_query(principal: Principal, query: Iterable[tuple[str, str]]) -> AlertsQuery | Refusal:
    """The list of GET /v1/alerts an operator asks for; an agency is refused before its query is read."""
    if principal[0] != "operator":
        return Refusal(403, "forbidden", "only operators list alerts; an agency reads its own by id")
    items = list(query)
    problem = query_problem((name for name, _ in items), allowed={"since", "state", "origin", "limit"})
    params = dict(items)
    if problem is None and "since" in params and not _has_offset(params["since"]):
        problem = "since is an ISO 8601 time with its offset, such as 2026-12-03T10:00:00Z"
    if problem is None and "state" in params and params["state"] not in ALERT_STATES:
        problem = f"state is one of {', '.join(ALERT_STATES)}"
    if problem is None and "origin" in params and not _AGENCY.fullmatch(params["origin"]):
        problem = "origin is an agency's code, such as JO-GID"
    if (
        problem is None
        and "limit" in params
        and not (_LIMIT.fullmatch(params["limit"]) and int(params["limit"]) <= ALERTS_MAX)
    ):
        problem = f"limit is a whole number from 1 to {ALERTS_MAX}"
    if problem is not None:
        return Refusal(400, "bad_query", problem)
    return AlertsQuery(params)


def _has_offset(text: str) -> bool:
    try:
        return datetime.fromisoformat(text).utcoffset() is not None
    except ValueError:
        return False
