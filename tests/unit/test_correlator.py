# ruff: noqa: RUF001, RUF002  (Arabic letters and look-alikes are the point of these tests)
"""The correlator's pure parts: what an alert carries, how names fold, the correlation rule and its id, the
topics' partitions it needs."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from itertools import combinations
from pathlib import Path

from faust.types.tuples import ConsumerMessage
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.records import Indicator, Sighting, Subject
from services.common.settings import KafkaSettings
from services.common.sightings import Mention, indicator_value, name_value, sightings_of, thread_of
from services.common.topics import ALERTS_CORRELATED, ALERTS_ENRICHED, CORRELATOR_INDEX_CHANGELOG, CORRELATOR_SIGHTINGS
from services.correlator.app import count_handled_only, new_app, partition_problems
from services.correlator.correlation import correlated, correlation_id
from services.correlator.index import expired, record
from services.correlator.settings import CorrelatorSettings
from tests.unit.samples import enriched, sample_alert

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
WINDOW = timedelta(days=30)


def seen(alert_id: str, origin: str, *, thread: str | None = None, at: datetime = T0) -> Sighting:
    return Sighting(alert_id=alert_id, thread_id=thread or alert_id, origin=origin, submitted_at=at, fields=("x",))


def by_kind(mentions: list[Mention]) -> dict[tuple[str, str], tuple[str, ...]]:
    return {(m.kind, m.value): m.fields for m in mentions}


# What an alert carries.


def test_every_indicator_and_subject_value_is_one_mention_with_the_fields_that_carry_it() -> None:
    """Given and extracted indicators, subject names and identifiers each give one mention; `fields` names the
    redactable fields that carry it (the summary when it quotes the value, however written)."""
    alert = sample_alert(
        summary="Call +964 770-123-4567 or write to a.rahmani [at] cash-relay [dot] example. Khalid Rahmani paid.",
        indicators=[
            Indicator(type="phone", value="+9647701234567"),
            Indicator(type="email", value="a.rahmani@cash-relay.example"),
            Indicator(type="domain", value="evil.example"),
        ],
        subjects=[
            Subject(
                kind="person",
                name="Khalid Rahmani",
                identifiers={"passport": "N 123-4567", "Mobile": "+964 770 999 8888"},
            )
        ],
    )
    expected = {
        ("phone", "+9647701234567"): ("summary", "indicators"),
        ("email", "a.rahmani@cash-relay.example"): ("summary", "indicators"),
        ("domain", "evil.example"): ("indicators",),
        ("subject_name", "khalid rahmani"): ("summary", "subjects"),
        ("subject_identifier", "n1234567"): ("subjects",),
        ("phone", "+9647709998888"): ("subjects",),
    }
    assert expected == by_kind(sightings_of(alert))


def test_a_cancel_carries_nothing_and_an_update_belongs_to_its_thread() -> None:
    """A Cancel contributes no value; an Update's thread is its first reference, an original's its own id."""
    cancel = sample_alert(msg_type="Cancel", references=["first-id"])
    update = enriched(sample_alert(msg_type="Update", references=["first-id", "second-id"]), alert_id="third-id")
    original = enriched(sample_alert(), alert_id="first-id")
    assert sightings_of(cancel) == []
    assert (thread_of(update), thread_of(original)) == ("first-id", "first-id")
    assert sightings_of(update.alert) == sightings_of(original.alert)


def test_indicator_values_written_differently_are_one_value() -> None:
    """Phones in any format or script of digits, hex and bech32 wallets in any case, defanged e-mails and
    domains, IPs and IBANs with spacing, all meet their plain form; case-sensitive base58 wallets keep theirs."""
    same = [
        ("phone", ["+964 770 123 4567", "+964-770-123-4567", "+9647701234567", "+٩٦٤٧٧٠١٢٣٤٥٦٧"]),
        ("crypto_wallet", ["0x52908400098527886E0F7030069857D2E4169EE7", "0x52908400098527886e0f7030069857d2e4169ee7"]),
        ("crypto_wallet", ["bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "BC1QAR0SRRR7XFKVY5L643LYDNW9RE59GTZZWF5MDQ"]),
        (
            "email",
            ["a.rahmani@cash-relay.example", "a.rahmani [at] cash-relay [dot] example", "A.Rahmani@Cash-Relay.Example"],
        ),
        ("domain", ["cash-relay.example", "cash-relay[.]example", "Cash-Relay.Example."]),
        ("ip", ["10.0.0.1", "10.0.0[.]1"]),
        ("iban", ["IQ98 NBIQ 8501 2345 6789 012", "iq98nbiq850123456789012"]),
    ]
    for kind, spellings in same:
        assert len({indicator_value(kind, s) for s in spellings}) == 1, (kind, spellings)
    legacy = ["1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "1boatslrhtknngkdxeeobr76b53lettpyt"]
    assert len({indicator_value("crypto_wallet", s) for s in legacy}) == 2


def test_arabic_name_variants_fold_together() -> None:
    """محمد with or without harakat, shadda or tatweel, and أ/إ/آ/ٱ/ا alef forms, ى/ي and ة/ه, are one name:
    the redaction's folding (services/common/folding.py), so the correlator and the router agree."""
    variants = [
        "محمد أحمد الراشدي",
        "مُحَمَّد أَحْمَد الرَّاشِدِي",
        "محمّد احمد الراشدى",
        "مـحـمـد إحمد ٱلراشدي",
        "محمد\u200c آحمد الراشدي",
    ]
    assert {name_value(v) for v in variants} == {"محمد احمد الراشدي"}
    assert name_value("فاطمة") == name_value("فاطمه")
    assert name_value("محمد") != name_value("محمود")


