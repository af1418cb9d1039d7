"""Who is told of a correlation: the same rules as the alerts themselves. Pure: no I/O.

The correlator finds two alerts of different originators carrying one value (AlertCorrelated, key a's
thread) and tells nobody; the router, the only writer to agency topics, turns it into `alert.correlated`
notices. An agency is told that threads a and b carry the value only when it could read the value in both
of them itself, so a notice reveals no alert, and no field of one, that the agency was not sent:

    for each side s of the correlation (its thread, that thread's latest routed version V):
        entitled(s) = s's originator (it wrote V)
                    + each agency whose copy of the thread IS V (threads.Holding.version), and in whose copy of
                      V, as it was sent and as today's registry would send it (policy.holder_verdict), the value
                      reads in every field of V that carries it (`indicators`, `subjects`, `summary`)
    told = entitled(a) and entitled(b), the agencies active in the registry

Nobody is told about a side whose thread is cancelled, unknown to the router (outside its window, or a
version it refused), or whose latest version no longer carries the value: an agency that held only an earlier
version, or a copy of a later one under embargo, is told nothing (never more than it was sent). A side is
believed only where its originator is the thread's: the correlator files a version under the thread its
`references` name, and the router refuses a follow-up from anyone but the originator, so an agency sending
an Update "into" another's thread with a guessed value would otherwise learn whether that thread carries it.

The two threads usually live on different partitions, each decided by its owner in its own transactions,
so the decision has two phases on alerts.correlated (co-partitioned with alerts.enriched):

    phase 1, owner of a's partition:  entitled(a) -> the same record with `candidates` and `a` set to the
                                      version checked, to b's thread's partition
    phase 2, owner of b's partition:  candidates and entitled(b) -> the notices, and one AlertRouted
                                      (`correlation_id`) recording who was told and that nobody else was

Each phase reads its thread only once the router has routed everything alerts.enriched held when the
correlation was read (service.py), so a correlation found before its alerts were routed is not decided on
a thread half known. Phase 2 is decided once per correlation id (the routed log): a correlator's repeat, or
phase 1 run twice, tells nobody twice.

A correlation is one value shared by two threads, so two threads sharing many values are many correlations:
an agency copying 300 phones of an alert it was sent into three of its own made 900 notices, to itself and
to the first alert's originator, and about 36 s of the router's work (red team). Each agency is told of at
most PAIR_NOTICES values per pair of threads (`within_budget`): an agency past it is among the not told, and
a correlation every candidate is past is not decided at all (`spent`: its threads are not even read).
Counted per recipient, from what that recipient itself was told, so what one agency receives never depends
on what another was told (which would be an oracle, like the cap counts the red team read). The counts are
the router's memory since it claimed the partition, not the log's: a restart or a rebalance lets each
agency be told of PAIR_NOTICES more values of a pair.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import msgspec

from services.common.events import CONTENT_EVENTS, CORRELATED
from services.common.records import (
    Alert,
    AlertCorrelated,
    AlertEnriched,
    AlertShared,
    CorrelatedAlert,
    CorrelationNotice,
)
from services.common.registry import Registry
from services.common.sightings import sightings_of
from services.router.policy import Verdict, holder_verdict
from services.router.redaction import shared_copy
from services.router.threads import Thread

# How many values of one pair of threads each agency is told of (module docstring): a notice says the two
# threads are connected and by what; a few values make the case, and the duty desk sees every correlation.
PAIR_NOTICES = 3

# The rule of a decision that sent alert.correlated, and of one that did not. Those not told are recorded
# alike, whatever kept each: the decision is on the later alert's originator's record, and which agencies
# hold the other thread is not the originator's to learn.
CORRELATED_RULE = "correlated"
NOT_ENTITLED = "not_entitled"
_TOLD = "holds both alerts with the value unredacted in both copies (or originated one)"
_NOT_TOLD = "was not told: it does not hold both alerts with the value unredacted"


def carrying_fields(alert: Alert, kind: str, value: str) -> frozenset[str]:
    """The redactable fields of `alert` that carry `kind:value` (empty: it does not carry it)."""
    for mention in sightings_of(alert):
        if mention.kind == kind and mention.value == value:
            return frozenset(mention.fields)
    return frozenset()


def entitled(
    side: CorrelatedAlert,
    kind: str,
    value: str,
    thread: Thread | None,
    version: AlertEnriched | None,
    registry: Registry,
) -> frozenset[str]:
    """The agencies that may be told that `side`'s thread carries the value (module docstring): `thread` as the
    routed log knows it, `version` its latest routed version (None if either is unknown)."""
    if thread is None or version is None or thread.cancelled or not believed(side, thread, version):
        return frozenset()
    fields = carrying_fields(version.alert, kind, value)
    if not fields:
        return frozenset()
    told = {thread.origin}
    shown: dict[frozenset[str], bool] = {}  # by the fields removed: holders under one agreement share a copy
    for code, holding in thread.holders.items():
        if holding.version != version.alert_id:
            continue
        verdict = holder_verdict(code, version, thread, registry)
        if verdict.event not in CONTENT_EVENTS:
            continue
        removed = holding.redact | verdict.redact
        if removed not in shown:
            shown[removed] = _reads(version.alert, removed, kind, value, fields)
        if shown[removed]:
            told.add(code)
    return frozenset(told)


def believed(side: CorrelatedAlert, thread: Thread, version: AlertEnriched) -> bool:
    """Whether `side` is its thread's: a version filed under a thread its sender does not own (a follow-up the
    router refused, which the correlator indexed anyway) is not. Such a side decides nothing, not even that
    nobody is told: the correlation's id names only the two threads and the value, so a decision recorded for
    it would have made the threads' genuine correlation a duplicate, told to nobody (red team, round 5: a third
    agency holding one thread silenced its correlation with another agency's alert before it existed)."""
    return side.thread_id == thread.root and side.origin == thread.origin and version.origin == thread.origin


