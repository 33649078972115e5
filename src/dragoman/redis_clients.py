"""The service's connections to Redis (`DRAGOMAN_REDIS_URL`), shared by resumable translations
and live sessions: one client for short commands, one for blocking reads.

Commands wait for a free connection rather than fail: a burst of listeners (a thousand streams
whose events arrive together) needs more than any fixed number, for a moment. A reader that
waits in `XREAD BLOCK` holds its connection while it waits: those have a client of their own,
sized for every listener a process may have, so that they never starve the short commands.
(The per-key limits keep a small client of their own: they give up on a slow Redis at once.)
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as redis

POOL_SIZE = 200
_POOL_WAIT_S = 10.0
MAX_BLOCKING_READERS = 10_000


def redis_client(url: str, *, max_connections: int = POOL_SIZE) -> redis.Redis:
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=_POOL_WAIT_S
    )
    return redis.Redis.from_pool(pool)  # closing the client closes its connections


@dataclass(frozen=True, slots=True)
class RedisClients:
    commands: redis.Redis
    blocking: redis.Redis

    @classmethod
    def connect(cls, url: str) -> RedisClients:
        return cls(redis_client(url), redis_client(url, max_connections=MAX_BLOCKING_READERS))

    async def aclose(self) -> None:
        await self.commands.aclose()
        await self.blocking.aclose()