def test_latin_name_variants_fold_together_and_short_names_are_left_out() -> None:
    """Case, accents, punctuation and spacing do not separate a name; a name under four letters is no value."""
    assert {
        name_value(v) for v in ["Khalid Al-Rahmani", "KHALID  al rahmani", "Khâlid Al‐Rahmani", "Кhalid Al Rahmani"]
    } == {"khalid al rahmani"}
    assert name_value("Ali") == ""
    alert = sample_alert(summary="", indicators=[], subjects=[Subject(kind="person", name="Ali")])
    assert sightings_of(alert) == []


# The correlation id.


def test_the_correlation_id_is_deterministic_and_names_the_pair_and_value() -> None:
    """The same two alerts and value give the same id whichever comes first; another value or pair does not."""
    first = correlation_id("a-1", "b-2", "phone", "+9647701234567")
    assert first == correlation_id("b-2", "a-1", "phone", "+9647701234567")
    assert uuid.UUID(first).version == 5
    others = {
        correlation_id("a-1", "b-2", "phone", "+9647701234568"),
        correlation_id("a-1", "b-2", "subject_identifier", "+9647701234567"),
        correlation_id("a-1", "c-3", "phone", "+9647701234567"),
    }
    assert first not in others and len(others) == 3


def test_the_record_names_the_earlier_alert_a_and_leaves_candidates_to_the_router() -> None:
    """`a` is the earlier alert, `b` the later; `candidates` is always None from the correlator."""
    early, late = seen("a-1", "IQ-A", at=T0), seen("b-2", "JO-B", at=T0 + timedelta(hours=1))
    step = record([late], early, window=WINDOW, cap=10)
    (pair,) = step.pairs
    out = correlated("phone", "+1555", pair, found_at=T0)
    assert (out.a.alert_id, out.b.alert_id, out.candidates) == ("a-1", "b-2", None)
    assert out.correlation_id == correlation_id("a-1", "b-2", "phone", "+1555")


# The correlation rule.


def test_only_different_originators_correlate() -> None:
    """Two alerts of one originator share a value without correlating; a third originator's correlates with
    both."""
    entries: list[Sighting] = []
    found = []
    for s in (seen("a-1", "IQ-A"), seen("a-2", "IQ-A"), seen("b-1", "JO-B")):
        step = record(entries, s, window=WINDOW, cap=10)
        entries, found = step.entries, found + [(x.alert_id, y.alert_id) for x, y in step.pairs]
    assert sorted(found) == [("a-1", "b-1"), ("a-2", "b-1")]


def test_the_window_bounds_a_correlation_and_prunes_what_it_passed() -> None:
    """Alerts submitted more than the window apart do not correlate, and the older leaves the entry."""
    old = seen("a-1", "IQ-A", at=T0)
    step = record([old], seen("b-1", "JO-B", at=T0 + WINDOW + timedelta(seconds=1)), window=WINDOW, cap=10)
    assert (step.pairs, [e.alert_id for e in step.entries]) == ([], ["b-1"])
    step = record([old], seen("b-1", "JO-B", at=T0 + WINDOW), window=WINDOW, cap=10)
    assert [(x.alert_id, y.alert_id) for x, y in step.pairs] == [("a-1", "b-1")]


def test_an_update_repeating_a_value_adds_nothing_and_a_replay_emits_again() -> None:
    """An Update of a thread already in the entry changes nothing; the very sighting read again (after a
    crash) emits its correlations again, with the same ids."""
    a, b = seen("a-1", "IQ-A"), seen("b-1", "JO-B")
    entries = record([a], b, window=WINDOW, cap=10).entries
    update = seen("b-2", "JO-B", thread="b-1", at=T0 + timedelta(days=1))
    repeat = record(entries, update, window=WINDOW, cap=10)
    assert (repeat.outcome, repeat.pairs, repeat.entries) == ("repeat", [], entries)
    replay = record(entries, b, window=WINDOW, cap=10)
    assert (replay.outcome, replay.entries) == ("replay", entries)
    assert [(x.alert_id, y.alert_id) for x, y in replay.pairs] == [("a-1", "b-1")]


