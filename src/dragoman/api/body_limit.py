"""Pure ASGI middleware: a request body larger than `DRAGOMAN_MAX_BODY_BYTES` is refused with
413 `request_too_large` before it is read whole: at once when its Content-Length says so, else
as soon as the bytes received pass the limit (a chunked body).

Not Starlette's `RequestBodyLimitMiddleware` (FastAPI's `max_body_size`): it lets a request with
an oversized Content-Length run until its body is read, and answers some cases itself in plain
text, where the contract wants the JSON error body.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dragoman.api.errors import error_response
from dragoman.errors import RequestTooLarge


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(f"The request body is larger than this server accepts ({limit} bytes).")


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0  # the server itself refuses a malformed length
                if declared > limit:
                    await error_response(_too_large(limit))(scope, receive, send)
                    return
                break
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised inside the route that reads the body: the application's own
                    # handler answers it, before the rest of the body is read.
                    raise _too_large(limit)
            return message

        await self.app(scope, counting_receive, send)
