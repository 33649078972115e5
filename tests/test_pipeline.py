"""Every route goes through the application's middleware stack, the translation endpoints too."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from dragoman.config import Settings
from tests.conftest import ServerThread
from tests.helpers import raw_events, raw_text, v1_events, v1_text


class Probe:
    """A pure ASGI middleware that writes down each request it sees, and answers 418 itself
    to requests that carry `x-probe-block`."""

    def __init__(self, app: ASGIApp, seen: list[tuple[str, str]]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen.append((scope["method"], scope["path"]))
            if any(name == b"x-probe-block" for name, _ in scope["headers"]):
                await send({"type": "http.response.start", "status": 418, "headers": []})
                await send({"type": "http.response.body", "body": b"blocked"})
                return
        await self.app(scope, receive, send)


def test_a_middleware_sees_both_translation_endpoints(
    make_settings: Callable[..., Settings],
) -> None:
    seen: list[tuple[str, str]] = []
    server = ServerThread(make_settings())
    server.app.add_middleware(Probe, seen=seen)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            _, events = raw_events(client, {"lang": "ko", "message": "Hello"})
            assert raw_text(events)
            _, events = v1_events(client, {"text": "Hello", "target_lang": "ko"})
            assert v1_text(events)
            finished = client.post(
                "/v1/translations", json={"text": "Hello", "target_lang": "ko", "stream": False}
            )
            assert finished.status_code == 200
        assert seen.count(("POST", "/translate")) == 1
        assert seen.count(("POST", "/v1/translations")) == 2
    finally:
        server.stop()


def test_a_middleware_answer_stands_for_both_translation_endpoints(
    make_settings: Callable[..., Settings],
) -> None:
    seen: list[tuple[str, str]] = []
    server = ServerThread(make_settings())
    server.app.add_middleware(Probe, seen=seen)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            blocked = {"x-probe-block": "1"}
            compat = client.post(
                "/translate", json={"lang": "ko", "message": "Hello"}, headers=blocked
            )
            v1 = client.post(
                "/v1/translations", json={"text": "Hello", "target_lang": "ko"}, headers=blocked
            )
        assert (compat.status_code, compat.text) == (418, "blocked")
        assert (v1.status_code, v1.text) == (418, "blocked")
    finally:
        server.stop()