def test_a_follow_up_from_another_agency_naming_a_thread_does_not_take_its_place() -> None:
    """SA sends an Update naming IQ's thread with a value IQ's thread does not carry yet (the router refuses it,
    after the correlator indexed it): IQ's own later Update carrying the value is still the thread's sighting, and
    correlates with JO's alert; SA's and IQ's sightings of the one thread never pair."""
    probe = seen("probe", "SA-D", thread="iq-1")
    step = record([], probe, window=WINDOW, cap=50)
    iq_update = seen("iq-2", "IQ-A", thread="iq-1", at=T0 + timedelta(hours=1))
    step = record(step.entries, iq_update, window=WINDOW, cap=50)
    assert (step.outcome, step.pairs) == ("new", [])
    jo = seen("jo-1", "JO-B", at=T0 + timedelta(hours=2))
    step = record(step.entries, jo, window=WINDOW, cap=50)
    assert {(a.alert_id, b.alert_id) for a, b in step.pairs} == {("probe", "jo-1"), ("iq-2", "jo-1")}


def test_a_value_carried_by_too_many_originators_stops_correlating() -> None:
    """Past the cap of originators, a new originator's thread is neither added nor correlated (an over-correlating
    value); one of the originators already there still is, up to its own cap."""
    entries = [seen(f"x-{i}", f"O-{i}") for i in range(3)]
    step = record(entries, seen("y-1", "O-9"), window=WINDOW, cap=3)
    assert (step.outcome, step.pairs, step.entries) == ("over_cap", [], entries)
    step = record(entries, seen("y-2", "O-1"), window=WINDOW, cap=3)
    assert step.outcome == "new" and len(step.pairs) == 2


def test_one_agency_flooding_a_value_fills_only_its_own_share() -> None:
    """The red team's attacks: A submits the value again and again. B's and C's threads still correlate with each
    other (A cannot silence them), and how many of A's threads correlate does not depend on B's thread, which A
    was never sent (A cannot count it)."""

    def flood(others: list[Sighting]) -> tuple[int, list[tuple[Sighting, Sighting]]]:
        entries: list[Sighting] = []
        for o in others:
            entries = record(entries, o, window=WINDOW, cap=3, per_origin=4).entries
        mine = 0
        for i in range(10):
            step = record(
                entries, seen(f"a-{i}", "A", at=T0 + timedelta(minutes=i)), window=WINDOW, cap=3, per_origin=4
            )
            mine += step.outcome == "new"
            entries = step.entries
        late = record(entries, seen("c-2", "C", at=T0 + timedelta(hours=1)), window=WINDOW, cap=3, per_origin=4)
        return mine, late.pairs

    b, c = seen("b-1", "B"), seen("c-1", "C")
    with_b, pairs = flood([b, c])
    without_b, _ = flood([c])
    assert with_b == without_b == 4, "A's share is its own"
    assert {(x.alert_id, y.alert_id) for x, y in pairs} >= {("b-1", "c-2")}, "B and C still correlate"


def test_a_pair_of_threads_found_again_keeps_its_id() -> None:
    """An Update of a thread the window pruned comes back as a new sighting: its pair with a thread still in the
    entry is the same correlation (the id names the threads), so the router tells nobody twice."""
    first = correlated("phone", "+1", (seen("t-1", "IQ-A"), seen("w-1", "JO-B")), found_at=T0)
    again = correlated("phone", "+1", (seen("w-1", "JO-B"), seen("t-9", "IQ-A", thread="t-1")), found_at=T0)
    assert first.correlation_id == again.correlation_id


def test_the_sweep_drops_what_the_window_passed_by_the_clock() -> None:
    """`expired` keeps the sightings submitted within the window before now."""
    entries = [seen("a-1", "IQ-A", at=T0), seen("b-1", "JO-B", at=T0 + timedelta(days=10))]
    assert [e.alert_id for e in expired(entries, T0 + WINDOW + timedelta(days=1), WINDOW)] == ["b-1"]
    assert expired(entries, T0 + timedelta(days=100), WINDOW) == []


threads = st.lists(
    st.tuples(st.sampled_from(["IQ-A", "JO-B", "KW-C"]), st.integers(min_value=1, max_value=3)), min_size=1, max_size=8
)


