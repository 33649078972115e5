"""Event logs in this process's memory: resume works against the process that runs it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from dragoman.resumable.log import EventLog


class MemoryEventLog:
    __slots__ = ("_changed", "ended", "entries")

    def __init__(self) -> None:
        self.entries: list[bytes] = []
        self.ended = False
        self._changed = asyncio.Event()

    async def append(self, events: list[bytes], *, end: bool = False) -> None:
        self.entries += events
        self.ended = self.ended or end
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def follow(self, after: int, idle_s: float) -> AsyncIterator[list[bytes]]:
        position = max(after + 1, 0)
        while True:
            if position < len(self.entries):
                batch = self.entries[position:]
                position = len(self.entries)
                yield batch
                continue
            if self.ended:
                return
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), idle_s)
            except TimeoutError:
                yield []


class MemoryEventLogs:
    shared = False

    def __init__(self, window_s: float) -> None:
        self._window_s = window_s
        self._logs: dict[str, MemoryEventLog] = {}

    def create(self, translation_id: str) -> EventLog:
        log = self._logs[translation_id] = MemoryEventLog()
        return log

    async def open(self, translation_id: str) -> EventLog | None:
        return self._logs.get(translation_id)

    async def finished(self, translation_id: str) -> None:
        asyncio.get_running_loop().call_later(self._window_s, self._drop, translation_id)

    async def discard(self, translation_id: str) -> None:
        self._drop(translation_id)

    def _drop(self, translation_id: str) -> None:
        self._logs.pop(translation_id, None)

    async def keep_alive(self, translation_ids: list[str]) -> None:
        return None

    async def mark_listened(self, translation_id: str) -> None:
        return None

    async def was_listened(self, translation_id: str) -> bool:
        return False  # every listener is local, and counted by the run itself

    async def aclose(self) -> None:
        self._logs.clear()
