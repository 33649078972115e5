"""An ASGI response whose body is produced by one task while a watcher task reads the client's
channel.

When the client leaves (before the first byte, mid-stream, or during a `stream: false` request),
the producer is cancelled, which stops the work behind it. A client that takes nothing for
`send_timeout_s` is dropped the same way, so a reader that never reads holds no more than one
send's worth of memory. On an idle stream the watcher sends keep-alive comments, so the producer
does no per-piece bookkeeping beyond one counter. The server can end the response in-band
(`abort`, at shutdown or on a cancel request) through the stream registry.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from dragoman.errors import DragomanError
from dragoman.sse import PING

log = structlog.get_logger(__name__)


class WatchedResponse(Response):
    # A Response subclass so that FastAPI passes it through untouched; it sends by itself.
    background: BackgroundTask | None

    def __init__(self, registry: Any, *, keepalive_s: float, send_timeout_s: float) -> None:
        self.background = None
        self.registry = registry  # api.streaming.StreamRegistry
        self.keepalive_s = keepalive_s
        self.send_timeout_s = send_timeout_s
        # When the send in progress began (loop time), None between sends.
        self._sending_since: float | None = None
        self._producer: asyncio.Task[None] | None = None
        self._started = False  # the status line is out
        self._ended = False  # the last message is out: no ping may follow it
        self._sent = 0  # messages of the body sent: the watcher pings only when it stays still

    # What a subclass provides.

    async def _produce(self, send: Send) -> None:
        raise NotImplementedError

    def _stop(self, error: DragomanError) -> None:
        """The server ends the work with `error`; its producer is cancelled next."""
        raise NotImplementedError

    def _pings(self) -> bool:
        """Whether the body is a stream that keep-alive comments may go into."""
        return True

    def _log_fields(self) -> dict[str, Any]:
        return {}

    def _opened(self) -> None:
        return None

    async def _closed(self, produced: bool) -> None:
        """After the response; `produced`: the producer has finished unwinding."""
        return None

    # The response.

    def abort(self, error: DragomanError) -> None:
        if self._producer is not None and not self._producer.done():
            self._stop(error)
            self._producer.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        producer = asyncio.create_task(self._produce(self._timed(send)))
        watcher = asyncio.create_task(self._watch(receive, send))
        self._producer = producer
        self.registry.active.add(self)
        self._opened()
        try:
            done, _ = await asyncio.wait({producer, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if producer in done:
                watcher.cancel()
                producer.result()
            else:  # the client left (or stopped reading): the producer stops the work
                producer.cancel()
                await asyncio.gather(producer, return_exceptions=True)
        except asyncio.CancelledError:
            producer.cancel()
            watcher.cancel()
            raise
        finally:
            self.registry.active.discard(self)
            await self._closed(producer.done())

    def _timed(self, send: Send) -> Send:
        loop = asyncio.get_running_loop()

        async def timed_send(message: Message) -> None:
            self._sending_since = loop.time()
            await send(message)
            self._sending_since = None

        return timed_send

    async def _watch(self, receive: Receive, send: Send) -> None:
        seen = -1
        loop = asyncio.get_running_loop()
        while True:
            try:
                message = await asyncio.wait_for(receive(), self.keepalive_s)
            except TimeoutError:
                since = self._sending_since
                if since is not None and loop.time() - since > self.send_timeout_s:
                    log.warning("client_too_slow", **self._log_fields())
                    return  # as if it had left
                if (
                    self._started
                    and not self._ended
                    and self._pings()
                    and seen == self._sent
                    and since is None
                ):
                    try:
                        async with asyncio.timeout(self.send_timeout_s):
                            await send(
                                {"type": "http.response.body", "body": PING, "more_body": True}
                            )
                    except TimeoutError:
                        log.warning("client_too_slow", **self._log_fields())
                        return
                seen = self._sent
                continue
            if message["type"] == "http.disconnect":
                return
