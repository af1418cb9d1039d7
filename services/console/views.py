"""What each console page shows, from the tracker's answers and the alerts' contents. Pure: no I/O.

    rows = now_rows(tracker_alerts, contents)          # "now": alerts awaiting an acknowledgement
    page = alert_page(status, routing, contents, versions, correlations)
    endpoints = endpoint_rows(registry, states, tally)

The pages are rendered from these plain values by autoescaping templates (templates/): an alert's title,
an agency's note and a receiver's error are other people's text, and reach the page only as escaped text.
Times are ISO 8601 in UTC; the browser turns deadlines and ages into countdowns (static/console.js).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.common.records import AlertEnriched, EndpointChanged
from services.common.registry import Registry

# What the tracker calls a row's state, in the order an operator reads them (worst first on "now").
_STATE_ORDER = {"routed": 0, "delivered": 1, "acknowledged": 3, "superseded": 4, "withdrawn": 4, "cancelled": 4}
ENDED = frozenset({"acknowledged", "cancelled", "withdrawn", "superseded"})


@dataclass(frozen=True)
class Content:
    """What the pages show of an alert's content (alerts.enriched): operators see all of it."""

    alert_id: str
    origin: str
    msg_type: str
    title: str
    summary: str
    category: str
    tlp: str
    priority: int
    severity: str
    urgency: str
    submitted_at: datetime
    references: tuple[str, ...]
    watchlist_hits: tuple[str, ...] = ()

    @property
    def thread_id(self) -> str:
        """The thread's first alert id: an Update or Cancel names it first among its references.

        An Alert is a thread of its own whatever it references, as the router and the tracker count it
        (router/threads.py): any agency may put any id in `references`, and the console must not file a
        hostile agency's Alert among the versions of another agency's thread."""
        return self.references[0] if self.msg_type != "Alert" and self.references else self.alert_id


def content_of(enriched: AlertEnriched) -> Content:
    a = enriched.alert
    return Content(
        alert_id=enriched.alert_id,
        origin=enriched.origin,
        msg_type=a.msg_type,
        title=a.title,
        summary=a.summary,
        category=a.category,
        tlp=a.tlp,
        priority=enriched.priority,
        severity=a.severity,
        urgency=a.urgency,
        submitted_at=enriched.submitted_at,
        references=tuple(a.references),
        watchlist_hits=tuple(enriched.watchlist_hits),
    )


@dataclass(frozen=True)
class Cell:
    """One recipient of one alert on "now"."""

    agency: str
    state: str
    ack_due: str | None  # ISO 8601, while an acknowledgement is awaited
    escalation_level: int
    channels: tuple[str, ...]
    webhook: str | None  # pending, delivered, retrying, dead; None: no webhook
    response: str | None

    @property
    def awaited(self) -> bool:
        return self.ack_due is not None and self.state not in ENDED


@dataclass(frozen=True)
class NowRow:
    alert_id: str
    origin: str
    msg_type: str
    severity: str
    routed_at: str
    escalation_level: int
    cells: tuple[Cell, ...]
    content: Content | None  # None until the console has read the alert's content
    overdue: int = 0

    @property
    def priority(self) -> int | None:
        return self.content.priority if self.content else None


def cells_of(recipients: Mapping[str, Mapping[str, Any]]) -> tuple[Cell, ...]:
    """The recipients in the order an operator reads them: awaited first, soonest deadline first."""
    cells = [
        Cell(
            agency=code,
            state=r["state"],
            ack_due=r.get("ack_due") if r["state"] not in ENDED else None,
            escalation_level=r.get("escalation_level", 0),
            channels=tuple(r.get("channels", ())),
            webhook=(r.get("webhook") or {}).get("status"),
            response=r.get("response"),
        )
        for code, r in recipients.items()
    ]
    return tuple(sorted(cells, key=lambda c: (not c.awaited, c.ack_due or "", _STATE_ORDER.get(c.state, 2), c.agency)))


