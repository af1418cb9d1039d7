"""The dispatcher's outcome decision: what an attempt comes to, and the failure class records may carry."""

from __future__ import annotations

import random
import socket
import ssl

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey
from hypothesis import given
from hypothesis import strategies as st

from services.dispatcher.outcome import FAILURES, Decision, Observed, classify, decide
from services.dispatcher.safety import UnsafeDestination
from services.dispatcher.schedule import SCHEDULES, TIERS, give_up_after, max_attempts, tier_for

URGENCIES = st.sampled_from(sorted(SCHEDULES))
KEY = ConnectionKey("receiver.example", 8443, True, True, None, None, None)


def _decide(observed: Observed, attempt: int = 1, urgency: str = "Immediate", waited_s: float = 0.0) -> Decision:
    return decide(observed, attempt=attempt, urgency=urgency, waited_s=waited_s, rng=random.Random(7))


def _connector_error(os_error: OSError) -> aiohttp.ClientConnectorError:
    try:
        raise aiohttp.ClientConnectorError(KEY, os_error) from os_error
    except aiohttp.ClientConnectorError as exc:
        return exc


def test_a_2xx_is_delivered_and_closes_the_circuit() -> None:
    """A 2xx is delivered, with no failure class, and counts as the endpoint's success."""
    assert Decision("delivered", endpoint="success") == _decide(Observed(status=204))


def test_410_gone_is_dead_at_once_and_disables_the_endpoint() -> None:
    """410 Gone is dead on the first attempt and disables the endpoint for every replica."""
    assert Decision("dead", "http_410", endpoint="disable") == _decide(Observed(status=410))


@pytest.mark.parametrize("failure", ["agency_inactive", "no_endpoint", "endpoint_disabled", "refused_destination"])
def test_what_cannot_be_attempted_is_dead_without_blaming_the_endpoint(failure: str) -> None:
    """No endpoint, a disabled one, or a refused destination: dead now, the circuit breaker untouched."""
    assert Decision("dead", failure) == _decide(Observed(failure=failure), attempt=1)


def test_an_open_circuit_defers_until_the_probe_and_gives_up_after_a_bound() -> None:
    """An open circuit defers (not an attempt) for its remaining cooldown; past the bound it is dead."""
    observed = Observed(failure="circuit_open", retry_after=12.0)
    assert Decision("deferred", "circuit_open", delay_s=12.0, tier="30s") == _decide(observed)
    late = give_up_after("Immediate") + 1
    assert Decision("dead", "circuit_open") == _decide(observed, waited_s=late)


def test_the_time_scale_shrinks_waits_but_not_tiers() -> None:
    """Tests shrink time: the real wait is scaled, the tier is the schedule's."""
    decision = decide(
        Observed(status=503), attempt=1, urgency="Expected", waited_s=0.0, rng=random.Random(1), time_scale=0.01
    )
    assert (decision.outcome, decision.tier) == ("retrying", "30s")
    assert decision.delay_s is not None and 0.24 <= decision.delay_s <= 0.36


@given(
    status=st.integers(100, 599).filter(lambda s: not 200 <= s < 300 and s != 410),
    urgency=URGENCIES,
    attempt=st.integers(1, 12),
    retry_after=st.none() | st.floats(0, 10**6),
)
def test_any_other_status_retries_on_the_schedule_then_dies(
    status: int, urgency: str, attempt: int, retry_after: float | None
) -> None:
    """Every other status retries in the tier of its delay, never sooner than Retry-After, until the end."""
    decision = _decide(Observed(status=status, retry_after=retry_after), attempt=attempt, urgency=urgency)
    assert (f"http_{status}", "failure") == (decision.failure, decision.endpoint)
    if attempt >= max_attempts(urgency):
        assert decision.outcome == "dead"
        return
    assert decision.outcome == "retrying" and decision.delay_s is not None
    assert decision.tier == tier_for(decision.delay_s)
    if retry_after is not None:
        assert decision.delay_s >= min(retry_after, TIERS["1h"])


