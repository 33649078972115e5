"""The retry budget: retries (every attempt after a request's first) may be at most `ratio` of
the requests of the last `WINDOW_S` seconds, plus `min_per_s` a second (Finagle's retry budget,
whose defaults these are: 20%, 10 a second, over 10 s). When every upstream fails, requests then
end after their first attempt, with its error, instead of each multiplying the load on
upstreams already in trouble; while a few fail, the reserve lets them all move on, whatever the
traffic."""

from __future__ import annotations

import time
from collections.abc import Callable

WINDOW_S = 10


class RetryBudget:
    __slots__ = ("_clock", "_minimum", "_ratio", "_requests", "_retries", "_seconds")

    def __init__(
        self, ratio: float, min_per_s: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ratio = ratio
        self._minimum = min_per_s * WINDOW_S
        self._clock = clock
        # One bucket per second of the window: which second it holds, and its counts.
        self._seconds = [-1] * WINDOW_S
        self._requests = [0] * WINDOW_S
        self._retries = [0] * WINDOW_S

    def _bucket(self) -> int:
        second = int(self._clock())
        slot = second % WINDOW_S
        if self._seconds[slot] != second:
            self._seconds[slot] = second
            self._requests[slot] = 0
            self._retries[slot] = 0
        return slot

    def _sums(self) -> tuple[int, int]:
        oldest = int(self._clock()) - WINDOW_S
        requests = retries = 0
        for slot in range(WINDOW_S):
            if self._seconds[slot] > oldest:
                requests += self._requests[slot]
                retries += self._retries[slot]
        return requests, retries

    def request(self) -> None:
        """A request's first attempt."""
        self._requests[self._bucket()] += 1

    def try_retry(self) -> bool:
        """Whether one more retry fits in the budget (counted when it does)."""
        slot = self._bucket()
        requests, retries = self._sums()
        if retries >= self._minimum + self._ratio * requests:
            return False
        self._retries[slot] += 1
        return True
