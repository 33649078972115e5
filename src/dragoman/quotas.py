"""Per-key limits: requests per minute, characters per minute, concurrent translations.

Rates are counted by the `limits` library (sliding window counters: two counters per key and
limit, whatever a request's cost), in Redis when `DRAGOMAN_REDIS_URL` is set so that every
worker and replica shares them, else in this process's memory.

Concurrency is a lease per running translation. In Redis a key's leases are one sorted set
(member: lease id, score: expiry); a running translation renews its lease every
`LEASE_TTL_S / 3`, so the slots of a process that died come back within `LEASE_TTL_S`.

When Redis cannot be reached the limits are not enforced (fail open): keys are still checked
(they live in the database), the outage is logged, and the limits apply again as soon as Redis
answers. A translation service that stops translating whenever its counter store blinks is
worse for its users than one whose limits lapse for the length of the outage.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio import Redis

from dragoman.config import Settings
from dragoman.errors import RateLimited
from dragoman.keys import ApiKey

log = structlog.get_logger(__name__)

LEASE_TTL_S = 30.0
# A Redis that does not answer within this long counts as unreachable (fail open): the
# limits must never hold a request up for long.
REDIS_TIMEOUT_S = 0.5

# KEYS[1]: the key's lease set. ARGV: limit, ttl seconds, lease id. Server time, so that the
# replicas' clocks do not matter.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) * 2)
  return 1
end
return 0
"""
# KEYS: lease sets; ARGV[1]: ttl; ARGV[2..]: one lease id per key.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + tonumber(ARGV[1]), ARGV[i + 1])
  redis.call('EXPIRE', key, math.ceil(tonumber(ARGV[1])) * 2)
end
return 1
"""


@dataclass(slots=True)
class Lease:
    """One running translation's concurrency slot; `release()` is idempotent."""

    quotas: Quotas | None
    key_id: str
    lease_id: str

    def release(self) -> None:
        quotas, self.quotas = self.quotas, None
        if quotas is not None:
            quotas.release(self)


