"""A translation's place under its key's limits, from the request to its end.

Three ways in:

- `Admission.taken(lease)`: counted before the job started (a refusal was raised then);
- `Admission.early(quotas, key, chars)`: the key was far from its limits a moment ago, so the
  count runs (in Redis, a round trip) while the upstream starts; the job awaits the answer
  before its first event goes out, and a refusal becomes that first event (nothing stored);
- `Admission.none()`: keys are off, or a batch took the limits for all its items.

`release()` gives the concurrency slot back once the upstream work is over; it is idempotent,
and gives back a slot that an early count took even when nobody awaited its answer.
"""

from __future__ import annotations

import asyncio

from dragoman.errors import RateLimited
from dragoman.keys import ApiKey
from dragoman.quotas import Lease, Quotas


class Admission:
    __slots__ = ("_lease", "_pending")

    def __init__(
        self, lease: Lease | None = None, pending: asyncio.Future[Lease] | None = None
    ) -> None:
        self._lease = lease
        self._pending = pending

    @classmethod
    def none(cls) -> Admission:
        return cls()

    @classmethod
    def taken(cls, lease: Lease) -> Admission:
        return cls(lease=lease)

    @classmethod
    def early(cls, quotas: Quotas, key: ApiKey, chars: int) -> Admission:
        return cls(pending=asyncio.ensure_future(quotas.admit(key, chars)))

    @property
    def pending(self) -> bool:
        return self._pending is not None

    async def confirm(self) -> None:
        """Wait for an early count's answer; raises `RateLimited`."""
        pending, self._pending = self._pending, None
        if pending is not None:
            self._lease = await pending

    async def refusal(self) -> RateLimited | None:
        """An early count's refusal, once it has answered (None when it admitted)."""
        try:
            await self.confirm()
        except RateLimited as refused:
            return refused
        return None

    def release(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            if not pending.done():
                # `Quotas.admit` gives back a slot it took when it is cancelled.
                pending.cancel()
            elif not pending.cancelled() and pending.exception() is None:
                self._lease = pending.result()
        if self._lease is not None:
            self._lease.release()
