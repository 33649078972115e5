"""A worker's connection to the engine: many translations multiplexed on one Unix socket.

When the engine process dies, its socket closes: every translation in flight on it ends with
`EngineLost`, and the next request connects to the restarted engine.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import structlog

from dragoman.engine import wire

log = structlog.get_logger(__name__)


class EngineUnavailable(Exception):
    """No engine answers on the socket (starting, restarting, or gone)."""


class EngineLost(Exception):
    """The engine's connection closed while a translation was running."""


class EngineFull(Exception):
    """The engine's queue is full."""


class EngineFailed(Exception):
    """The engine reported a failed translation (its message is for people)."""


_LOST: dict[str, Any] = {"lost": 1}


class EngineClient:
    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Queue[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._connecting: asyncio.Lock | None = None
        self.hello: dict[str, Any] = {}

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def connect(self) -> None:
        if self.connected:
            return
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self.connected:
                return
            try:
                reader, writer = await asyncio.open_unix_connection(
                    self.socket_path, limit=wire.LINE_LIMIT
                )
                first = await asyncio.wait_for(reader.readline(), 10)
                self.hello = wire.decode(first).get("hello") or {}
            except (OSError, TimeoutError, ValueError) as exc:
                raise EngineUnavailable() from exc
            self._writer = writer
            self._reader_task = asyncio.create_task(self._read(reader, writer))

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                message = wire.decode(line)
                queue = self._pending.get(message.get("id", -1))
                if queue is not None:
                    queue.put_nowait(message)
        except (OSError, ValueError) as exc:
            log.warning("engine_connection_error", error=type(exc).__name__)
        finally:
            if self._writer is writer:
                self._writer = None
            writer.close()
            for queue in self._pending.values():
                queue.put_nowait(_LOST)

    async def translate(
        self,
        text: str,
        source: str,
        target: str,
        *,
        context: list[tuple[str, str]] | None = None,
        glossary: list[tuple[str, str]] | None = None,
    ) -> AsyncIterator[tuple[str, Any]]:
        """("queued", position), ("piece", text), ("usage", (prompt, completion, repetition))
        items (`repetition`: what the loop guard did, or None).

        Raises EngineUnavailable, EngineFull, EngineLost or EngineFailed. Leaving early (the
        consumer closes it) stops the generation at the engine's next step.
        """
        await self.connect()
        writer = self._writer
        assert writer is not None
        key = next(self._ids)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._pending[key] = queue
        finished = False
        try:
            message: dict[str, Any] = {"go": key, "text": text, "source": source, "target": target}
            # Only a script segment has these; the engine reads them as absent otherwise.
            if context:
                message["context"] = [list(pair) for pair in context]
            if glossary:
                message["glossary"] = [list(pair) for pair in glossary]
            writer.write(wire.encode(message))
            while True:
                message = await queue.get()
                if "p" in message:
                    yield "piece", message["p"]
                elif "q" in message:
                    yield "queued", message["q"]
                elif "end" in message:
                    finished = True
                    yield "usage", (*message["end"], message.get("rep"))
                    return
                elif "full" in message:
                    finished = True
                    raise EngineFull()
                elif "err" in message:
                    finished = True
                    raise EngineFailed(str(message["err"]))
                elif "lost" in message:
                    finished = True
                    raise EngineLost()
        finally:
            del self._pending[key]
            if not finished and self._writer is writer and not writer.is_closing():
                writer.write(wire.encode({"stop": key}))

    async def aclose(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            await asyncio.gather(self._reader_task, return_exceptions=True)
