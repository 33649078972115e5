"""The translation endpoints without the framework's per-request machinery.

`POST /translate` and `POST /v1/translations` are what clients wait on: every microsecond before
the upstream request is a microsecond added to the first token. FastAPI's middleware stack,
router and dependency resolution cost about 0.2 ms per request there, so the application sends
these two requests straight to their handlers, which are the same functions FastAPI has
registered (and documents in /openapi.json). Their errors are answered by the same functions as
the application's exception handlers, so both ways give the same answers.

Requests that carry an `Origin` header go the framework's way when CORS is configured, so that
the CORS middleware answers them; so do other methods and paths.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from dragoman.api.errors import error_response, validation_error_response
from dragoman.errors import DragomanError

log = structlog.get_logger(__name__)

Handler = Callable[[Request], Awaitable[Any]]


class HotPathApp(FastAPI):
    """A FastAPI application that serves a few POST routes directly."""

    hot_paths: Mapping[str, Handler] = MappingProxyType({})
    hot_paths_skip_origin = False

    def serve_directly(self, paths: Mapping[str, Handler], *, unless_cross_origin: bool) -> None:
        self.hot_paths = paths
        self.hot_paths_skip_origin = unless_cross_origin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = None
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self.hot_paths.get(scope["path"])
        if handler is not None and self.hot_paths_skip_origin:
            if any(name == b"origin" for name, _ in scope["headers"]):
                handler = None
        if handler is None:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        await _serve(handler, scope, receive, send)


async def _serve(handler: Handler, scope: Scope, receive: Receive, send: Send) -> None:
    started = False

    async def tracking_send(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started = True
        await send(message)

    try:
        try:
            response: Response = await handler(Request(scope, receive))
        except DragomanError as exc:
            response = error_response(exc)
        except RequestValidationError as exc:
            response = validation_error_response(exc)
        await response(scope, receive, tracking_send)
    except Exception as exc:
        # What the framework's outermost error middleware would do: log, and answer 500 if
        # nothing was sent yet.
        log.exception("unhandled_error", error=type(exc).__name__)
        if not started:
            await error_response(DragomanError())(scope, receive, send)
