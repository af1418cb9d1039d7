"""What a resend sends. Pure: no I/O.

An operator asks (`rctc deliveries resend`, a `ResendRequested` on requests.resend) that one agency be sent
again every thread with a version submitted since a time, as today's registry lets it have them. The router
decides it like any routing, per alerts.enriched partition it owns and inside that partition's transaction,
so what the agency holds of each thread (threads.py) is the same state the next version is decided against:

    latest = latest_versions(versions, routed, since=request.since, until=request.requested_at)
    plan = resend_plan(request, latest, threads, registry, done)     # [(version, verdict)], or why none

Each thread's latest routed version is decided for the agency by `policy.resend_verdict`, the rules of a new
version: permitted and held -> alert.updated; permitted and not held -> alert.created, awaiting an ack;
held and no longer permitted -> alert.withdrawn; otherwise nothing, and the rule that failed is recorded.
`done` holds the threads a decision of this request already covers (a request decided twice, after a
restart or a rebalance, sends nothing twice).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from datetime import datetime

from services.common.events import CONTENT_EVENTS
from services.common.records import AlertEnriched, ResendRequested
from services.common.registry import Registry
from services.router.policy import Verdict, embargoed, resend_verdict
from services.router.schedule import under_embargo
from services.router.threads import Thread


def thread_of(enriched: AlertEnriched) -> str:
    """The thread a version belongs to: its own id for an original, the first reference for a follow-up."""
    alert = enriched.alert
    return alert.references[0] if alert.msg_type != "Alert" and alert.references else enriched.alert_id


def latest_versions(
    versions: Iterable[AlertEnriched], routed: Callable[[str], bool], *, since: datetime, until: datetime
) -> dict[str, AlertEnriched]:
    """The latest routed version of every thread that has a routed version submitted in [since, until].

    `versions` in the order they were routed; a version the router refused or has not routed yet is none of
    its thread's (`routed` says which were)."""
    latest: dict[str, AlertEnriched] = {}
    wanted: set[str] = set()
    for version in versions:
        if not routed(version.alert_id):
            continue
        root = thread_of(version)
        latest[root] = version
        if since <= version.submitted_at <= until:
            wanted.add(root)
    return {root: version for root, version in latest.items() if root in wanted}


def resend_plan(
    request: ResendRequested,
    latest: dict[str, AlertEnriched],
    threads: dict[str, Thread],
    registry: Registry,
    done: Collection[str],
) -> list[tuple[AlertEnriched, Verdict]] | str:
    """The verdict on each thread's latest version for the request's agency, or why the request is refused.

    Threads the agency originated, or whose original is older than what the router knows, are left out."""
    if request.agency not in registry.agencies:
        return f"{request.agency} is not in the registry"
    plan = []
    for root, version in latest.items():
        thread = threads.get(root)
        if thread is None or root in done or thread.origin == request.agency:
            continue
        verdict = resend_verdict(version, thread, registry, request.agency)
        until = under_embargo(version) if verdict.event in CONTENT_EVENTS else None
        if until is not None and until > request.requested_at:
            # Delivered to nobody before its time, a resend included: its release reaches the agency.
            [verdict] = embargoed([verdict], until)
        plan.append((version, verdict))
    return plan
