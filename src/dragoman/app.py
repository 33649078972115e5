"""The FastAPI application: `create_app(settings)`; its lifespan opens the process's `Runtime`
(`app.state.runtime`) and ends open streams in-band on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
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
from dragoman.api.live_routes import router as live_router
from dragoman.api.openapi_security import document_bearer_keys
from dragoman.api.request_metrics import RequestMetrics
from dragoman.api.require_key import RequireKey
from dragoman.api.resume_routes import router as resume_router
from dragoman.api.routes import router
from dragoman.auth import keys_required
from dragoman.config import Settings
from dragoman.logging import configure_logging
from dragoman.runtime import Runtime

log = structlog.get_logger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_level)
    require_keys = keys_required(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime(settings, "server")
        await runtime.start()
        app.state.runtime = runtime
        restore = _chain_sigterm(runtime.begin_shutdown)
        try:
            yield
        finally:
            restore()
            await runtime.aclose()
            # The app may outlive its run (FastAPI's module-level routers keep a reference to
            # every app that included them: tests build many): the runtime, which holds the
            # language model, the engines and the database pools, must not.
            del app.state.runtime
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
    app.include_router(live_router)
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
