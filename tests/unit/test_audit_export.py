"""A partner's audit export holds its own alerts' entries and the copies it received, and names nobody else."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from services.auditor.chain import seal
from services.auditor.export import partner_share, reason_kept
from services.auditor.service import CORRELATION_KINDS, entries_for
from services.common.records import AlertRouted, AuditRecorded, RoutingDecision
from services.common.registry import AgencyEntry, Agreement, Registry, RegistryPublished
from services.router.policy import decide
from tests.unit.samples import enriched, sample_alert

AT = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
CODES = ["IQ-A", "JO-B", "SA-C", "KW-D", "EG-E"]
ALERT_IDS = ["0b6c2f9e-5a4e-4f1e-9a43-7d1c1f0e2a11", "5d0e8b7a-3c2f-4e6a-8f9b-1a2b3c4d5e6f"]
# Prose that names agencies, the way policy.py's reasons do ("releasable_to names only JO-B, SA-C").
REASONS = st.one_of(
    st.lists(st.sampled_from([*CODES, "only", "names", "releasable_to", "suspended", "TLP:RED"]), max_size=5).map(
        " ".join
    ),
    st.sampled_from(ALERT_IDS).map(lambda a: f"received {a}"),
    st.just("received SA-C"),
)
RULES = st.sampled_from(["shared", "follows_original", "not_releasable", "originator", "withdrawn", "agency_inactive"])


def entry(
    origin: str, agency: str, kind: str, rule: str, reason: str, agreement_id: str | None = None
) -> AuditRecorded:
    return AuditRecorded(
        recorded_at=AT,
        kind=kind,
        alert_id=ALERT_IDS[0],
        msg_type="Alert",
        origin=origin,
        agency=agency,
        rule=rule,
        reason=reason,
        agreement_id=agreement_id,
        copy_sha256="ab" * 32 if kind == "delivered" else None,
        registry_version=3,
        routed_at=AT,
    )


@st.composite
def trails(draw: st.DrawFn) -> list[AuditRecorded]:
    sealed: list[AuditRecorded] = []
    for _ in range(draw(st.integers(0, 25))):
        rule = draw(RULES)
        agreement = draw(st.sampled_from([None, "AG-1", "AG-2"]))
        reason = draw(st.one_of(REASONS, st.just(f"shared under {agreement}")))
        unsealed = entry(
            draw(st.sampled_from(CODES)),
            draw(st.sampled_from(CODES)),
            draw(st.sampled_from(["delivered", "withheld", *CORRELATION_KINDS.values()])),
            rule,
            reason,
            agreement,
        )
        sealed.append(seal(unsealed, sealed[-1] if sealed else None))
    return sealed


def partner_hash(line: dict[str, object]) -> str:
    """The hash as a partner recomputes it from an exported line, with only the README's formula."""
    fields = {k: v for k, v in line.items() if k != "hash"}
    body = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{line['prev_hash']}\n{body}".encode()).hexdigest()


@given(trails(), st.sampled_from(CODES))
def test_export_holds_exactly_what_the_partner_may_see(trail: list[AuditRecorded], partner: str) -> None:
    """An entry is exported iff the partner is among those who may see it: the alert's originator, and the
    agency a copy was delivered to; never an entry about a correlation; in trail order."""
    copies = ("delivered", "withheld")
    may_see = [
        {e.origin} | ({e.agency} if e.kind == "delivered" else set()) if e.kind in copies else set() for e in trail
    ]
    expected = [e.seq for e, who in zip(trail, may_see, strict=True) if partner in who]
    assert expected == [x.entry.seq for x in partner_share(trail, partner)]


@given(trails(), st.sampled_from(CODES))
def test_a_received_copy_names_only_the_partner_and_the_originator(trail: list[AuditRecorded], partner: str) -> None:
    """Every exported line about another originator's alert, read as text, names no agency but the partner and
    that originator; the originator's own lines are never reduced."""
    for exported in partner_share(trail, partner):
        text = json.dumps(exported.line())
        if exported.entry.origin == partner:
            unreduced: tuple[str, ...] = ()
            assert unreduced == exported.reduced
        else:
            named = {code for code in CODES if code in text}
            assert set() == named - {partner, exported.entry.origin}


@given(trails(), st.sampled_from(CODES))
def test_an_unreduced_line_verifies_on_its_own(trail: list[AuditRecorded], partner: str) -> None:
    """The partner recomputes the hash of every line exported whole from the JSON alone; a reduced line
    names what was left out, and its hash no longer recomputes."""
    for exported in partner_share(trail, partner):
        line = json.loads(json.dumps(exported.line()))
        assert list(exported.reduced) == line["reduced"]
        recomputed = partner_hash(line["entry"])
        assert (recomputed == exported.entry.hash) == (not exported.reduced)


