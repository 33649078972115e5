"""Event logs in Redis Streams: any process or replica can serve a resume.

One stream per translation, `dragoman:events:<id>`, with entry ids `0-<event id + 1>`, so that a
replay after event N is `XRANGE (0-<N + 1> +` and following it live is `XREAD BLOCK` from the
last entry read. Each entry holds the encoded event (`d`) and, on the final one, `end`.
The running process refreshes `…:alive` every few seconds: a listener that waits on a stream
whose process died (SIGKILL, lost host) gets an in-band `interrupted` error instead of hanging.
Listeners in other processes refresh `…:listened`, which the running process checks before it
cancels a translation that nobody listens to.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as redis

from dragoman.errors import Interrupted
from dragoman.resumable.log import EventLog
from dragoman.wire import json_bytes

# Far above any translation's event count: a bound on memory, never reached in practice.
_MAX_EVENTS = 100_000
_READ_COUNT = 512
ALIVE_EVERY_S = 2.0
_ALIVE_TTL_MS = 10_000
# While it runs, a translation's stream outlives a crash of its process by this much.
_RUNNING_TTL_S = 3600


def _key(translation_id: str) -> str:
    return f"dragoman:events:{translation_id}"


class RedisEventLog:
    def __init__(
        self,
        client: redis.Redis,
        reader: redis.Redis,
        translation_id: str,
        running_ttl_s: int,
        running: dict[str, RedisEventLog] | None = None,
    ) -> None:
        self._redis = client
        # For `XREAD BLOCK` only, which holds a connection while it waits.
        self._reader = reader
        self._id = translation_id
        self._key = _key(translation_id)
        self._next = 0
        self._running_ttl_s = running_ttl_s
        # The log of a translation that runs in this process (listed in `running` until its
        # end): its followers here wait for `append` to signal news instead of each holding one
        # of the pool's connections in `XREAD BLOCK` (POOL_SIZE listeners would take them all).
        self._running = running
        self._local = running is not None
        self._changed = asyncio.Event()
        self._ended = False

    async def append(self, events: list[bytes], *, end: bool = False) -> None:
        try:
            if events:
                await self._write(events, end)
        finally:
            # Local followers read whatever is in Redis now: also after a failed write, so that
            # none waits for news that will not come.
            if end:
                self._ended = True
                if self._running is not None:
                    self._running.pop(self._id, None)
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()

    async def _write(self, events: list[bytes], end: bool) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for n, data in enumerate(events):
                fields: dict[Any, Any] = {"d": data}
                if end and n == len(events) - 1:
                    fields["end"] = "1"
                pipe.xadd(
                    self._key,
                    fields,
                    id=f"0-{self._next + 1}",
                    maxlen=_MAX_EVENTS,
                    approximate=True,
                )
                self._next += 1
            if not end:
                pipe.expire(self._key, self._running_ttl_s)
                pipe.set(self._key + ":alive", b"1", px=_ALIVE_TTL_MS)
            await pipe.execute()

    async def follow(self, after: int, idle_s: float) -> AsyncIterator[list[bytes]]:
        last = f"0-{max(after + 1, 0)}"
        while True:  # the backlog
            entries: Any = await self._redis.xrange(
                self._key, min=f"({last}", max="+", count=_READ_COUNT
            )
            if not entries:
                break
            batch, last, ended = _read(entries)
            yield batch
            if ended:
                return
        if await self._ended_by(last):  # asked from the final event or beyond
            return
        if self._local:
            async for batch in self._follow_local(last, idle_s):
                yield batch
            return
        block_ms = max(1, int(idle_s * 1000))
        while True:  # live
            # RESP2 (the client's default): [[key, [(id, fields), ...]]], or empty on timeout.
            answer: Any = await self._reader.xread(
                {self._key: last}, count=_READ_COUNT, block=block_ms
            )
            if not answer:
                if await self._ended_by(last):
                    return
                if not await self._redis.exists(self._key + ":alive"):
                    # No final event, and its process has stopped refreshing: it died.
                    event_id = int(last.split("-")[1])
                    yield [_interrupted_event(event_id)]
                    return
                yield []
                continue
            batch, last, ended = _read(answer[0][1])
            yield batch
            if ended:
                return

    async def _follow_local(self, last: str, idle_s: float) -> AsyncIterator[list[bytes]]:
        """Live events of a translation that this process runs: read when `append` says so."""
        while True:
            # Taken before the read: news that comes during it is not missed.
            changed, ended = self._changed, self._ended
            entries: Any = await self._redis.xrange(
                self._key, min=f"({last}", max="+", count=_READ_COUNT
            )
            if entries:
                batch, last, ended = _read(entries)
                yield batch
                if ended:
                    return
                continue
            if ended:  # ended without a final event in the log (it could not be written)
                return
            try:
                await asyncio.wait_for(changed.wait(), idle_s)
            except TimeoutError:
                if not await self._redis.exists(self._key + ":alive"):
                    # The run stopped without ending its log (Redis failed it): as a dead one.
                    yield [_interrupted_event(int(last.split("-")[1]))]
                    return
                yield []

    async def _ended_by(self, last: str) -> bool:
        """Whether the final event is in the log at or before entry `last`."""
        newest: Any = await self._redis.xrevrange(self._key, max="+", min="-", count=1)
        if not newest or b"end" not in newest[0][1]:
            return False
        final_id = newest[0][0].decode() if isinstance(newest[0][0], bytes) else newest[0][0]
        return int(final_id.split("-")[1]) <= int(last.split("-")[1])


def _read(entries: list[Any]) -> tuple[list[bytes], str, bool]:
    batch = [fields[b"d"] for _, fields in entries]
    last_id = entries[-1][0]
    last = last_id.decode() if isinstance(last_id, bytes) else str(last_id)
    return batch, last, b"end" in entries[-1][1]


def _interrupted_event(event_id: int) -> bytes:
    return b"id: %d\nevent: error\ndata: %s\n\n" % (event_id, json_bytes(Interrupted().body()))


class RedisEventLogs:
    shared = True

    def __init__(
        self, client: redis.Redis, reader: redis.Redis, *, window_s: float, grace_s: float
    ) -> None:
        self._redis = client
        self._reader = reader
        self._window_s = window_s
        self._grace_ms = max(1, int(grace_s * 1000))
        self._running_ttl_s = int(window_s) + _RUNNING_TTL_S
        self._running: dict[str, RedisEventLog] = {}  # the logs this process writes

    def create(self, translation_id: str) -> EventLog:
        log = RedisEventLog(
            self._redis, self._reader, translation_id, self._running_ttl_s, self._running
        )
        self._running[translation_id] = log
        return log

    async def open(self, translation_id: str) -> EventLog | None:
        if not await self._redis.exists(_key(translation_id)):
            return None
        running = self._running.get(translation_id)
        if running is not None:
            return running
        return RedisEventLog(self._redis, self._reader, translation_id, self._running_ttl_s)

    async def finished(self, translation_id: str) -> None:
        key = _key(translation_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.pexpire(key, max(1, int(self._window_s * 1000)))
            pipe.delete(key + ":alive")
            await pipe.execute()

    async def discard(self, translation_id: str) -> None:
        self._running.pop(translation_id, None)
        key = _key(translation_id)
        await self._redis.delete(key, key + ":alive")

    async def keep_alive(self, translation_ids: list[str]) -> None:
        if not translation_ids:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for translation_id in translation_ids:
                pipe.set(_key(translation_id) + ":alive", b"1", px=_ALIVE_TTL_MS)
            await pipe.execute()

    async def mark_listened(self, translation_id: str) -> None:
        await self._redis.set(_key(translation_id) + ":listened", b"1", px=self._grace_ms)

    async def was_listened(self, translation_id: str) -> bool:
        return bool(await self._redis.exists(_key(translation_id) + ":listened"))

    async def aclose(self) -> None:
        return None  # the client is closed by its owner
