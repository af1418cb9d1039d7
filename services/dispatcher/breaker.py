"""A circuit breaker per webhook endpoint, so a dead or hanging receiver stops costing anything.

Closed: requests flow; `threshold` consecutive failures open it. Open: requests are refused at once (the
delivery is deferred to a retry tier without counting as an attempt) until its cooldown has passed: `cooldown_s`
times the times it opened in a row, at most `max_cooldown_s` (as Envoy ejects a host for longer each time).
A receiver holding each probe for most of its timeout and then failing it had every delivery of its backlog
put off about 120 times before it died, each a retry-tier write and read on the dispatcher every agency
shares, twice what a dead endpoint costs (red team, round 4); each reopening waiting longer bounds both (a
never-recovering endpoint's deliveries: 16 put-offs each instead of 54, measured on a virtual clock), and the
cap bounds how long a receiver that recovers waits for its next probe (2 minutes by default).
Half-open: one probe is let through; success closes the circuit, failure opens it again. A probe that has
not reported within `probe_timeout_s` is taken as lost and another is let through: whatever path forgets to
report one (a refusal before any request, a 410 that disabled the endpoint) must not leave the circuit
waiting for it for good (red team). The clock is passed in for tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

State = Literal["closed", "open", "half_open"]


@dataclass
class CircuitBreaker:
    threshold: int = 5
    cooldown_s: float = 30.0
    clock: Callable[[], float] = field(default=lambda: 0.0)
    state: State = "closed"
    failures: int = 0
    opened_at: float = 0.0
    probing: bool = False
    probe_timeout_s: float = 60.0
    # What a request refused while the probe is out waits: about a retry tier's shortest wait, so a probe that
    # succeeds lets the rest through soon, yet they do not cycle through the tier while it is out.
    probe_wait_s: float = 5.0
    probe_started: float = 0.0
    # Times it opened since it last closed, and the longest its cooldown grows to.
    opens: int = 0
    max_cooldown_s: float = 120.0

    @property
    def cooldown(self) -> float:
        return min(self.cooldown_s * max(self.opens, 1), max(self.max_cooldown_s, self.cooldown_s))

    def allow(self) -> bool:
        if self.state == "closed":
            return True
        now = self.clock()
        if self.state == "open" and now - self.opened_at >= self.cooldown:
            self.state = "half_open"
        if self.state == "half_open" and (not self.probing or now - self.probe_started >= self.probe_timeout_s):
            self.probing, self.probe_started = True, now
            return True
        return False

    def remaining(self) -> float:
        """Seconds a refused request should wait: until an open circuit lets a probe through (0 when it would
        now), or, while a probe is out, `probe_wait_s` (it was 0: every other delivery to the endpoint cycled
        through the shortest retry tier, a Kafka write and read each, for as long as the probe was held)."""
        if self.state == "half_open":
            return self.probe_wait_s
        if self.state != "open":
            return 0.0
        return max(0.0, self.cooldown - (self.clock() - self.opened_at))

    def success(self) -> bool:
        """Record a success; True when this closed an open circuit."""
        reopened = self.state != "closed"
        self.state, self.failures, self.probing, self.opens = "closed", 0, False, 0
        return reopened

    def failure(self) -> bool:
        """Record a failure; True when this opened the circuit."""
        self.failures += 1
        self.probing = False
        if self.state == "half_open" or (self.state == "closed" and self.failures >= self.threshold):
            self.state, self.opened_at = "open", self.clock()
            self.opens += 1
            return True
        return False
