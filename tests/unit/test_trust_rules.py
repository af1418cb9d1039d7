"""The pure rules of the trust boundary: what an alert id is, which query strings pass, who sees whose
outstanding acks, and how the internal credential is checked. No I/O."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from services.common.internal import is_alert_id, presented, query_problem, token_problem
from services.common.registry.model import Principal
from services.gateway.access import AlertsQuery, Refusal, Scope, alerts_query, outstanding_scope, path_problem


@given(st.uuids())
def test_every_issued_alert_id_is_an_alert_id(value: uuid.UUID) -> None:
    """The gateway issues str(uuid): each one passes."""
    assert is_alert_id(str(value)) is True


@given(st.text())
def test_only_the_canonical_text_of_a_uuid_is_an_alert_id(text: str) -> None:
    """Any text that passes is exactly what uuid prints for it: one spelling per alert, nothing else."""
    if is_alert_id(text):
        assert str(uuid.UUID(text)) == text


@given(st.uuids(), st.sampled_from(["?", "/", "..", "#", "\x00", "&", "\n", " ", "%", "=", ";"]), st.booleans())
def test_an_alert_id_with_anything_around_it_is_not_one(value: uuid.UUID, extra: str, before: bool) -> None:
    """A reserved or control character before or after a valid id makes it invalid."""
    text = extra + str(value) if before else str(value) + extra
    assert (is_alert_id(text), path_problem({"alert_id": text}) is None) == (False, False)


def test_other_spellings_of_a_uuid_are_not_alert_ids() -> None:
    """Upper case, braces, URN and hex-only forms name the same UUID but are refused."""
    value = uuid.UUID("5b0c8f3e-2d41-4f6a-9c7e-1a2b3c4d5e6f")
    spellings = [str(value).upper(), "{" + str(value) + "}", value.urn, value.hex, str(value).replace("0", "\u0660")]
    assert [is_alert_id(s) for s in spellings] == [False] * 5


def test_a_path_parameter_nobody_described_is_refused() -> None:
    """A new route's parameter is 404 until access.py says what it may be (closed by default)."""
    assert (path_problem({"alert_id": str(uuid.uuid4())}), path_problem({"agency": "JO-B"}) is not None) == (
        None,
        True,
    )


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ([], None),
        (["agency"], None),
        (["agency", "agency"], "query parameter 'agency' given more than once"),
        (["viewer"], "unknown query parameter 'viewer'"),
        (["agency", "Agency"], "unknown query parameter 'Agency'"),
    ],
)
def test_query_problem(names: list[str], expected: str | None) -> None:
    """Only allowed names, each at most once."""
    assert query_problem(names, allowed={"agency"}) == expected


def test_a_required_parameter_must_be_there() -> None:
    """A missing required parameter is named."""
    assert query_problem(["viewer"], allowed={"viewer", "viewer_kind"}, required={"viewer", "viewer_kind"}) == (
        "missing query parameter 'viewer_kind'"
    )


AGENCY: Principal = ("agency", "JO-B")
OPERATOR: Principal = ("operator", "desk")
OWN = "an agency sees only its own outstanding acknowledgements"
TWICE = "query parameter 'agency' given more than once"


@pytest.mark.parametrize(
    ("principal", "query", "expected"),
    [
        (AGENCY, [], Scope("JO-B")),
        (AGENCY, [("agency", "JO-B")], Scope("JO-B")),
        (
            AGENCY,
            [("agency", "IQ-A")],
            Refusal(403, "forbidden", "an agency sees only its own outstanding acknowledgements"),
        ),
        (
            AGENCY,
            [("agency", "")],
            Refusal(403, "forbidden", "an agency sees only its own outstanding acknowledgements"),
        ),
        (
            AGENCY,
            [("agency", "JO-B"), ("agency", "IQ-A")],
            Refusal(400, "bad_query", "query parameter 'agency' given more than once"),
        ),
        (AGENCY, [("viewer_kind", "operator")], Refusal(400, "bad_query", "unknown query parameter 'viewer_kind'")),
        (OPERATOR, [], Scope(None)),
        (OPERATOR, [("agency", "")], Scope(None)),
        (OPERATOR, [("agency", "IQ-A")], Scope("IQ-A")),
        (
            OPERATOR,
            [("agency", "IQ-A"), ("agency", "JO-B")],
            Refusal(400, "bad_query", "query parameter 'agency' given more than once"),
        ),
    ],
)
def test_outstanding_scope(principal: Principal, query: list[tuple[str, str]], expected: Scope | Refusal) -> None:
    """An agency's scope is itself whatever it asks; an operator names one agency or none."""
    assert outstanding_scope(principal, query) == expected


