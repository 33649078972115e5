"""Who listens to a live session, in which language, across every replica: a segment is
translated into each language that has at least one listener somewhere.

Each process counts its own listeners. With Redis, it writes its counts into the session's
hash (`dragoman:live:<session>:listeners`, field `<process>|<lang>`, value
`<count>|<expiry>`) when they change and every few seconds, and readers add up the fields that
have not expired, so the counts of a process that died fall away within `_FRESH_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter

import redis.asyncio as redis
import structlog

from dragoman import metrics

log = structlog.get_logger(__name__)

_REFRESH_S = 5.0
_FRESH_S = 15.0


def _key(session_id: str) -> str:
    return f"dragoman:live:{session_id}:listeners"


class Presence:
    def __init__(self, client: redis.Redis | None) -> None:
        self._redis = client
        self._process = uuid.uuid4().hex[:12]
        self._local: Counter[tuple[str, str]] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        if self._redis is not None:
            self._task = asyncio.create_task(self._refresh(), name="dragoman-live-presence")

    async def aclose(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def joined(self, session_id: str, lang: str) -> None:
        self._local[(session_id, lang)] += 1
        metrics.live_listener_joined(lang)
        await self._write(session_id, lang)

    async def left(self, session_id: str, lang: str) -> None:
        self._local[(session_id, lang)] -= 1
        if self._local[(session_id, lang)] <= 0:
            del self._local[(session_id, lang)]
        metrics.live_listener_left(lang)
        await self._write(session_id, lang)

    async def counts(self, session_id: str) -> dict[str, int]:
        """Listeners per language, in every process (while Redis cannot be reached: in this
        one, so that a segment said meanwhile still goes into its listeners' languages)."""
        if self._redis is None:
            return self._own(session_id)
        try:
            fields = await self._redis.hgetall(_key(session_id))
        except Exception as exc:
            log.warning("live_presence_read_failed", error=type(exc).__name__)
            return self._own(session_id)
        now = time.time()
        counts: Counter[str] = Counter()
        for field, value in fields.items():
            _, lang = _text(field).split("|", 1)
            count, expiry = _text(value).split("|", 1)
            if float(expiry) > now and int(count) > 0:
                counts[lang] += int(count)
        return dict(counts)

    def _own(self, session_id: str) -> dict[str, int]:
        return {
            lang: count for (session, lang), count in self._local.items() if session == session_id
        }

    async def _write(self, session_id: str, lang: str) -> None:
        if self._redis is None:
            return
        count = self._local.get((session_id, lang), 0)
        field = f"{self._process}|{lang}"
        try:
            if count > 0:
                await self._redis.hset(
                    _key(session_id), field, f"{count}|{time.time() + _FRESH_S:.3f}"
                )
                await self._redis.expire(_key(session_id), int(_FRESH_S * 4))
            else:
                await self._redis.hdel(_key(session_id), field)
        except Exception as exc:  # counted again at the next refresh
            log.warning("live_presence_write_failed", error=type(exc).__name__)

    async def _refresh(self) -> None:
        assert self._redis is not None
        while not self._closing:
            await asyncio.sleep(_REFRESH_S)
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    expiry = f"{time.time() + _FRESH_S:.3f}"
                    for (session_id, lang), count in list(self._local.items()):
                        pipe.hset(_key(session_id), f"{self._process}|{lang}", f"{count}|{expiry}")
                        pipe.expire(_key(session_id), int(_FRESH_S * 4))
                    await pipe.execute()
            except Exception as exc:
                log.warning("live_presence_refresh_failed", error=type(exc).__name__)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
