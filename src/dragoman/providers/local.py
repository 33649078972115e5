"""The embedded model, served by the engine process (`dragoman.engine`).

The model never runs in the HTTP server's process: a fault in llama.cpp ends the engine, not
the service. The streams it was serving end with `upstream_error` ("the local model process
stopped and is being restarted"), their records end `failed`, /readyz answers 503 until the
supervisor has a new engine ready, and the HTTP server goes on answering.

`dragoman serve` starts one engine for all its workers and tells them its socket through
`DRAGOMAN_ENGINE_SOCKET`; an application built without it (tests, the in-process CLI) starts
and supervises its own.

The engine decodes up to `DRAGOMAN_LOCAL_PARALLEL` requests together and queues the rest in
one fair FIFO (`DRAGOMAN_QUEUE_MAX`), telling each waiting request its position.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import structlog

from dragoman import metrics
from dragoman.config import Settings
from dragoman.engine.client import (
    EngineClient,
    EngineFailed,
    EngineFull,
    EngineLost,
    EngineUnavailable,
)
from dragoman.engine.examples import LOCAL_LANGUAGES
from dragoman.engine.supervisor import RESTARTING, EngineSupervisor, read_status
from dragoman.engine.text import split_segments, split_sentences
from dragoman.engine.vocabulary import bundled_model_path
from dragoman.errors import QueueFull, UpstreamError
from dragoman.events import Queued
from dragoman.languages import LanguageCatalog, base_language
from dragoman.prompts import TranslationTask
from dragoman.providers.base import StreamState
from dragoman.records.record import Usage

log = structlog.get_logger(__name__)

BUNDLED_MODEL = "gemma-3-270m (Q4_K_M)"

__all__ = [
    "BUNDLED_MODEL",
    "LocalProvider",
    "bundled_model_path",
    "split_segments",
    "split_sentences",
]


class LocalProvider:
    name = "local"
    needs_source_lang = True

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.languages = LanguageCatalog(LOCAL_LANGUAGES)
        self._model_name = Path(settings.model_path).name if settings.model_path else BUNDLED_MODEL
        self._own_dir: str | None = None
        self.supervisor: EngineSupervisor | None = None
        if settings.engine_socket:
            socket_path = settings.engine_socket
        else:
            self._own_dir = tempfile.mkdtemp(prefix="dragoman-engine-")
            socket_path = str(Path(self._own_dir) / "engine.sock")
            self.supervisor = EngineSupervisor(
                settings, socket_path, on_restart=metrics.engine_restarted
            )
        self._client = EngineClient(socket_path)
        self._supervising: asyncio.Task[None] | None = None
        self._waiting = 0  # this process's requests in the engine's queue

    @property
    def model(self) -> str:
        return self._model_name

    def engine_status(self) -> dict[str, object]:
        if self.supervisor is not None:
            return self.supervisor.status()
        return read_status(self._client.socket_path)

    async def start(self) -> None:
        if self.supervisor is not None:
            self._supervising = asyncio.create_task(self.supervisor.run())
            await self.supervisor.wait_settled()
        if self.engine_status()["state"] == "ready":
            try:
                await self._client.connect()
            except EngineUnavailable:
                pass

    def is_ready(self) -> bool:
        return self.engine_status()["state"] == "ready"

    def not_ready_reason(self) -> str | None:
        status = self.engine_status()
        if status["state"] == "ready":
            return None
        reason = status.get("reason")
        return str(reason) if reason else "The local model is loading."

    async def check_ready(self) -> bool:
        if not self.is_ready():
            return False
        try:
            await self._client.connect()
        except EngineUnavailable:
            return False
        return True

    async def stream(
        self, task: TranslationTask, state: StreamState
    ) -> AsyncIterator[list[str] | Queued]:
        target = base_language(task.target_lang)
        source = (
            base_language(task.source_lang)
            if task.source_lang
            else ("en" if target != "en" else "ko")
        )
        usage = state.usage = Usage(0, 0)
        shown = -1
        waiting = False
        # Sent while the engine starts or restarts: it waits (the first-token timeout bounds it).
        # A live connection is the answer already: no status read on the way to the first token.
        if not self._client.connected:
            await self._engine_settled()
        try:
            async for kind, value in self._client.translate(
                task.text, source, target, context=task.context, glossary=task.terms()
            ):
                if kind == "piece":
                    yield [value]
                elif kind == "queued":
                    if (value > 0) != waiting:
                        waiting = value > 0
                        self._waiting += 1 if waiting else -1
                        metrics.set_queue_depth(self._waiting)
                    if value != shown:
                        shown = value
                        yield Queued(value)
                else:
                    usage.prompt_tokens, usage.completion_tokens, state.repetition = value
        except EngineFull:
            raise QueueFull(headers={"Retry-After": "5"}) from None
        except EngineFailed as exc:
            raise UpstreamError(str(exc)) from None
        except EngineLost:
            log.error("engine_lost_mid_translation")
            raise UpstreamError(RESTARTING) from None
        except EngineUnavailable:
            raise UpstreamError(self.not_ready_reason() or RESTARTING) from None
        finally:
            if waiting:
                self._waiting -= 1
                metrics.set_queue_depth(self._waiting)

    async def _engine_settled(self) -> None:
        while self.engine_status()["state"] in ("starting", "restarting"):
            if self.supervisor is not None:
                await self.supervisor.wait_settled()
            else:
                await asyncio.sleep(0.1)

    async def aclose(self) -> None:
        await self._client.aclose()
        if self.supervisor is not None:
            await self.supervisor.stop()
        if self._supervising is not None:
            self._supervising.cancel()
            await asyncio.gather(self._supervising, return_exceptions=True)
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)
