"""Per-key limits: requests per minute, characters per minute, concurrent translations.

Each rate is a sliding-window counter (the algorithm of the `limits` library's sliding windows
and of Cloudflare's rate limiting): the count of the current minute plus the previous minute's
count weighted by the share of it still inside the last 60 seconds. Concurrency is a lease per
running translation: in Redis a key's leases are one sorted set (member: lease id, score:
expiry), which a running translation renews every `LEASE_TTL_S / 3`, so the slots of a process
that died come back within `LEASE_TTL_S`.

With `DRAGOMAN_REDIS_URL` the three checks are one Lua script, so that every worker and replica
shares the counters and a request costs one round trip in front of its first token. The script
checks all three before it counts anything: a refused request uses up none of the limits.
Without Redis the same arithmetic runs in this process's memory.

When Redis cannot be reached the limits are not enforced (fail open): keys are still checked
(they live in the database), the outage is logged, and the limits apply again as soon as Redis
answers. The translations running then (started before or during the outage) hold leases all
the same, which their next renewal writes into Redis: the concurrency limit counts them again
within `LEASE_TTL_S / 3` of Redis coming back, even an empty Redis. A translation service that
stops translating whenever its counter store blinks is worse for its users than one whose
limits lapse for the length of the outage.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import structlog
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import NoScriptError

from dragoman.config import Settings
from dragoman.errors import RateLimited
from dragoman.keys import ApiKey

log = structlog.get_logger(__name__)

T = TypeVar("T")

LEASE_TTL_S = 30.0
WINDOW_S = 60
# A Redis that does not answer within this long counts as unreachable (fail open): the
# limits must never hold a request up for long.
REDIS_TIMEOUT_S = 0.5
# Commands here are short: a bounded pool that makes a burst of requests wait their turn for a
# connection, rather than one connection per request (or an error past redis-py's default cap).
REDIS_POOL_SIZE = 32

# A key found using less than this share of each of its limits...
ROOMY_SHARE = 0.5
# ...for this long after: its requests may start before Redis has counted them (`has_room`).
ROOMY_FOR_S = 2.0

# Which limit refused a request: the script's and `_refusal`'s common codes.
_RPM, _CPM, _CONCURRENCY = 1, 2, 3

# KEYS: the key's request counter, character counter (hashes: w = minute index, c = its count,
# p = the previous minute's), lease set. ARGV: rpm, cpm, characters, concurrency, lease ttl,
# lease id, window. Server time, so that the replicas' clocks do not matter.
# Returns {0, requests, characters, slots used now} when admitted, else {limit code, seconds to
# wait}.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[7])
local index = math.floor(now / window)
local into = (now - index * window) / window

local function load(key)
  local got = redis.call('HMGET', key, 'w', 'c')
  local w, c = tonumber(got[1]), tonumber(got[2]) or 0
  if w == index then return c, tonumber(redis.call('HGET', key, 'p')) or 0 end
  if w == index - 1 then return 0, c end
  return 0, 0
end

-- Seconds until `cost` more fits under `limit`, or 0 when it fits now.
local function wait(c, p, limit, cost)
  if p * (1 - into) + c + cost <= limit then return 0 end
  if c + cost <= limit then
    return (1 - (limit - c - cost) / p - into) * window
  end
  local later = 0
  if c > 0 and cost <= limit then later = math.max(0, 1 - (limit - cost) / c) end
  if cost > limit then later = 1 end
  return (1 - into + later) * window
end

local rc, rp = load(KEYS[1])
local rwait = wait(rc, rp, tonumber(ARGV[1]), 1)
if rwait > 0 then return {1, tostring(rwait)} end
local cost = tonumber(ARGV[3])
local cc, cp = load(KEYS[2])
local cwait = wait(cc, cp, tonumber(ARGV[2]), cost)
if cwait > 0 then return {2, tostring(cwait)} end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[4]) then return {3, '1'} end

local ttl = tonumber(ARGV[5])
redis.call('ZADD', KEYS[3], now + ttl, ARGV[6])
redis.call('EXPIRE', KEYS[3], math.ceil(ttl) * 2)
redis.call('HSET', KEYS[1], 'w', index, 'c', rc + 1, 'p', rp)
redis.call('EXPIRE', KEYS[1], window * 2)
redis.call('HSET', KEYS[2], 'w', index, 'c', cc + cost, 'p', cp)
redis.call('EXPIRE', KEYS[2], window * 2)
return {0, math.floor(rp * (1 - into) + rc + 1), math.floor(cp * (1 - into) + cc + cost),
        redis.call('ZCARD', KEYS[3])}
"""
# KEYS: lease sets; ARGV[1]: ttl; ARGV[2..]: one lease id per key. A lease missing from its set
# is added again: Redis restarted (empty) or the lease was taken while Redis was down.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + tonumber(ARGV[1]), ARGV[i + 1])
  redis.call('EXPIRE', key, math.ceil(tonumber(ARGV[1])) * 2)