def board_of(newest: list[dict[str, Any]], by_origin: Iterable[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """ "Now"'s alerts: the tracker's newest open alerts and, beside them, each origin's newest, once each.

    The tracker lists the newest `limit` open alerts. A hostile agency that submits that many alerts in a
    minute (its rate limit allows it) would push every other agency's open alerts, the escalated and
    overdue among them, off the duty desk's wall screen; asked origin by origin as well (when the first list
    was full), each agency keeps its own newest on the board whatever another floods.
    """
    board = {a["alert_id"]: a for a in newest}
    for alerts in by_origin:
        for a in alerts:
            board.setdefault(a["alert_id"], a)
    return list(board.values())


def now_rows(alerts: Iterable[Mapping[str, Any]], contents: Mapping[str, Content]) -> list[NowRow]:
    """ "Now": the tracker's alerts awaiting acknowledgements, most urgent first (escalated, then priority,
    then the soonest deadline); an alert whose content is not read yet sorts by its routing alone."""
    rows = [
        NowRow(
            alert_id=a["alert_id"],
            origin=a["origin"],
            msg_type=a["msg_type"],
            severity=a["severity"],
            routed_at=a["routed_at"],
            escalation_level=a.get("escalation_level", 0),
            overdue=a.get("overdue", 0),
            cells=cells_of(a.get("recipients", {})),
            content=contents.get(a["alert_id"]),
        )
        for a in alerts
    ]

    def urgency(row: NowRow) -> tuple[int, int, str]:
        due = min((c.ack_due for c in row.cells if c.awaited and c.ack_due), default="~")
        return (-row.escalation_level, row.priority or 5, due)

    return sorted(rows, key=urgency)


@dataclass(frozen=True)
class Decision:
    agency: str
    delivered: bool
    rule: str
    reason: str
    agreement_id: str | None
    redacted_fields: tuple[str, ...]
    channels: tuple[str, ...]
    event: str | None


@dataclass(frozen=True)
class AlertPage:
    alert_id: str
    origin: str
    status: Mapping[str, Any]  # the tracker's status answer, as operators see it
    content: Content | None
    decisions: tuple[Decision, ...]
    registry_version: int | None
    resends: int
    versions: tuple[Content, ...]  # the thread's versions the console has read, oldest first
    correlations: tuple[Mapping[str, Any], ...]
    rejected: Mapping[str, Any] | None = None
    recipients: tuple[Mapping[str, Any], ...] = field(default=())


def alert_page(
    alert_id: str,
    status: Mapping[str, Any],
    routing: Mapping[str, Any] | None,
    contents: Mapping[str, Content],
    thread: Iterable[Content],
    correlations: Iterable[Mapping[str, Any]],
) -> AlertPage:
    """One alert as the tracker and the console's contents know it."""
    content = contents.get(alert_id)
    decisions = tuple(
        Decision(
            agency=d["agency"],
            delivered=d["delivered"],
            rule=d["rule"],
            reason=d["reason"],
            agreement_id=d.get("agreement_id"),
            redacted_fields=tuple(d.get("redacted_fields", ())),
            channels=tuple(d.get("channels", ())),
            event=d.get("event"),
        )
        for d in (routing or {}).get("decisions", ())
    )
    recipients = tuple(
        sorted(status.get("recipients", {}).values(), key=lambda r: (r["state"] in ENDED, r.get("agency", "")))
    )
    return AlertPage(
        alert_id=alert_id,
        origin=status.get("origin", content.origin if content else "?"),
        status=status,
        content=content,
        decisions=tuple(sorted(decisions, key=lambda d: (not d.delivered, d.agency))),
        registry_version=(routing or {}).get("registry_version"),
        resends=len((routing or {}).get("resends", ())),
        versions=tuple(sorted(thread, key=lambda c: c.submitted_at)),
        correlations=tuple(correlations),
        rejected=status.get("rejected"),
        recipients=recipients,
    )


@dataclass(frozen=True)
class EndpointRow:
    agency: str
    url: str
    state: str  # active, failing (a breaker opened), disabled
    reason: str | None
    changed_at: datetime | None
    changed_by: str | None
    dead: int
    retrying: int
    delivered: int
    last_failure: str | None  # the dispatcher's failure class (http_5xx, timeout, tls_error...)
    last_failure_at: str | None
    active_agency: bool


def endpoint_rows(
    registry: Registry | None, states: Mapping[str, EndpointChanged], tally: Mapping[str, Mapping[str, Any]]
) -> list[EndpointRow]:
    """Each agency's webhook in the registry in force, its state in force (deliveries.endpoints: the breaker
    opening is `failing`), and the tracker's count of its deliveries by status."""
    if registry is None:
        return []
    rows = []
    for code, agency in sorted(registry.agencies.items()):
        if agency.webhook is None:
            continue
        change = states.get(code)
        # A state set for another URL is not this endpoint's: the registry moved the webhook since.
        if change is not None and change.url != agency.webhook.url:
            change = None
        t = tally.get(code, {})
        rows.append(
            EndpointRow(
                agency=code,
                url=agency.webhook.url,
                state=change.state if change else "active",
                reason=change.reason if change else None,
                changed_at=change.changed_at if change else None,
                changed_by=change.changed_by if change else None,
                dead=t.get("dead", 0),
                retrying=t.get("retrying", 0),
                delivered=t.get("delivered", 0),
                last_failure=t.get("last_failure"),
                last_failure_at=t.get("last_failure_at"),
                active_agency=agency.active,
            )
        )
    return rows