class Quotas:
    def __init__(self, settings: Settings, *, lease_ttl_s: float = LEASE_TTL_S) -> None:
        self.settings = settings
        self.lease_ttl_s = lease_ttl_s
        self.redis: Redis | None = None
        storage: Storage
        if settings.redis_url:
            self.redis = Redis.from_url(
                settings.redis_url,
                socket_timeout=REDIS_TIMEOUT_S,
                socket_connect_timeout=REDIS_TIMEOUT_S,
            )
            # One connection pool for the counters and the leases, closed with `self.redis`.
            shared: dict[str, Any] = {"connection_pool": self.redis.connection_pool}
            storage = RedisStorage(
                _async_url(settings.redis_url), implementation="redispy", **shared
            )
            self._acquire = self.redis.register_script(_ACQUIRE)
            self._renew = self.redis.register_script(_RENEW)
        else:
            storage = MemoryStorage()
        self.limiter = SlidingWindowCounterRateLimiter(storage)
        self._items: dict[int, RateLimitItem] = {}
        # Leases held by this process: renewed in Redis, counted here without it.
        self._held: dict[str, Lease] = {}
        self._local_counts: dict[str, int] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._releases: set[asyncio.Task[None]] = set()
        self._failing = False

    def start(self) -> None:
        if self.redis is not None:
            self._renewer = asyncio.create_task(self._renew_loop(), name="dragoman-lease-renewal")

    async def aclose(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        # Releases still on their way: the slots go back now rather than at their lease's end.
        await asyncio.gather(*self._releases, return_exceptions=True)
        if self.redis is not None:
            await self.redis.aclose()

    def _item(self, per_minute: int) -> RateLimitItem:
        item = self._items.get(per_minute)
        if item is None:
            item = self._items[per_minute] = RateLimitItemPerMinute(per_minute)
        return item

    async def admit(self, key: ApiKey, chars: int) -> Lease:
        """Count one request of `chars` characters against `key`, and take a concurrency slot.
        Raises `RateLimited` (with its Retry-After) when a limit is reached."""
        settings = self.settings
        rpm = self._item(key.rpm or settings.default_rpm)
        cpm = self._item(key.cpm or settings.default_cpm)
        # The three at once: one round trip to Redis in front of the first token, not three.
        # A request refused by one of them may still count against the others.
        taking = asyncio.ensure_future(
            self._take_slot(key, key.concurrency or settings.default_concurrency)
        )
        try:
            rpm_ok, cpm_ok, slot = await asyncio.gather(
                self.limiter.hit(rpm, "rpm", key.id),
                self.limiter.hit(cpm, "cpm", key.id, cost=chars),
                taking,
                return_exceptions=True,
            )
        except asyncio.CancelledError:  # the client left: a slot already taken goes back
            if taking.done() and not taking.cancelled() and taking.exception() is None:
                held = taking.result()
                if held is not None:
                    held.release()
            raise
        lease = slot if isinstance(slot, Lease) else None
        try:
            for outcome in (rpm_ok, cpm_ok, slot):
                if isinstance(outcome, BaseException):
                    raise outcome
            if not rpm_ok:
                raise RateLimited(
                    "This key's requests per minute are used up.",
                    retry_after_s=await self._retry_after(rpm, key.id, "rpm"),
                )
            if not cpm_ok:
                raise RateLimited(
                    "This key's characters per minute are used up.",
                    retry_after_s=await self._retry_after(cpm, key.id, "cpm"),
                )
            if lease is None:
                raise RateLimited(
                    "This key already has as many translations running as it may.",
                    retry_after_s=1,
                )
        except RateLimited:
            if lease is not None:
                lease.release()
            self._recovered()
            raise
        except Exception as exc:
            if lease is not None:
                lease.release()
            return self._fail_open(key, exc)
        except BaseException:
            if lease is not None:
                lease.release()
            raise
        self._recovered()
        return lease

    async def _retry_after(self, item: RateLimitItem, key_id: str, kind: str) -> int:
        stats = await self.limiter.get_window_stats(item, kind, key_id)
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def _take_slot(self, key: ApiKey, limit: int) -> Lease | None:
        """The key's next concurrency slot, or None when all are taken."""
        lease = Lease(self, key.id, uuid.uuid4().hex)
        if self.redis is not None:
            taken = await self._acquire(
                keys=[_lease_set(key.id)], args=[limit, self.lease_ttl_s, lease.lease_id]
            )
        else:
            taken = self._local_counts.get(key.id, 0) < limit
            if taken:
                self._local_counts[key.id] = self._local_counts.get(key.id, 0) + 1
        if not taken:
            return None
        self._held[lease.lease_id] = lease
        return lease

    def release(self, lease: Lease) -> None:
        if self._held.pop(lease.lease_id, None) is None:
            return
        if self.redis is None:
            self._local_counts[lease.key_id] -= 1
            if not self._local_counts[lease.key_id]:
                del self._local_counts[lease.key_id]
            return
        # Off the request's path; a lost release only holds the slot until its lease expires.
        task = asyncio.get_running_loop().create_task(self._release(lease))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _release(self, lease: Lease) -> None:
        assert self.redis is not None
        try:
            await self.redis.zrem(_lease_set(lease.key_id), lease.lease_id)
        except Exception as exc:
            log.warning("lease_release_failed", error=type(exc).__name__)

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ttl_s / 3)
            held = list(self._held.values())
            if not held:
                continue
            try:
                await self._renew(
                    keys=[_lease_set(lease.key_id) for lease in held],
                    args=[self.lease_ttl_s, *(lease.lease_id for lease in held)],
                )
            except Exception as exc:
                log.warning("lease_renewal_failed", error=type(exc).__name__)

    def _fail_open(self, key: ApiKey, exc: Exception) -> Lease:
        if not self._failing:
            log.error("limits_unavailable_failing_open", key_id=key.id, error=type(exc).__name__)
        self._failing = True
        return Lease(None, key.id, "")

    def _recovered(self) -> None:
        if self._failing:
            log.warning("limits_available_again")
            self._failing = False


def _lease_set(key_id: str) -> str:
    return f"dragoman:streams:{key_id}"


def _async_url(url: str) -> str:
    # `limits` names its asyncio storages with an `async+` scheme prefix.
    return url if url.startswith("async+") else "async+" + url