def _reads(alert: Alert, removed: frozenset[str], kind: str, value: str, fields: frozenset[str]) -> bool:
    """Whether the copy of `alert` without `removed` shows the value in every field of the alert that carries it.

    Read from the copy itself, not from the field names: the redaction also masks a removed field's values where
    other fields quote them (a subject's name inside a domain withholds that indicator), which only the copy
    shows."""
    if removed & fields:
        return False
    copy, _ = shared_copy(alert, removed)
    seen = msgspec.structs.replace(
        alert, summary=copy.summary, indicators=copy.indicators or [], subjects=copy.subjects or []
    )
    return carrying_fields(seen, kind, value) == fields


def first_phase(
    correlation: AlertCorrelated,
    thread: Thread | None,
    version: AlertEnriched | None,
    registry: Registry,
) -> AlertCorrelated:
    """The record for the owner of b's thread: a's candidates, and `a` naming the version they hold."""
    candidates = entitled(correlation.a, correlation.kind, correlation.value, thread, version, registry)
    a = correlation.a
    if version is not None and candidates:
        fields = sorted(carrying_fields(version.alert, correlation.kind, correlation.value))
        a = CorrelatedAlert(alert_id=version.alert_id, thread_id=a.thread_id, origin=a.origin, fields=fields)
    return msgspec.structs.replace(correlation, a=a, candidates=sorted(candidates))


def told(
    correlation: AlertCorrelated,
    thread: Thread | None,
    version: AlertEnriched | None,
    registry: Registry,
) -> list[str]:
    """Phase 2: the agencies told, in code order: a's candidates entitled to b, active in the registry."""
    candidates = frozenset(correlation.candidates or ())
    both = candidates & entitled(correlation.b, correlation.kind, correlation.value, thread, version, registry)
    return sorted(code for code in both if (agency := registry.agencies.get(code)) is not None and agency.active)


def pair_of(correlation: AlertCorrelated) -> tuple[str, str]:
    """The two threads of a correlation, in a fixed order: the key of its notices' budget."""
    first, second = sorted((correlation.a.thread_id, correlation.b.thread_id))
    return first, second


def spent(candidates: list[str] | None, told_before: Mapping[str, int]) -> bool:
    """Whether every candidate of phase 1 was told of PAIR_NOTICES values of this pair already: nobody can be
    told, so phase 2 need not read b's thread at all."""
    return all(told_before.get(code, 0) >= PAIR_NOTICES for code in candidates or ())


def within_budget(recipients: list[str], told_before: Mapping[str, int]) -> list[str]:
    """The recipients still to be told of a value of this pair (each one's own count, nobody else's)."""
    return [code for code in recipients if told_before.get(code, 0) < PAIR_NOTICES]


def verdicts(registry: Registry, recipients: list[str]) -> list[Verdict]:
    """One verdict per agency of the registry: alert.correlated for each recipient, not_entitled for the rest."""
    chosen = set(recipients)
    return [
        Verdict(agency.code, True, CORRELATED_RULE, _TOLD, event=CORRELATED)
        if agency.code in chosen
        else Verdict(agency.code, False, NOT_ENTITLED, _NOT_TOLD)
        for agency in registry.agencies_by_code
    ]


def notice(correlation: AlertCorrelated, version_b: AlertEnriched, recipient: str, now: datetime) -> AlertShared:
    """The alert.correlated notice to `recipient`: the two threads and the versions of them it holds (or sent),
    the value, and nothing else: no other agency, no content of either alert."""
    a, b = correlation.a, correlation.b
    return AlertShared(
        alert_id=version_b.alert_id,
        recipient=recipient,
        origin=version_b.origin,
        event_type=CORRELATED,
        agreement_id="",
        thread_id=b.thread_id,
        shared_at=now,
        # A connection to look at, not a threat in itself: neither alert's priority, which the recipient may
        # not have been told, but the routine one.
        priority=3,
        correlation=CorrelationNotice(
            correlation_id=correlation.correlation_id,
            kind=correlation.kind,
            value=correlation.value,
            thread_ids=[a.thread_id, b.thread_id],
            alert_ids=[a.alert_id, version_b.alert_id],
        ),
        alert=None,
    )
