"""One upstream's circuit breaker.

    healthy ──(`failures` failures in a row, or a failed health check)──▶ open
    open ──(cool-down over, and the last health check did not fail)──▶ half_open
    open ──(opened by a health check: the next one passes)──▶ half_open
    half_open ──(one trial request: its first piece)──▶ healthy
    half_open ──(the trial fails before its first piece)──▶ open (a new cool-down)

A failure is an attempt that failed before its first piece (error, refusal, no first piece in
time) or a stream that broke off after it; a stream that ends well sets the count back to 0.
While open, the upstream gets no request; half-open, exactly one at a time (the trial); a
trial that ends without a verdict (its client left) frees the place for the next. A health
check that fails opens a healthy breaker at once and keeps an open one open after its
cool-down (no trial is spent on an upstream that cannot even list its models). One that passes
makes a breaker that a health check opened half-open at once (an upstream that was not up yet
when dragoman started is used as soon as it answers); a breaker that requests opened waits out
its cool-down (a server can list its models and still fail every request).

A disabled breaker (the only upstream: nowhere else to send a request) never opens.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

State = Literal["healthy", "open", "half_open"]


class Breaker:
    __slots__ = (
        "_clock",
        "_cooldown_s",
        "_failures",
        "_health_ok",
        "_on_change",
        "_opened_at",
        "_opened_by_health",
        "_threshold",
        "_trial_out",
        "enabled",
    )

    def __init__(
        self,
        failures: int,
        cooldown_s: float,
        *,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.enabled = enabled
        self._threshold = failures
        self._cooldown_s = cooldown_s
        self._clock = clock
        # Called with True when the breaker opens, False when it closes.
        self._on_change = on_change
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_out = False
        self._health_ok = True
        self._opened_by_health = False

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return "healthy"
        if not self._health_ok or self._clock() < self._opened_at + self._cooldown_s:
            return "open"
        return "half_open"

    def reopens_in(self) -> float:
        """Seconds until an open breaker lets a trial through (0 when it is not open)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self._cooldown_s - self._clock())

    def allows(self) -> bool:
        """Whether the upstream may take a request now."""
        if self._opened_at is None:
            return True
        state = self.state
        return state == "half_open" and not self._trial_out

    def take(self) -> bool:
        """The upstream takes a request (after `allows()`): True when it is the trial."""
        if self._opened_at is not None and self.state == "half_open":
            self._trial_out = True
            return True
        return False

    def answered(self, trial: bool) -> None:
        """The attempt's first piece came."""
        if trial:
            self._trial_out = False
            self._failures = 0
            self._close()

    def succeeded(self) -> None:
        """The stream ended well."""
        self._failures = 0

    def failed(self, trial: bool) -> None:
        if trial:
            self._trial_out = False
            self._open()
            return
        self._failures += 1
        if self._opened_at is None and self._failures >= self._threshold:
            self._open()

    def released(self, trial: bool) -> None:
        """The attempt ended without a verdict (its consumer left)."""
        if trial:
            self._trial_out = False

    def health(self, ok: bool) -> None:
        self._health_ok = ok
        if not ok and self._opened_at is None:
            self._open()
            self._opened_by_health = self._opened_at is not None
        elif ok and self._opened_by_health and self._opened_at is not None:
            self._opened_at = min(self._opened_at, self._clock() - self._cooldown_s)

    def _open(self) -> None:
        if not self.enabled:
            self._failures = 0
            return
        was_open = self._opened_at is not None
        self._opened_at = self._clock()
        self._opened_by_health = False
        if not was_open and self._on_change is not None:
            self._on_change(True)

    def _close(self) -> None:
        if self._opened_at is not None:
            self._opened_at = None
            if self._on_change is not None:
                self._on_change(False)
