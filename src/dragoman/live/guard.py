"""Join codes are guessed by machines: an address that asks for more than `LIMIT` unknown
codes within a minute is refused (429 `rate_limited`, with `Retry-After`) on every live route
until its count falls back, whatever code it asks for.

The count is a sliding window (the current minute plus the share of the previous one still
inside the last 60 seconds, as the per-key limits count), in this process's memory, or in Redis
when the service has it, so that every replica refuses the same address.
"""

from __future__ import annotations

import math
import time

import redis.asyncio as redis
import structlog

from dragoman.errors import RateLimited
from dragoman.quotas import WINDOW_S, SlidingWindow

log = structlog.get_logger(__name__)

LIMIT = 20


def _key(address: str, minute: int) -> str:
    return f"dragoman:live:misses:{address}:{minute}"


class CodeGuard:
    def __init__(self, client: redis.Redis | None) -> None:
        self._redis = client
        self._windows: dict[str, SlidingWindow] = {}

    async def check(self, address: str) -> None:
        """Raise `RateLimited` while `address` is over the limit."""
        now = time.time()
        window = await self._window(address, now)
        wait = window.wait_s(now, LIMIT, 0) if window is not None else 0.0
        if wait > 0:
            raise RateLimited(
                "Too many unknown join codes from this address; try again later.",
                retry_after_s=math.ceil(wait),
            )

    async def missed(self, address: str) -> None:
        """An unknown code was asked for from `address`."""
        now = time.time()
        if self._redis is None:
            if len(self._windows) > 100_000:  # addresses seen long ago: start again
                self._windows.clear()
            window = self._windows.setdefault(address, SlidingWindow())
            window.wait_s(now, LIMIT, 0)  # rolls the window to this minute
            window.count += 1
            return
        minute = int(now // WINDOW_S)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.incr(_key(address, minute))
                pipe.expire(_key(address, minute), WINDOW_S * 2)
                await pipe.execute()
        except Exception as exc:  # fail open, like the per-key limits
            log.warning("live_guard_unavailable", error=type(exc).__name__)

    async def _window(self, address: str, now: float) -> SlidingWindow | None:
        if self._redis is None:
            return self._windows.get(address)
        minute = int(now // WINDOW_S)
        try:
            current, previous = await self._redis.mget(
                _key(address, minute), _key(address, minute - 1)
            )
        except Exception as exc:
            log.warning("live_guard_unavailable", error=type(exc).__name__)
            return None
        window = SlidingWindow()
        window.index, window.count, window.previous = minute, int(current or 0), int(previous or 0)
        return window