@given(st.text(), st.lists(st.tuples(st.sampled_from(["agency", "x"]), st.text()), max_size=3))
def test_an_agency_never_scopes_beyond_itself(name: str, query: list[tuple[str, str]]) -> None:
    """For every query an agency can send, the answer is its own acks or a refusal."""
    scope = outstanding_scope(("agency", name), query)
    assert isinstance(scope, Refusal) or scope == Scope(name)


@pytest.mark.parametrize(
    ("principal", "query", "expected"),
    [
        (OPERATOR, [], AlertsQuery({})),
        (
            OPERATOR,
            [("since", "2026-12-03T10:00:00+03:00"), ("state", "overdue"), ("origin", "IQ-A"), ("limit", "1000")],
            AlertsQuery({"since": "2026-12-03T10:00:00+03:00", "state": "overdue", "origin": "IQ-A", "limit": "1000"}),
        ),
        (OPERATOR, [("since", "2026-12-03T10:00:00Z")], AlertsQuery({"since": "2026-12-03T10:00:00Z"})),
        (
            OPERATOR,
            [("since", "2026-12-03T10:00:00")],
            Refusal(400, "bad_query", "since is an ISO 8601 time with its offset, such as 2026-12-03T10:00:00Z"),
        ),
        (
            OPERATOR,
            [("state", "open"), ("state", "settled")],
            Refusal(400, "bad_query", "query parameter 'state' given more than once"),
        ),
        (OPERATOR, [("limit", "1001")], Refusal(400, "bad_query", "limit is a whole number from 1 to 1000")),
        (OPERATOR, [("origin", "iq-a")], Refusal(400, "bad_query", "origin is an agency's code, such as JO-GID")),
        (AGENCY, [], Refusal(403, "forbidden", "only operators list alerts; an agency reads its own by id")),
        (
            AGENCY,
            [("debug", "1")],
            Refusal(403, "forbidden", "only operators list alerts; an agency reads its own by id"),
        ),
    ],
)
def test_alerts_query(principal: Principal, query: list[tuple[str, str]], expected: AlertsQuery | Refusal) -> None:
    """Only an operator lists alerts (an agency is refused before its query is read); each parameter in its form."""
    assert alerts_query(principal, query) == expected


TOKEN = SecretStr("k" * 40)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer " + "k" * 40, True),
        ("bearer " + "k" * 40, True),
        (None, False),
        ("", False),
        ("Bearer ", False),
        ("Bearer " + "k" * 39, False),
        ("Bearer " + "k" * 40 + "k", False),
        ("Basic " + "k" * 40, False),
        ("Bearer " + "ķ" * 40, False),
    ],
)
def test_presented(header: str | None, expected: bool) -> None:
    """Only the exact token under the Bearer scheme is accepted."""
    assert presented(header, TOKEN) is expected


def test_an_empty_token_opens_nothing() -> None:
    """Even a header matching an (impossible) empty configured token is refused."""
    assert presented("Bearer ", SecretStr("")) is False


@pytest.mark.parametrize(
    ("token", "ok"),
    [("", False), ("a" * 31, False), ("a" * 32, True), ("a" * 16 + " " + "a" * 16, False), ("é" * 32, False)],
)
def test_token_problem(token: str, ok: bool) -> None:
    """At least 32 printable ASCII characters, no spaces."""
    assert (token_problem(token) is None) is ok
