"""The one streaming response of the service: every stream (translations, script segments,
subtitle files, resumable logs, live sessions) and every `"stream": false` answer is one.

It runs the stream's events in a producer task, encoded by a `Wire`, while a watcher task reads
the client's channel:

- **The first-event gate.** The status line waits for the first event that shows anything
  (`gate=True`), so that a failure before it is a real HTTP status with a JSON body
  (`api.errors.error_response`'s shape); after it, a failure is the wire's in-band error.
  Listeners of a log or a live channel (`gate=False`) are answered at once: whatever could
  refuse them was decided before the response.
- **The registry.** The stream is in the registry while it runs, so that a shutdown ends it
  in-band (`abort`), and a translation is found by id for a cancel request.
- **Keep-alive.** On an idle stream the watcher sends `: ping` comments every `keepalive_s`.
- **The client.** When the client leaves (before the first byte too, or during a
  `"stream": false` answer) the producer is cancelled, which stops the work behind it (the
  upstream connection is closed, the record ends `cancelled`). A client that takes nothing for
  `send_timeout_s` is dropped the same way, so a reader that never reads holds no more than one
  send's worth of memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Protocol

import orjson
import structlog
from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from dragoman import metrics
from dragoman.errors import DragomanError
from dragoman.events import Event, Failed
from dragoman.registry import Running, StreamRegistry
from dragoman.runtime import Runtime
from dragoman.service import TranslationRequest
from dragoman.wire import HEADERS, JSON, PING, Wire, is_final

log = structlog.get_logger(__name__)


class Stream(Protocol):
    """What a response serves: a job, a subtitle file's run, a log's listener."""

    def events(self) -> AsyncGenerator[Event, None]: ...

    def abort(self, error: DragomanError) -> None:
        """The server ends it (shutdown): its events end with that failure."""

    def release(self) -> None:
        """The response is over (or its client left): give back what the stream holds.
        Idempotent."""


def _header_list(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode()) for k, v in headers.items()]


_STREAM_HEADERS = _header_list(HEADERS)


class EventStreamResponse(Response):
    # A Response subclass so that FastAPI passes it through untouched; it sends by itself.
    background: BackgroundTask | None

    def __init__(
        self,
        stream: Stream,
        wire: Wire,
        registry: StreamRegistry,
        *,
        keepalive_s: float,
        send_timeout_s: float,
        headers: dict[str, str] | None = None,
        running: Running | None = None,
        gate: bool = True,
    ) -> None:
        self.background = None
        self.stream = stream
        self.wire = wire
        self.registry = registry
        self.keepalive_s = keepalive_s
        self.send_timeout_s = send_timeout_s
        self.out_headers = headers or {}
        # A translation that a cancel request may stop by its record id.
        self.running = running
        self.gate = gate
        # When the send in progress began (loop time), None between sends.
        self._sending_since: float | None = None
        self._started = False  # the status line is out
        self._ended = False  # the last message is out: no ping may follow it
        self._sent = 0  # messages of the body sent: the watcher pings only when it stays still

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        producer = asyncio.create_task(self._produce(self._timed(send)))
        watcher = asyncio.create_task(self._watch(receive, send))
        self._opened()
        try:
            done, _ = await asyncio.wait({producer, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if producer in done:
                watcher.cancel()
                producer.result()
            else:  # the client left (or stopped reading): the producer stops the work
                producer.cancel()
                self.stream.release()
                await asyncio.gather(producer, return_exceptions=True)
        except asyncio.CancelledError:
            producer.cancel()
            watcher.cancel()
            raise
        finally:
            self._closed()

    def _opened(self) -> None:
        self.registry.active.add(self.stream)
        if self.running is not None:
            metrics.stream_opened()
            self.registry.running[self.running.record.id] = self.running

    def _closed(self) -> None:
        self.registry.active.discard(self.stream)
        self.stream.release()
        if self.running is not None:
            metrics.stream_closed()
            record_id = self.running.record.id
            if self.registry.running.get(record_id) is self.running:
                del self.registry.running[record_id]

    # The producer.

    async def _produce(self, send: Send) -> None:
        if not self.gate:
            await self._start(send)
        try:
            if await self._stream_events(send):
                return
        except DragomanError as exc:  # a stream may raise instead of ending with `Failed`
            await self._fail(send, Failed(exc))
            return
        except Exception:
            log.exception("stream_failed", **self._log_fields())
            await self._fail(send, Failed(DragomanError()))
            return
        if not self._started:
            await self._start(send)
        self._ended = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _stream_events(self, send: Send) -> bool:
        """Send the stream's events; True when its final event ended the answer."""
        wire = self.wire
        async with aclosing(self.stream.events()) as events:
            async for event in events:
                if type(event) is Failed:
                    await self._fail(send, event)
                    return True
                body = wire.encode(event)
                final = is_final(event)
                if not body and not final:
                    continue
                if not self._started:
                    await self._start(send)
                self._sent += 1
                self._ended = final
                await send({"type": "http.response.body", "body": body, "more_body": not final})
                if final:
                    return True
        return False

    async def _start(self, send: Send) -> None:
        headers = [(b"content-type", self.wire.media_type.encode())]
        if self.wire.streaming:
            headers += _STREAM_HEADERS
        headers += _header_list(self.out_headers)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        self._started = True

    async def _fail(self, send: Send, failed: Failed) -> None:
        error = failed.error
        if self._started:
            if not self._ended:
                self._ended = True
                body = self.wire.failure(error)
                await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        # Before the first byte: a real status, as `error_response` answers it; the record's
        # id only when a record was stored to point at.
        headers = {**error.headers, **(self.out_headers if failed.recorded else {})}
        await send(
            {
                "type": "http.response.start",
                "status": error.status,
                "headers": [(b"content-type", JSON.encode()), *_header_list(headers)],
            }
        )
        self._started = self._ended = True
        await send({"type": "http.response.body", "body": orjson.dumps(error.body())})

    def _timed(self, send: Send) -> Send:
        loop = asyncio.get_running_loop()

        async def timed_send(message: Message) -> None:
            self._sending_since = loop.time()
            await send(message)
            self._sending_since = None

        return timed_send

    # The watcher.

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
                    and self.wire.streaming
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

    def _log_fields(self) -> dict[str, str]:
        return {"id": self.out_headers.get("X-Translation-Id", "")}


def respond(
    runtime: Runtime,
    stream: Stream,
    wire: Wire,
    *,
    headers: dict[str, str] | None = None,
    running: Running | None = None,
    gate: bool = True,
) -> EventStreamResponse:
    """The response of a stream, with the runtime's registry and timings."""
    settings = runtime.settings
    return EventStreamResponse(
        stream,
        wire,
        runtime.registry,
        keepalive_s=settings.keepalive_s,
        send_timeout_s=settings.send_timeout_s,
        headers=headers,
        running=running,
        gate=gate,
    )


async def job_response(
    runtime: Runtime, request: TranslationRequest, wire: Wire
) -> EventStreamResponse:
    """Submit a translation and answer it as it streams (or as one JSON answer)."""
    job = await runtime.translator.submit(request)
    return respond(runtime, job, wire, headers={"X-Translation-Id": job.record.id}, running=job)
