"""A consecutive-failures circuit breaker with a single half-open probe."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """``closed``: calls pass; ``failure_threshold`` failures in a row open it. ``open``:
    calls are refused for ``open_s``. Then ``half_open``: one probe passes; its success
    closes the circuit, its failure opens it again.

    Example::

        >>> breaker = CircuitBreaker(failure_threshold=2, open_s=30)
        >>> breaker.allow(), breaker.record_failure(), breaker.record_failure()
        (True, None, None)
        >>> breaker.state, breaker.allow()
        ('open', False)
    """

    def __init__(
        self,
        failure_threshold: int,
        open_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.open_s = open_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.open_s:
            return "half_open"
        return "open"

    def retry_in(self) -> float:
        """Seconds until the circuit lets a probe through (0 when it would now)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self.open_s - (self._clock() - self._opened_at))

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def abandon(self) -> None:
        """An allowed call ended without a verdict (cancelled): free the probe slot."""
        self._probing = False

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()
            self._probing = False
