"""What a delivery attempt comes to. Pure: no I/O, randomness passed in.

The dispatcher observes (an HTTP status, an exception, an endpoint it may not or cannot use) and this
module decides, one guard clause per row, first match wins:

    | observed                                        | outcome    | endpoint              |
    |-------------------------------------------------|------------|-----------------------|
    | content for an agency suspended since routing   | dead       |                       |
    | no webhook endpoint in the registry             | dead       |                       |
    | the endpoint is disabled                        | dead       |                       |
    | the destination is refused (SSRF guard)         | dead       |                       |
    | circuit open, given up after give_up_after()    | dead       |                       |
    | circuit open                                    | deferred   | (not an attempt)      |
    | endpoint busy, given up after give_up_after()   | dead       |                       |
    | endpoint busy: its queue on this replica full   | deferred   | (not an attempt)      |
    | no signing secret yet, after give_up_after()    | dead       |                       |
    | no signing secret at the registry's version yet | deferred   | (not an attempt)      |
    | 2xx                                             | delivered  | success               |
    | 410 Gone                                        | dead       | disable (every replica) |
    | any other status, timeout, connection, TLS, DNS | retrying   | failure               |
    |   ... and the urgency's schedule is exhausted   | dead       | failure               |

Every failure has a CLASS from a fixed vocabulary (`FAILURES`, or `http_<status>`): it is all that reaches
records (DeliveryAttempted.error, DeliverWebhook.last_error, escalation reasons), and so all that the
originator and other readers see. The receiver's URL, host and port stay in the `detail` that only the
dispatcher's log line carries: an agency must not learn another's endpoint from an alert's status.

    observed = Observed(status=503, retry_after=60.0)
    decision = decide(observed, attempt=1, urgency="Immediate", waited_s=0.0, rng=random.Random())
    decision.outcome, decision.failure, decision.tier  # ("retrying", "http_503", "2m")
"""

from __future__ import annotations

import random
import socket
import ssl
from dataclasses import dataclass
from typing import Final, Literal

import aiohttp

from services.dispatcher.safety import UnsafeDestination
from services.dispatcher.schedule import TIERS, give_up_after, next_delay, tier_for

Outcome = Literal["delivered", "retrying", "deferred", "dead"]
Endpoint = Literal["success", "failure", "disable"]

# Every class a failure without an HTTP status can have. With a status it is `http_<status>`.
FAILURES: Final[frozenset[str]] = frozenset(
    {
        "timeout",
        "connection_refused",
        "connection_error",
        "tls_error",
        "dns_error",
        "refused_destination",
        "endpoint_disabled",
        "no_endpoint",
        "circuit_open",
        "endpoint_busy",
        "secret_pending",
        "agency_inactive",
    }
)
# Failures decided before any request: nothing about the endpoint's health follows from them.
_NOT_ATTEMPTED: Final[frozenset[str]] = frozenset(
    {"agency_inactive", "no_endpoint", "endpoint_disabled", "refused_destination"}
)
# Failures that put a delivery off without attempting it: an open circuit; an endpoint with as many deliveries
# waiting on this replica as it may queue (a slow receiver's backlog waits in a retry tier, not in the lane's
# in-flight limit that every agency shares); and an endpoint whose secrets for the registry in force the
# dispatcher has not read yet (never sent unsigned, nor with another version's).
DEFERRED: Final[frozenset[str]] = frozenset({"circuit_open", "endpoint_busy", "secret_pending"})
# Deferrals whose wait the dispatcher says (`Observed.retry_after`, in real time).
_TIMED: Final[frozenset[str]] = frozenset({"circuit_open", "endpoint_busy"})


@dataclass(frozen=True)
class Observed:
    """What one attempt (or the refusal to make one) observed, before any decision.

    `status` when the receiver answered; otherwise `failure`, the class of why not. `retry_after` is the
    receiver's Retry-After, or the seconds an open circuit (or a busy endpoint) puts a delivery off. `detail`
    is for the log only.
    """

    status: int | None = None
    failure: str | None = None
    retry_after: float | None = None
    detail: str | None = None
    latency_s: float = 0.0


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    failure: str | None = None  # the class that reaches records; None when delivered
    delay_s: float | None = None  # retrying/deferred: seconds before the next try (time_scale applied)
    tier: str | None = None  # retrying/deferred: the delay tier for it (tiers are in schedule time)
    endpoint: Endpoint | None = None  # what the attempt says about the endpoint (breaker, endpoint state)


def failure_of(status: int) -> str:
    return f"http_{status}"


def classify(exc: BaseException) -> str:
    """The class of a transport failure: what an originator may know, never where the receiver is."""
    chain = _chain(exc)
    if any(isinstance(e, UnsafeDestination | aiohttp.InvalidURL) for e in chain):
        # Before DNS: the guard's refusal surfaces as a resolver error. A URL aiohttp cannot use never will.
        return "refused_destination"
    if any(isinstance(e, TimeoutError) for e in chain):
        return "timeout"
    if any(isinstance(e, aiohttp.ClientSSLError | ssl.SSLError | ssl.CertificateError) for e in chain):
        return "tls_error"
    if any(isinstance(e, aiohttp.ClientConnectorDNSError | socket.gaierror) for e in chain):
        return "dns_error"
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection_refused"
    return "connection_error"


def decide(
    observed: Observed,
    *,
    attempt: int,
    urgency: str,
    waited_s: float,
    rng: random.Random,
    time_scale: float = 1.0,
) -> Decision:
    """The outcome of attempt number `attempt` (1 for the first) of a delivery requested `waited_s` ago.

    `time_scale` multiplies the schedule (1 in production; tests shrink time with it); an open circuit's
    `retry_after` is real time already (the breaker's clock).
    """
    failure = observed.failure
    if failure in _NOT_ATTEMPTED:
        return Decision("dead", failure)
    if failure in DEFERRED:
        if waited_s > give_up_after(urgency) * time_scale:
            return Decision("dead", failure)
        # A pending secret arrives within moments of its registry: the shortest tier, in schedule time.
        wait = observed.retry_after if failure in _TIMED else min(TIERS.values()) * time_scale
        wait = wait or 0.0
        return Decision("deferred", failure, delay_s=wait, tier=tier_for(wait / time_scale))
    status = observed.status
    if status is not None and 200 <= status < 300:
        return Decision("delivered", endpoint="success")
    if status == 410:
        return Decision("dead", failure_of(status), endpoint="disable")
    failure = failure_of(status) if status is not None else failure if failure in FAILURES else "connection_error"
    delay = next_delay(urgency, attempt, observed.retry_after, rng)
    if delay is None:
        return Decision("dead", failure, endpoint="failure")
    return Decision("retrying", failure, delay_s=delay * time_scale, tier=tier_for(delay), endpoint="failure")


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and what it was raised from or during, and aiohttp's wrapped OS error (cycles cut)."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [e.__cause__, e.__context__, getattr(e, "os_error", None)]
    return seen
