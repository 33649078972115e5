"""Pure ASGI middleware: count every answered request by route template and status."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dragoman import metrics

# No response at all: the client left before one was sent (nginx's name for it).
CLIENT_CLOSED = 499


class RequestMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = CLIENT_CLOSED

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        except BaseException:
            if status == CLIENT_CLOSED:
                status = 500
            raise
        finally:
            # The router left the matched route in the scope: its template, not the raw path,
            # keeps the label's values few.
            route = scope.get("route")
            metrics.request_answered(getattr(route, "path", "unmatched"), status)
