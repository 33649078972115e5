"""The FastAPI application: `create_app(settings)` builds everything on `app.state`."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

import structlog
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from dragoman import __version__, metrics
from dragoman.api import libretranslate
from dragoman.api.body_limit import BodyLimit
from dragoman.api.docs import install_offline_docs
from dragoman.api.errors import install_error_handlers
from dragoman.api.openapi_security import document_bearer_keys
from dragoman.api.request_metrics import RequestMetrics
from dragoman.api.require_key import RequireKey
from dragoman.api.resume_routes import router as resume_router
from dragoman.api.routes import router
from dragoman.api.streaming import StreamRegistry
from dragoman.auth import keys_required
from dragoman.config import Settings
from dragoman.errors import ShuttingDown
from dragoman.keys import KeyStore
from dragoman.logging import configure_logging
from dragoman.quotas import Quotas
from dragoman.records.store import RecordStore
from dragoman.resumable.service import Resumption
from dragoman.scripts import Scripts
from dragoman.service import build_translator

log = structlog.get_logger(__name__)

# Set by `dragoman serve` when it has already migrated the database and finished orphaned
# records, so that several workers do not each do it (and fail each other's live records).
PREPARED_ENV = "DRAGOMAN_DB_PREPARED"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_level)
    require_keys = keys_required(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = RecordStore(settings.database_url)
        if os.environ.get(PREPARED_ENV) != "1":
            await store.prepare()
        store.start()
        quotas = Quotas(settings) if require_keys else None
        if quotas is not None:
            quotas.start()
        translator = build_translator(settings, store, quotas)
        provider = translator.provider
        registry = StreamRegistry()
        app.state.store = store
        app.state.keys = KeyStore(store.engine)
        app.state.keys_required = keys_required(settings)
        app.state.registry = registry
        app.state.translator = translator
        resumption = app.state.resumption = Resumption(settings, registry)
        await resumption.start()
        app.state.scripts = Scripts(translator.scripts, provider.languages)
        background = [
            asyncio.create_task(_start_provider(provider)),
            asyncio.create_task(asyncio.to_thread(translator.detector.warm_up)),
        ]
        restore = _chain_sigterm(lambda: _begin_shutdown(registry, settings.shutdown_grace_s))
        try:
            yield
        finally:
            restore()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            registry.abort_all(ShuttingDown())
            await asyncio.gather(*[run.ended() for run in list(resumption.runs.values())])
            await resumption.aclose()
            await translator.aclose()
            if quotas is not None:
                await quotas.aclose()
            await store.aclose()
            metrics.process_exiting()

    # Every route, the translation endpoints included, goes through the same middleware stack
    # and exception handlers: whatever is added to it (keys, limits, metrics, CORS) sees them.
    app = FastAPI(
        title="dragoman",
        version=__version__,
        summary="Live machine translation streamed over Server-Sent Events.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    install_offline_docs(app)
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(resume_router)
    document_bearer_keys(app)
    app.include_router(libretranslate.router)
    # Pure ASGI middleware only (BaseHTTPMiddleware would hide a stream's disconnect). The
    # last added runs first: CORS answers preflights before a key is asked for.
    app.add_middleware(RequireKey, required=require_keys)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "OPTIONS"],
            allow_headers=["authorization", "content-type", "x-script-id"],
            expose_headers=["x-translation-id", "retry-after"],
        )
    app.add_middleware(RequestMetrics)
    return app


async def _start_provider(provider: Any) -> None:
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


def _begin_shutdown(registry: StreamRegistry, grace_s: float) -> None:
    if registry.stopping:
        return
    registry.stopping = True
    log.info("shutdown_started", open_streams=len(registry.active), grace_s=grace_s)
    asyncio.get_running_loop().call_later(grace_s, registry.abort_all, ShuttingDown())


def _chain_sigterm(on_term: Any) -> Any:
    """Run `on_term` on SIGTERM before the server's own handler (uvicorn's) runs.

    uvicorn stops accepting connections and then waits for open ones; this lets open streams
    run on for the grace period and then end in-band with `shutting_down`.
    """
    loop = asyncio.get_running_loop()
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except ValueError:
        return lambda: None

    def handler(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(on_term)
        if callable(previous):
            previous(signum, frame)

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (an app served from a test thread)
        return lambda: None

    def restore() -> None:
        try:
            if signal.getsignal(signal.SIGTERM) is handler:
                signal.signal(signal.SIGTERM, previous)
        except ValueError:
            pass

    return restore
