"""The one verdict on a submission, whichever channel it came by (services/gateway/intake.py). No I/O."""

from __future__ import annotations

import json
import tracemalloc
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from services.gateway.idempotency import KeyReuseGuard, alert_id_for
from services.gateway.intake import Accepted, Refused, admit, record_key, suspended
from tests.support.world import alert_json

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
LIMIT = 256 * 1024
VALID = json.dumps(alert_json()).encode()


def verdict(body: bytes, key: str | None, *, key_required: bool = False, keys: KeyReuseGuard | None = None) -> object:
    return admit(
        "IQ-A",
        body,
        key,
        now=NOW,
        keys=keys or KeyReuseGuard(10),
        max_body_bytes=LIMIT,
        key_required=key_required,
    )


def test_each_rule_gives_its_status_and_code() -> None:
    """Too large, not JSON, invalid, a bad key and a reused key each answer with their own status and code."""
    keys = KeyReuseGuard(10)
    verdict(VALID, "k-1", keys=keys)
    cases = [
        verdict(b" " * (LIMIT + 1), "k"),
        verdict(b"{", "k"),
        verdict(json.dumps(alert_json(tlp="PURPLE")).encode(), "k"),
        verdict(VALID, ""),
        verdict(VALID, "x" * 256),
        verdict(VALID, None, key_required=True),
        verdict(json.dumps(alert_json(title="another")).encode(), "k-1", keys=keys),
    ]
    expected = [
        (413, "too_large"),
        (400, "malformed_json"),
        (422, "invalid_alert"),
        (400, "bad_idempotency_key"),
        (400, "bad_idempotency_key"),
        (400, "bad_idempotency_key"),
        (422, "idempotency_key_reused"),
    ]
    assert expected == [(c.status, c.error) for c in cases if isinstance(c, Refused)]


def test_one_agencys_flood_of_keys_pushes_out_no_other_agencys() -> None:
    """A reused key is caught for an agency however many distinct keys another agency has sent since: each
    agency's keys are remembered apart, and only its own oldest make way for its new ones."""
    keys = KeyReuseGuard(10)
    assert not keys.conflicts("JO-B", "b-1", b"first body")
    for n in range(1000):
        assert not keys.conflicts("IQ-A", f"flood-{n}", b"x")
    assert keys.conflicts("JO-B", "b-1", b"another body")
    assert not keys.conflicts("IQ-A", "flood-0", b"another body")  # its own oldest made way
    assert keys.conflicts("IQ-A", "flood-999", b"another body")


def test_a_flood_of_the_longest_keys_costs_what_short_ones_do() -> None:
    """An agency may send 255-character keys: what each remembered key costs must not grow with its length
    (digests, not the key's text), so a flood of distinct keys holds a known amount per agency (settings.py)."""
    keys = KeyReuseGuard(2_000)
    tracemalloc.start()
    try:
        for n in range(2_000):
            keys.conflicts("IQ-A", f"{n:08d}".ljust(255, "k"), b"body %d" % n)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held / 2_000 < 260  # about 200 bytes an entry; the key's own text would have added 300 more


def test_an_invalid_alert_lists_every_problem_at_its_path() -> None:
    """The 422 carries the problems parse_submission found, each at its JSON path."""
    refused = verdict(json.dumps(alert_json(tlp="PURPLE", category="nope")).encode(), "k")
    assert isinstance(refused, Refused)
    assert sorted(field for field, _ in refused.problems) == ["$.category", "$.tlp"]


def test_the_alert_id_derives_from_agency_and_key() -> None:
    """With a key the id is the Idempotency-Key's (the same on every replica and channel); without, a fresh one."""
    first, again = verdict(VALID, "k-7"), verdict(VALID, "k-7")
    assert isinstance(first, Accepted) and isinstance(again, Accepted)
    assert (first.record.alert_id, again.record.alert_id) == (alert_id_for("IQ-A", "k-7"),) * 2
    assert first.record.origin == "IQ-A" and first.record.idempotency_key == "k-7"
    unkeyed = [verdict(VALID, None) for _ in range(2)]
    assert len({u.record.alert_id for u in unkeyed if isinstance(u, Accepted)}) == 2


def test_an_update_is_keyed_by_the_alert_it_updates() -> None:
    """An Update goes to the partition of its thread (the alert it references), an Alert to its own id's."""
    original = verdict(VALID, "k-8")
    update = verdict(json.dumps(alert_json(msg_type="Update", references=["thread-1"])).encode(), "k-9")
    assert isinstance(original, Accepted) and isinstance(update, Accepted)
    assert (original.partition_key, update.partition_key) == (original.record.alert_id.encode(), b"thread-1")


def test_a_suspended_agency_is_refused_with_the_http_answer() -> None:
    """The refusal both channels give a suspended agency."""
    assert suspended("JO-B") == Refused(
        403, "agency_suspended", "JO-B is suspended in the registry: it may not use the exchange"
    )


def test_a_kafka_key_is_its_utf8_text() -> None:
    """A record key is the idempotency key as UTF-8 text; a missing or undecodable one is no key."""
    assert [record_key(b"k-1"), record_key("مفتاح".encode()), record_key(None), record_key(b"\xff")] == [
        "k-1",
        "مفتاح",
        None,
        None,
    ]


BODIES = st.one_of(
    st.binary(max_size=64),
    st.builds(
        lambda fields: json.dumps(alert_json(**fields)).encode(),
        st.dictionaries(
            st.sampled_from(["tlp", "title", "severity", "category", "releasable_to", "msg_type", "summary"]),
            st.one_of(st.text(max_size=8), st.integers(), st.none(), st.lists(st.text(max_size=3), max_size=2)),
            max_size=3,
        ),
    ),
)


@given(body=BODIES, key=st.text(min_size=0, max_size=300))
def test_with_a_key_both_channels_give_the_same_verdict(body: bytes, key: str) -> None:
    """Whatever the body and key, Kafka (a key required) and HTTP (a key optional) agree when a key is given."""
    assert verdict(body, key) == verdict(body, key, key_required=True)


def test_an_idempotency_key_that_is_not_utf8_is_refused_not_a_crash() -> None:
    """Header bytes that are not UTF-8 reach the gateway as surrogates: a clear 400, not a 500 (review finding)."""
    refused = verdict(VALID, "key-\udcff\udcfe")
    assert isinstance(refused, Refused)
    assert (refused.status, refused.error) == (400, "bad_idempotency_key")