end
return 1
"""


class RoundTrips(Generic[T]):
    """Items that come while a round trip is in flight go together in the next one: a burst
    costs a few round trips (one pipeline each) and far less CPU than one command per item; a
    lone item goes at once."""

    def __init__(self, send: Callable[[list[T]], Awaitable[None]]) -> None:
        self._send = send  # must not raise: it answers or logs each item itself
        self._items: list[T] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, item: T) -> None:
        self._items.append(item)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._items:
                batch, self._items = self._items, []
                await self._send(batch)
        finally:
            self._task = None

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


_Count = tuple[list[str], list[Any], "asyncio.Future[Any]"]


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


class SlidingWindow:
    """One counter of the memory store: the arithmetic of the Redis script, in Python."""

    __slots__ = ("count", "index", "previous")

    def __init__(self) -> None:
        self.index, self.count, self.previous = 0, 0, 0

    def wait_s(self, now: float, limit: int, cost: int) -> float:
        """Seconds until `cost` more fits under `limit` (0: it fits now); rolls the window."""
        index = math.floor(now / WINDOW_S)
        if index != self.index:
            self.previous = self.count if index == self.index + 1 else 0
            self.index, self.count = index, 0
        into = now / WINDOW_S - index
        c, p = self.count, self.previous
        if p * (1 - into) + c + cost <= limit:
            return 0.0
        if c + cost <= limit:
            return (1 - (limit - c - cost) / p - into) * WINDOW_S
        later = 1.0 if cost > limit else max(0.0, 1 - (limit - cost) / c) if c else 0.0
        return (1 - into + later) * WINDOW_S


class Quotas:
    def __init__(self, settings: Settings, *, lease_ttl_s: float = LEASE_TTL_S) -> None:
        self.settings = settings
        self.lease_ttl_s = lease_ttl_s
        self.redis: Redis | None = None
        if settings.redis_url:
            self.redis = Redis.from_pool(
                BlockingConnectionPool.from_url(
                    settings.redis_url,
                    max_connections=REDIS_POOL_SIZE,
                    timeout=REDIS_TIMEOUT_S,
                    socket_timeout=REDIS_TIMEOUT_S,
                    socket_connect_timeout=REDIS_TIMEOUT_S,
                )
            )
            self._admit_sha = hashlib.sha1(_ADMIT.encode()).hexdigest()
            self._renew = self.redis.register_script(_RENEW)
        # Without Redis: the counters, by (key id, limit code), and the running translations.
        self._windows: dict[tuple[str, int], SlidingWindow] = {}
        self._local_counts: dict[str, int] = {}
        # Leases held by this process: renewed in Redis, counted in `_local_counts` without it.
        self._held: dict[str, Lease] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._counts: RoundTrips[_Count] = RoundTrips(self._send_counts)
        # Off the requests' path: a burst of streams that end together must not take a
        # connection each. A lost release only holds the slot until its lease expires.
        self._releases: RoundTrips[Lease] = RoundTrips(self._send_releases)
        self._failing = False
        # Key id -> until when (monotonic) it counts as far from its limits.
        self._roomy: dict[str, float] = {}

    def start(self) -> None:
        if self.redis is not None:
            self._renewer = asyncio.create_task(self._renew_loop(), name="dragoman-lease-renewal")

    async def aclose(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        # Counts and releases still on their way: the slots go back now rather than at their
        # lease's end.
        await self._counts.wait()
        await self._releases.wait()
        if self.redis is not None:
            await self.redis.aclose()

    async def admit(self, key: ApiKey, chars: int) -> Lease:
        """Count one request of `chars` characters against `key`, and take a concurrency slot.
        Raises `RateLimited` (with its Retry-After) when a limit is reached; then nothing is
        counted."""
        settings = self.settings
        limits = (
            key.rpm or settings.default_rpm,
            key.cpm or settings.default_cpm,
            key.concurrency or settings.default_concurrency,
        )
        lease = Lease(self, key.id, uuid.uuid4().hex)
        if self.redis is None:
            refused = self._admit_in_memory(key.id, limits, chars)
        else:
            try:
                answer = await self._count(
                    [_counter(key.id, "rpm"), _counter(key.id, "cpm"), _lease_set(key.id)],
                    [*limits[:2], chars, limits[2], self.lease_ttl_s, lease.lease_id, WINDOW_S],
                )
            except asyncio.CancelledError:
                # The client left while the script ran: a slot it may have taken goes back.
                self._held[lease.lease_id] = lease
                lease.release()
                raise
            except Exception as exc:
                return self._fail_open(key, exc)
            refused = None if int(answer[0]) == 0 else (int(answer[0]), float(answer[1]))
            self._note_room(key.id, limits, answer if refused is None else None)
        self._recovered()
        if refused is not None:
            raise _refusal(*refused)
        self._held[lease.lease_id] = lease
        return lease

    async def _count(self, keys: list[str], args: list[Any]) -> Any:
        """The admission script for one request, in a round trip shared with the requests of
        the same moment."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._counts.add((keys, args, future))
        return await future

    async def _send_counts(self, batch: list[_Count]) -> None:
        assert self.redis is not None
        try:
            results = await self._run_scripts(batch)
            if any(isinstance(result, NoScriptError) for result in results):
                await self.redis.script_load(_ADMIT)  # a restarted or flushed Redis
                results = await self._run_scripts(batch)
        except Exception as exc:
            results = [exc] * len(batch)
        for (_, _, future), result in zip(batch, results, strict=True):
            if future.done():  # its request was cancelled meanwhile
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _run_scripts(self, batch: list[_Count]) -> list[Any]:
        assert self.redis is not None
        if len(batch) == 1:  # a pipeline costs more than a lone command
            keys, args, _ = batch[0]
            try:
                return [await self.redis.evalsha(self._admit_sha, len(keys), *keys, *args)]
            except NoScriptError as exc:
                return [exc]
        async with self.redis.pipeline(transaction=False) as pipe:
            for keys, args, _ in batch:
                pipe.evalsha(self._admit_sha, len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))

    def has_room(self, key: ApiKey) -> bool:
        """Whether `key` was far from all of its limits when Redis last counted it, a moment
        ago. Its next request may then start while Redis counts it (`admit` alongside): the
        answer still comes before the first byte, and a refusal is then rare."""
        until = self._roomy.get(key.id)
        return until is not None and until > time.monotonic()

    def _note_room(self, key_id: str, limits: tuple[int, ...], used: list[Any] | None) -> None:
        if used is not None and all(
            int(count) < ROOMY_SHARE * limit for count, limit in zip(used[1:], limits, strict=True)
        ):
            if len(self._roomy) > 10_000:  # keys seen long ago: start again
                self._roomy.clear()
            self._roomy[key_id] = time.monotonic() + ROOMY_FOR_S
        else:
            self._roomy.pop(key_id, None)

    def _admit_in_memory(
        self, key_id: str, limits: tuple[int, int, int], chars: int
    ) -> tuple[int, float] | None:
        now = time.time()
        windows = []
        for code, limit, cost in ((_RPM, limits[0], 1), (_CPM, limits[1], chars)):
            window = self._windows.get((key_id, code))
            if window is None:
                window = self._windows[(key_id, code)] = SlidingWindow()
            wait_s = window.wait_s(now, limit, cost)
            if wait_s > 0:
                return code, wait_s
            windows.append((window, cost))
        if self._local_counts.get(key_id, 0) >= limits[2]:
            return _CONCURRENCY, 1.0
        for window, cost in windows:
            window.count += cost
        self._local_counts[key_id] = self._local_counts.get(key_id, 0) + 1
        return None

    def release(self, lease: Lease) -> None:
        if self._held.pop(lease.lease_id, None) is None:
            return
        if self.redis is None:
            self._local_counts[lease.key_id] -= 1
            if not self._local_counts[lease.key_id]:
                del self._local_counts[lease.key_id]
            return
        self._releases.add(lease)

    async def _send_releases(self, batch: list[Lease]) -> None:
        assert self.redis is not None
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for lease in batch:
                    pipe.zrem(_lease_set(lease.key_id), lease.lease_id)
                await pipe.execute()
        except Exception as exc:
            log.warning("lease_release_failed", error=type(exc).__name__, leases=len(batch))

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
            # A lease released while its renewal was on the way may have been added again
            # after its release: released once more.
            for lease in held:
                if lease.lease_id not in self._held:
                    self._releases.add(lease)

    def _fail_open(self, key: ApiKey, exc: Exception) -> Lease:
        if not self._failing:
            log.error("limits_unavailable_failing_open", key_id=key.id, error=type(exc).__name__)
        self._failing = True
        # Held like any lease: renewed into Redis once it answers again.
        lease = Lease(self, key.id, uuid.uuid4().hex)
        self._held[lease.lease_id] = lease
        return lease

    def _recovered(self) -> None:
        if self._failing:
            log.warning("limits_available_again")
            self._failing = False


def _refusal(code: int, wait_s: float) -> RateLimited:
    retry_after_s = max(1, math.ceil(wait_s))
    if code == _RPM:
        message = "This key's requests per minute are used up."
    elif code == _CPM:
        message = "This key's characters per minute are used up."
    else:
        message = "This key already has as many translations running as it may."
    return RateLimited(message, retry_after_s=retry_after_s)


def _counter(key_id: str, kind: str) -> str:
    return f"dragoman:rate:{kind}:{key_id}"


def _lease_set(key_id: str) -> str:
    return f"dragoman:streams:{key_id}"