def test_the_issue_example() -> None:
    """B's export of A's alert withheld from it (naming C), A's alert delivered to it, and its own alert: the
    withheld one is absent, the delivered one keeps its agreement, and B's own decisions keep their reasons."""
    trail = [
        entry("IQ-A", "JO-B", "withheld", "not_releasable", "releasable_to names only SA-C"),
        entry("IQ-A", "SA-C", "delivered", "shared", "shared under AG-1", "AG-1"),
        entry("IQ-A", "JO-B", "delivered", "shared", "shared under AG-1", "AG-1"),
        entry("IQ-A", "JO-B", "delivered", "withdrawn", "releasable_to names only SA-C"),
        entry("JO-B", "SA-C", "withheld", "agency_inactive", "SA-C is suspended in the registry"),
        entry("JO-B", "JO-B", "withheld", "originator", "submitted the alert"),
    ]
    expected = [
        ("IQ-A", "delivered", "shared under AG-1", []),
        ("IQ-A", "delivered", None, ["reason"]),
        ("JO-B", "withheld", "SA-C is suspended in the registry", []),
        ("JO-B", "withheld", "submitted the alert", []),
    ]
    lines = [x.line() for x in partner_share(trail, "JO-B")]
    assert expected == [(x["entry"]["origin"], x["entry"]["kind"], x["entry"]["reason"], x["reduced"]) for x in lines]


def test_a_shared_reason_is_kept_only_when_it_names_the_entrys_own_agreement() -> None:
    """ "shared under X" is kept for the copy sent under X, and left out when it names anything else."""
    own = entry("IQ-A", "JO-B", "delivered", "shared", "shared under AG-1", "AG-1")
    other = entry("IQ-A", "JO-B", "delivered", "shared", "shared under AG-1 with SA-C", "AG-1")
    expected = [(), ("reason",)]
    assert expected == [x.reduced for x in partner_share([own, other], "JO-B")]


def test_the_reason_the_router_writes_for_a_copy_is_kept() -> None:
    """The reason policy.decide gives a delivered copy is one a partner reads as recorded (so its entry's
    hash recomputes); the reason it gives a withheld one, naming the releasable_to list, is not."""
    agencies = [AgencyEntry(code=c, name=c, country=c[:2]) for c in ("IQ-A", "JO-B", "SA-C")]
    agreement = Agreement(
        id="AG-1", kind="multilateral", parties=["IQ-A", "JO-B", "SA-C"], categories=["*"], max_tlp="AMBER"
    )
    registry = Registry(
        RegistryPublished(
            version=1,
            sha256="x",
            published_at=AT,
            published_by="t",
            source="t",
            agencies=agencies,
            agreements=[agreement],
        )
    )
    alert = enriched(sample_alert(affected_countries=["IQ", "JO", "SA"], releasable_to=["JO-B"]), origin="IQ-A")
    verdicts = {v.agency: v for v in decide(alert, registry)}
    copy, withheld = verdicts["JO-B"], verdicts["SA-C"]
    assert (copy.rule, withheld.rule) == ("shared", "not_releasable")
    expected = [True, False]
    assert expected == [
        reason_kept(entry("IQ-A", v.agency, "delivered", v.rule, v.reason, v.agreement_id)) for v in (copy, withheld)
    ]


def test_a_decision_about_a_correlation_is_in_no_partners_export() -> None:
    """The router's decision about a correlation names JO-B's later alert, whose originator it is: its entries
    (whom the router told of the other thread, IQ-A's, and whom not) are in neither JO-B's export nor the
    export of an agency told, while JO-B's own alert's decisions still are."""
    copies = AlertRouted(
        alert_id=ALERT_IDS[1],
        origin="JO-B",
        msg_type="Alert",
        severity="Severe",
        urgency="Expected",
        routed_at=AT,
        registry_version=3,
        decisions=(
            RoutingDecision(
                agency="SA-C", delivered=True, rule="shared", reason="shared under AG-1", agreement_id="AG-1"
            ),
            RoutingDecision(agency="KW-D", delivered=False, rule="no_agreement", reason="no agreement"),
        ),
    )

    correlation = msgspec.structs.replace(
        copies,
        decisions=(
            RoutingDecision(
                agency="JO-B", delivered=True, rule="correlated", reason="entitled to both", event="alert.correlated"
            ),
            RoutingDecision(
                agency="SA-C", delivered=True, rule="correlated", reason="entitled to both", event="alert.correlated"
            ),
            RoutingDecision(
                agency="IQ-A", delivered=True, rule="correlated", reason="entitled to both", event="alert.correlated"
            ),
            RoutingDecision(agency="KW-D", delivered=False, rule="not_entitled", reason="not entitled to both"),
        ),
        correlation_id="6f1c0d2e-3b4a-5c6d-8e7f-901234567890",
    )
    trail: list[AuditRecorded] = []
    for unsealed in [*entries_for(copies, AT), *entries_for(correlation, AT)]:
        trail.append(seal(unsealed, trail[-1] if trail else None))
    kinds = [e.kind for e in trail]
    assert kinds == ["delivered", "withheld", *["correlation_notified"] * 3, "correlation_withheld"]
    exported = {code: [(x.entry.agency, x.entry.kind) for x in partner_share(trail, code)] for code in CODES}
    expected = {
        "IQ-A": [],
        "JO-B": [("SA-C", "delivered"), ("KW-D", "withheld")],
        "SA-C": [("SA-C", "delivered")],
        "KW-D": [],
        "EG-E": [],
    }
    assert expected == exported
