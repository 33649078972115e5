"""Fakes behind the seams of the service, for unit tests of its core: a provider whose stream
the test feeds item by item, and a real record store on a SQLite file."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from dragoman.config import Settings
from dragoman.events import Queued
from dragoman.languages import GENERAL_LANGUAGES, LanguageCatalog, LanguageDetector
from dragoman.prompts import TranslationTask
from dragoman.providers.base import StreamState
from dragoman.quotas import Quotas
from dragoman.records.store import RecordStore
from dragoman.registry import StreamRegistry
from dragoman.scripts.store import ScriptStore
from dragoman.service import Translator

END = object()


class FedStream:
    """One upstream request: yields what the test puts (a batch of pieces, a `Queued`, an
    exception to raise, or `END`)."""

    def __init__(self, task: TranslationTask) -> None:
        self.task = task
        self.items: asyncio.Queue[Any] = asyncio.Queue()
        self.closed = asyncio.Event()
        # Set while the consumer waits for the next item with none there.
        self.waiting = asyncio.Event()

    def put(self, *items: Any) -> None:
        for item in items:
            self.items.put_nowait(item)

    async def iterate(self) -> AsyncIterator[list[str] | Queued]:
        try:
            while True:
                if self.items.empty():
                    self.waiting.set()
                item = await self.items.get()
                self.waiting.clear()
                if item is END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.closed.set()


class FedProvider:
    """A provider (the `Provider` protocol) whose every stream is a `FedStream`."""

    name = "fake"
    needs_source_lang = False

    def __init__(self) -> None:
        self.languages = LanguageCatalog(GENERAL_LANGUAGES)
        self.streams: list[FedStream] = []
        self.started = asyncio.Event()

    @property
    def model(self) -> str:
        return "fake-model"

    async def start(self) -> None:
        return None

    def is_ready(self) -> bool:
        return True

    def not_ready_reason(self) -> str | None:
        return None

    async def check_ready(self) -> bool:
        return True

    def stream(self, task: TranslationTask, state: StreamState) -> AsyncIterator[Any]:
        fed = FedStream(task)
        self.streams.append(fed)
        self.started.set()
        return fed.iterate()

    async def aclose(self) -> None:
        return None


async def open_store(tmp_path: Path) -> RecordStore:
    store = RecordStore(f"sqlite+aiosqlite:///{tmp_path / 'records.db'}")
    await store.migrate()
    store.start()
    return store


def translator(
    store: RecordStore,
    provider: FedProvider,
    *,
    quotas: Quotas | None = None,
    registry: StreamRegistry | None = None,
    **settings: Any,
) -> Translator:
    values: dict[str, Any] = {"database_url": "sqlite+aiosqlite://", "log_level": "warning"}
    values.update(settings)
    return Translator(
        Settings(_env_file=None, **values),  # type: ignore[call-arg]
        provider,
        store,
        LanguageDetector(),
        ScriptStore(store.engine),
        quotas,
        registry,
    )