def replayed(
    threads: list[tuple[str, int]], rng: random.Random, spread_days: float, replays: bool
) -> tuple[list[Sighting], set[str]]:
    """The threads' versions read in time order (re-reading the last one to three records at random points, as
    a restart after a crash does when `replays`), and the ids the rule emitted."""
    versions = []
    for t, (origin, count) in enumerate(threads):
        at = T0 + timedelta(days=rng.uniform(0, spread_days))
        versions += [seen(f"t{t}-v{v}", origin, thread=f"t{t}", at=at + timedelta(minutes=v)) for v in range(count)]
    read: list[Sighting] = []
    for s in sorted(versions, key=lambda s: (s.submitted_at, s.alert_id)):
        read.append(s)
        if replays and rng.random() < 0.3:
            read += read[-rng.randint(1, 3) :]
    entries: list[Sighting] = []
    emitted = set()
    for s in read:
        step = record(entries, s, window=WINDOW, cap=100)
        entries = step.entries
        emitted |= {correlation_id(x.alert_id, y.alert_id, "phone", "+1") for x, y in step.pairs}
    return versions, emitted


def expected_ids(versions: list[Sighting]) -> set[str]:
    """The independent statement: every pair of threads from different originators whose first versions were
    submitted within the window, named by those first versions."""
    firsts = [s for s in versions if s.alert_id.endswith("-v0")]
    return {
        correlation_id(x.alert_id, y.alert_id, "phone", "+1")
        for x, y in combinations(firsts, 2)
        if x.origin != y.origin and abs(x.submitted_at - y.submitted_at) <= WINDOW
    }


@settings(max_examples=200, deadline=None)
@given(threads=threads, seed=st.integers(0, 2**32 - 1))
def test_every_pair_is_found_under_one_id_whatever_the_replays(threads: list[tuple[str, int]], seed: int) -> None:
    """Threads within one window, read with re-reads of what was just handled: exactly the expected ids."""
    versions, emitted = replayed(threads, random.Random(seed), spread_days=30, replays=True)
    assert expected_ids(versions) == emitted


@settings(max_examples=200, deadline=None)
@given(threads=threads, seed=st.integers(0, 2**32 - 1), spread_days=st.integers(0, 120))
def test_the_window_and_its_pruning_find_exactly_the_pairs_within_it(
    threads: list[tuple[str, int]], seed: int, spread_days: int
) -> None:
    """Threads spread over up to four windows, read once in time order: exactly the pairs within the window,
    although the entry forgets what the window passed."""
    versions, emitted = replayed(threads, random.Random(seed), spread_days=spread_days, replays=False)
    assert expected_ids(versions) == emitted


def test_the_app_refuses_topics_whose_partitions_do_not_line_up() -> None:
    """The index's changelog must have its sightings topic's partitions, alerts.correlated alerts.enriched's,
    and every topic must exist: otherwise the correlator does not start, and says which."""
    declared = {ALERTS_ENRICHED: 6, CORRELATOR_SIGHTINGS: 6, CORRELATOR_INDEX_CHANGELOG: 6, ALERTS_CORRELATED: 6}
    assert partition_problems(declared) == []
    assert partition_problems({**declared, CORRELATOR_SIGHTINGS: 12, CORRELATOR_INDEX_CHANGELOG: 12}) == []
    (grown,) = partition_problems({**declared, CORRELATOR_INDEX_CHANGELOG: 8})
    assert grown.startswith("correlator.sightings has 6 partitions and correlator.index.changelog 8")
    (apart,) = partition_problems({**declared, ALERTS_CORRELATED: 3})
    assert apart.startswith("alerts.enriched has 6 partitions and alerts.correlated 3")
    missing = {k: v for k, v in declared.items() if k != CORRELATOR_SIGHTINGS}
    assert partition_problems(missing) == ["correlator.sightings does not exist: run `rctc topics apply`"]


async def test_faust_counts_only_handled_events_and_never_takes_a_record_for_read(tmp_path: Path) -> None:
    """An event a stream skipped and acknowledged itself (a rebalance, a recovery) is not counted as done, one
    an Acker put in `handled` is; and a record the fetcher passed on is never taken for read, so its copy
    fetched again after a seek reaches the agents instead of being dropped (services/correlator/app.py)."""
    app = new_app(CorrelatorSettings(kafka=KafkaSettings(security_protocol="PLAINTEXT")), tmp_path)
    handled = count_handled_only(app)
    skipped, done = (ConsumerMessage(ALERTS_ENRICHED, 0, offset, 0.0, 0, [], b"k", b"v", None) for offset in (7, 6))
    for message in (skipped, done):
        message.incref()
    handled.add(done)
    skipped.ack(app.consumer)  # what Event.ack does for an event the stream skipped
    done.ack(app.consumer)
    assert (skipped.acked, done.acked) == (False, True)
    app.consumer._read_offset[skipped.tp] = 7  # what the fetcher does once it passed offset 7 on
    assert app.consumer._read_offset[skipped.tp] is None
    app.consumer._thread.thread_loop.close()  # the consumer's thread has a loop of its own, never started here
