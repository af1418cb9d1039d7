"""A circuit breaker per webhook endpoint, so a dead or hanging receiver stops costing anything.

Closed: requests flow; `threshold` consecutive failures open it. Open: requests are refused at once (the
delivery is deferred to a retry tier without counting as an attempt) until `cooldown_s` has passed.
Half-open: one probe is let through; success closes the circuit, failure opens it again. The clock is
passed in for tests.
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

    def allow(self) -> bool:
        if self.state == "closed":
            return True
        if self.state == "open" and self.clock() - self.opened_at >= self.cooldown_s:
            self.state = "half_open"
        if self.state == "half_open" and not self.probing:
            self.probing = True
            return True
        return False

    def remaining(self) -> float:
        """Seconds a refused request should wait: until an open circuit lets a probe through (0 when it would
        now), or, while a probe is out, a cooldown (its verdict may take a response timeout; put off for less,
        every other delivery to the endpoint cycled through the shortest retry tier until it came, red team)."""
        if self.state == "half_open":
            return self.cooldown_s
        if self.state != "open":
            return 0.0
        return max(0.0, self.cooldown_s - (self.clock() - self.opened_at))

    def success(self) -> bool:
        """Record a success; True when this closed an open circuit."""
        reopened = self.state != "closed"
        self.state, self.failures, self.probing = "closed", 0, False
        return reopened

    def failure(self) -> bool:
        """Record a failure; True when this opened the circuit."""
        self.failures += 1
        self.probing = False
        if self.state == "half_open" or (self.state == "closed" and self.failures >= self.threshold):
            self.state, self.opened_at = "open", self.clock()
            return True
        return False
