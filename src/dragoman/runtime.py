"""The long-lived objects of one process, built in one place: the server, the in-process CLI,
the subtitles CLI and the keys and records commands all open a `Runtime`.

Three ways to open it:

- `"server"`: migrations (and records a dead process left `streaming` finished as
  `interrupted`), unless `dragoman serve` did that already for all its workers; the per-key
  limits when keys are on; resumable runs and cancel requests; live sessions; the provider
  started in the background (`/readyz` says when it is ready);
- `"translate"`: migrations only (a record left `streaming` may belong to a running server), the
  provider started and awaited before the first translation;
- `"records"`: migrations only, no provider: keys, history, export.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

import structlog

from dragoman.auth import keys_required
from dragoman.config import Settings
from dragoman.errors import DatabaseUnavailable, InvalidRequest, ShuttingDown
from dragoman.keys import KeyStore
from dragoman.languages import GENERAL_LANGUAGES, LanguageCatalog, LanguageDetector
from dragoman.live.service import Live
from dragoman.live.store import SessionStore
from dragoman.providers.base import Provider
from dragoman.providers.factory import make_provider
from dragoman.quotas import Quotas
from dragoman.records.store import RecordStore
from dragoman.redis_clients import RedisClients
from dragoman.registry import StreamRegistry
from dragoman.resumable.service import Resumption
from dragoman.scripts.catalog import Scripts
from dragoman.scripts.store import ScriptStore
from dragoman.service import Translator

log = structlog.get_logger(__name__)

Mode = Literal["server", "translate", "records"]

# Set by `dragoman serve` when it has already migrated the database and finished orphaned
# records, so that several workers do not each do it (and fail each other's live records).
PREPARED_ENV = "DRAGOMAN_DB_PREPARED"


class Runtime:
    def __init__(self, settings: Settings, mode: Mode) -> None:
        self.settings = settings
        self.mode = mode
        self.store = RecordStore(settings.database_url, outage_wait_s=settings.database_wait_s)
        self.keys = KeyStore(self.store.engine)
        self.keys_required = mode == "server" and keys_required(settings)
        self.quotas = Quotas(settings) if self.keys_required else None
        self.registry = StreamRegistry()
        self.detector = LanguageDetector()
        self._provider = make_provider(settings) if mode != "records" else None
        script_store = ScriptStore(self.store.engine)
        self._translator = (
            Translator(
                settings,
                self._provider,
                self.store,
                self.detector,
                script_store,
                self.quotas,
                self.registry,
            )
            if self._provider is not None
            else None
        )
        # Reading needs no provider: any language a stored record may be in is listed then.
        languages = (
            self._provider.languages
            if self._provider is not None
            else LanguageCatalog(GENERAL_LANGUAGES)
        )
        self.scripts = Scripts(script_store, languages)
        # Resumable translations and live sessions share one set of Redis clients.
        self._redis = (
            RedisClients.connect(settings.redis_url)
            if mode == "server" and settings.redis_url
            else None
        )
        self._resumption = (
            Resumption(settings, self.registry, self._redis) if mode == "server" else None
        )
        self._live = (
            Live(
                settings,
                self._translator,
                SessionStore(self.store.engine),
                self.keys,
                self.registry,
                self._redis,
            )
            if mode == "server" and self._translator is not None
            else None
        )
        self._background: list[asyncio.Task[None]] = []

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings, mode: Mode) -> AsyncIterator[Runtime]:
        openai = settings.provider == "openai" and not settings.upstreams
        if mode == "translate" and openai and not settings.resolved_api_key():
            raise InvalidRequest("the openai provider needs OPENAI_API_KEY or OPENAI_BASE_URL")
        runtime = cls(settings, mode)
        try:
            await runtime.start()
            yield runtime
        finally:
            await runtime.aclose()

    @staticmethod
    async def prepare_database(settings: Settings) -> None:
        """Once before the workers of `dragoman serve` start: migrations, and the records a
        dead process left `streaming` finished as `interrupted` (then `PREPARED_ENV`)."""
        store = RecordStore(settings.database_url)
        try:
            await store.prepare()
        finally:
            await store.engine.dispose()

    @property
    def provider(self) -> Provider:
        assert self._provider is not None, "a records runtime has no provider"
        return self._provider

    @property
    def translator(self) -> Translator:
        assert self._translator is not None, "a records runtime has no translator"
        return self._translator

    @property
    def live(self) -> Live:
        assert self._live is not None, "only the server runs live sessions"
        return self._live

    @property
    def resumption(self) -> Resumption:
        assert self._resumption is not None, "only the server resumes translations"
        return self._resumption

    async def start(self) -> None:
        if self.mode == "server":
            if os.environ.get(PREPARED_ENV) != "1":
                await self.store.prepare()
        else:
            try:
                # Migrations only: records left `streaming` may belong to a running server.
                await self.store.migrate()
            except Exception as exc:
                raise DatabaseUnavailable(f"database: {exc}") from exc
        if self.mode == "records":
            return
        self.store.start()
        if self.quotas is not None:
            self.quotas.start()
        if self._resumption is not None:
            await self._resumption.start()
        if self._live is not None:
            await self._live.start()
        if self.mode == "server":
            self._background = [
                asyncio.create_task(_start_provider(self.provider)),
                asyncio.create_task(asyncio.to_thread(self.detector.warm_up)),
            ]
            return
        try:
            await self.provider.start()
        except Exception as exc:
            raise InvalidRequest(
                f"the {self.settings.provider} provider cannot start: {exc}"
            ) from exc

    def begin_shutdown(self) -> None:
        """SIGTERM: refuse new streams now; end the open ones in-band after the grace period."""
        registry = self.registry
        if registry.stopping:
            return
        registry.stopping = True
        grace_s = self.settings.shutdown_grace_s
        log.info("shutdown_started", open_streams=len(registry.active), grace_s=grace_s)
        asyncio.get_running_loop().call_later(grace_s, registry.abort_all, ShuttingDown())

    async def aclose(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self.registry.abort_all(ShuttingDown())
        if self._live is not None:
            await self._live.aclose()
        if self._resumption is not None:
            await asyncio.gather(*[run.ended() for run in list(self._resumption.runs.values())])
            await self._resumption.aclose()
        if self._redis is not None:
            await self._redis.aclose()
        if self._translator is not None:
            await self._translator.aclose()
        if self.quotas is not None:
            await self.quotas.aclose()
        await self.store.aclose()


async def _start_provider(provider: Provider) -> None:
    started = time.perf_counter()
    try:
        await provider.start()
    except Exception:
        log.exception("provider_start_failed", provider=provider.name)
        return
    log.info(
        "provider_started",
        provider=provider.name,
        model=provider.model,
        seconds=round(time.perf_counter() - started, 3),
    )
