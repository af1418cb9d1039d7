"""Which watchlist entry an alert hit, and why it is on the list, are for operators only: no recipient's copy or
webhook carries them, no record a recipient's view is built from has them, and no agency may read the topics
that do. No I/O (tests/integration/test_watchlist.py checks the same on the broker)."""

from __future__ import annotations

import itertools
import types
import typing
from datetime import UTC, datetime
from typing import Any

import msgspec

from services.cli.tail import AGENCY_RECORD_TYPES, ALSO_ON, RECORD_TYPES
from services.common.acls import AgencyAccess, desired_acls
from services.common.codec import Codec
from services.common.events import CREATED
from services.common.records import AlertEnriched, AlertShared, AlertSubmitted, Indicator, Subject, WatchlistEntryAdded
from services.common.registry import REDACTABLE_FIELDS
from services.common.topics import ALERTS_ENRICHED, WATCHLIST_ENTRIES, load_declarations
from services.common.watchlist import Watchlist, entry_key
from services.common.webhook_body import WebhookBody, webhook_body
from services.enricher.enrich import enrich
from services.router.payload import RecipientCopies, recipient_copy
from services.router.policy import Verdict
from tests.unit.samples import sample_alert

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
REASON = "informant 7 says he is the cell's courier"


def _enriched(watchlist: Watchlist) -> AlertEnriched:
    alert = sample_alert(
        severity="Minor",
        urgency="Expected",
        summary="Khalid Rahmani calls from +964 770 123 4567",
        indicators=[Indicator(type="phone", value="+9647701234567")],
        subjects=[Subject(kind="person", name="Khalid Rahmani", identifiers={"passport": "N0012345"})],
    )
    result = enrich(
        AlertSubmitted(alert_id="a-1", origin="IQ-A", submitted_at=NOW, alert=alert), now=NOW, watchlist=watchlist
    )
    assert isinstance(result, AlertEnriched)
    return result


def _watchlist() -> Watchlist:
    w = Watchlist()
    for kind, value in (("phone", "+964 770 123 4567"), ("name", "RAHMANI, Khalid")):
        entry = WatchlistEntryAdded(kind=kind, value=value, reason=REASON, added_by="operator-cli", added_at=NOW)
        w.apply(entry_key(kind, value), entry)
    return w


def test_a_copy_is_the_same_with_or_without_a_hit(codec: Codec) -> None:
    """For every redaction an agreement may make, the copy of an alert that hit two entries equals the copy
    of the same alert that hit none, field by field, its priority included (the raised priority stays the
    center's: it would tell a recipient that the alert hit the watchlist); neither its record nor its webhook
    body holds an entry's key or reason, or the word watchlist."""
    hit, plain = _enriched(_watchlist()), _enriched(Watchlist())
    assert (hit.watchlist_hits, hit.priority, plain.priority) == (["name:khalid rahmani", "phone:+9647701234567"], 2, 4)
    secrets = [*hit.watchlist_hits, REASON, "watchlist"]
    for size in range(len(REDACTABLE_FIELDS) + 1):
        for redact in itertools.combinations(sorted(REDACTABLE_FIELDS), size):
            verdict = Verdict("JO-A", True, "shared", "shared under X", "X", frozenset(redact), CREATED)
            with_hit, without = recipient_copy(hit, verdict, NOW), recipient_copy(plain, verdict, NOW)
            assert with_hit == without and with_hit.priority == plain.priority
            shared, encoded = RecipientCopies(hit, NOW, codec).copy_for(verdict)
            assert codec.decode(encoded, AlertShared) == shared == with_hit
            for carried in (encoded, webhook_body(with_hit)):
                assert [s for s in secrets if s.encode() in carried.lower()] == []


def _field_paths(kind: Any, prefix: str, seen: set[Any]) -> list[str]:
    """Every field path under a record type (`alert.subjects.name`), through lists, optionals and dicts."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) in (list, tuple, dict, typing.Union):
        return [p for arg in typing.get_args(kind) for p in _field_paths(arg, prefix, seen)]
    if not (isinstance(kind, type) and issubclass(kind, msgspec.Struct)) or kind in seen:
        return []
    hints = typing.get_type_hints(kind)
    paths = []
    for name in kind.__struct_fields__:
        path = f"{prefix}.{name}" if prefix else name
        paths += [path, *_field_paths(hints[name], path, seen | {kind})]
    return paths


def test_only_the_enriched_alert_carries_watchlist_hits() -> None:
    """Of every record on every topic, and the webhook body, only AlertEnriched has a watchlist field: the
    decisions, deliveries, escalations and releases the tracker builds recipients' views from have none."""
    kinds = {*RECORD_TYPES.values(), *AGENCY_RECORD_TYPES.values(), *itertools.chain(*ALSO_ON.values()), WebhookBody}
    found = {f"{k.__name__}: {p}" for k in kinds for p in _field_paths(k, "", set()) if "watchlist" in p}
    assert found == {"AlertEnriched: watchlist_hits"}


def test_no_agency_reads_the_topics_that_hold_entries_or_hits() -> None:
    """watchlist.entries: written by operators, read by the enricher and operators. alerts.enriched (the hits):
    read by no agency, nor by the gateway or the tracker, which answer agencies."""
    wanted = desired_acls(load_declarations(), [AgencyAccess("IQ-NAB", True)], client_id_prefix="rctc")

    def who(topic: str, operation: str) -> set[str]:
        return {a.principal for a in wanted if (a.resource, a.name, a.operation) == ("topic", topic, operation)}

    assert (who(WATCHLIST_ENTRIES, "write"), who(WATCHLIST_ENTRIES, "read")) == (
        {"operator-cli"},
        {"operator-cli", "service-enricher"},
    )
    readers = who(ALERTS_ENRICHED, "read")
    assert [p for p in readers if p.startswith("agency-") or p in ("service-gateway", "service-tracker")] == []