@given(
    failure=st.sampled_from(["timeout", "connection_refused", "connection_error", "tls_error", "dns_error"]),
    urgency=URGENCIES,
    attempt=st.integers(1, 12),
)
def test_transport_failures_retry_like_a_5xx(failure: str, urgency: str, attempt: int) -> None:
    """A timeout or a connection, TLS or DNS failure retries on the schedule and keeps its class."""
    decision = _decide(Observed(failure=failure), attempt=attempt, urgency=urgency)
    expected = "dead" if attempt >= max_attempts(urgency) else "retrying"
    assert (expected, failure, "failure") == (decision.outcome, decision.failure, decision.endpoint)


@given(
    observed=st.builds(
        Observed,
        status=st.none() | st.integers(0, 999),
        failure=st.none() | st.sampled_from(sorted(FAILURES)) | st.text(),
        retry_after=st.none() | st.floats(0, 10**6),
        detail=st.text(),
    ),
    urgency=URGENCIES,
    attempt=st.integers(1, 12),
    waited_s=st.floats(0, 10**6),
)
def test_the_failure_class_is_always_from_the_fixed_vocabulary(
    observed: Observed, urgency: str, attempt: int, waited_s: float
) -> None:
    """Whatever was observed (and whatever its detail says), the class is a known word or `http_<status>`."""
    decision = _decide(observed, attempt=attempt, urgency=urgency, waited_s=waited_s)
    if decision.outcome == "delivered":
        assert decision.failure is None
    else:
        assert decision.failure in FAILURES or decision.failure == f"http_{observed.status}"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (TimeoutError(), "timeout"),
        (aiohttp.ServerTimeoutError("Timeout on reading data from socket"), "timeout"),
        (aiohttp.ConnectionTimeoutError("Connection timeout to host https://10.0.0.1:8443/hook"), "timeout"),
        (_connector_error(ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 9)")), "connection_refused"),
        (_connector_error(OSError(113, "No route to host")), "connection_error"),
        (aiohttp.ServerDisconnectedError(), "connection_error"),
        (aiohttp.ClientConnectorDNSError(KEY, socket.gaierror(-2, "Name or service not known")), "dns_error"),
        (aiohttp.ClientConnectorCertificateError(KEY, ssl.SSLCertVerificationError("bad cert")), "tls_error"),
        (_connector_error(ssl.SSLError(1, "wrong version number")), "tls_error"),
        (_connector_error(UnsafeDestination("receiver.example resolves only to 10.0.0.1")), "refused_destination"),
        (
            aiohttp.ClientConnectorDNSError(KEY, UnsafeDestination("receiver.example resolves only to 10.0.0.1")),
            "refused_destination",
        ),
        (aiohttp.ClientPayloadError("https://receiver.example:8443/hook"), "connection_error"),
    ],
)
def test_exceptions_are_classified_without_their_text(exc: BaseException, expected: str) -> None:
    """Timeouts, refusals, TLS, DNS and the SSRF guard each have their class; anything else is a connection error."""
    assert expected == classify(exc)


@given(message=st.text())
def test_a_class_never_carries_the_exception_message(message: str) -> None:
    """Whatever the exception says (a URL, a host and port), the class is one of the fixed words."""
    for exc in (OSError(message), _connector_error(ConnectionRefusedError(111, message)), TimeoutError(message)):
        assert classify(exc) in FAILURES


def test_a_delivery_without_its_secret_yet_is_deferred_then_dead_never_attempted() -> None:
    """No signing secret at the registry's version: put off to the shortest tier (not an attempt, nothing
    learned about the endpoint), and dead only once the deferrals outlast the schedule, like an open circuit."""
    observed = Observed(failure="secret_pending")
    shortest = min(TIERS.values())
    assert Decision("deferred", "secret_pending", delay_s=shortest, tier=tier_for(shortest)) == _decide(observed)
    late = give_up_after("Immediate") + 1
    assert Decision("dead", "secret_pending") == _decide(observed, waited_s=late)
