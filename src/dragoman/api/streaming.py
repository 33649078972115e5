"""ASGI responses that run a translation job and watch its client at the same time.

The status line waits for the job's first piece (or, on the v1 stream, its first queue
update), so that failures before it are real HTTP errors. The watching is
`WatchedResponse`'s: when the client leaves, the job's task is cancelled, which closes the
upstream connection and queues the record as `cancelled`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any, Literal, Protocol

import orjson
import structlog
from starlette.types import Send

from dragoman import metrics
from dragoman.api.watched_response import WatchedResponse
from dragoman.errors import DatabaseUnavailable, DragomanError, QueueFull, RateLimited
from dragoman.providers.base import Queued
from dragoman.service import Event, Failed, Finished, Job
from dragoman.sse import DONE, HEADERS, JsonEventEncoder, RawTextEncoder, json_bytes

log = structlog.get_logger(__name__)

Encoding = Literal["raw", "events", "json"]

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    *((k.lower().encode(), v.encode()) for k, v in HEADERS.items()),
]


class Abortable(Protocol):
    """Anything the server can end in-band at shutdown: a job response, a resumable run, a
    subtitle stream."""

    def abort(self, error: DragomanError) -> None: ...


class Stoppable(Abortable, Protocol):
    """A running translation that the server can end: a job response or a resumable run."""

    job: Job

    async def ended(self) -> None:
        """Return once it has stopped and queued its record's final state."""


class StreamRegistry:
    """The running translations, so that a shutdown can end them in-band and a cancel request
    can find them by id."""

    def __init__(self) -> None:
        self.active: set[Abortable] = set()
        self.running: dict[str, Stoppable] = {}
        self.stopping = False

    def abort_all(self, error: DragomanError) -> None:
        for response in list(self.active):
            response.abort(error)


class JobResponse(WatchedResponse):
    def __init__(
        self,
        job: Job,
        encoding: Encoding,
        registry: StreamRegistry,
        *,
        keepalive_s: float,
        send_timeout_s: float = 30.0,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(registry, keepalive_s=keepalive_s, send_timeout_s=send_timeout_s)
        self.job = job
        self.encoding = encoding
        self.out_headers = {"X-Translation-Id": job.record.id, **(extra_headers or {})}

    def _stop(self, error: DragomanError) -> None:
        self.job.abort(error)

    def _pings(self) -> bool:
        return self.encoding != "json"

    def _log_fields(self) -> dict[str, Any]:
        return {"id": self.job.record.id}

    def _opened(self) -> None:
        metrics.stream_opened()
        self.registry.running[self.job.record.id] = self

    async def _closed(self, produced: bool) -> None:
        metrics.stream_closed()
        self.job.release()
        self.registry.running.pop(self.job.record.id, None)

    async def ended(self) -> None:
        if self._producer is not None:
            await asyncio.wait({self._producer})

    async def _start(self, send: Send, status: int = 200) -> None:
        headers = [
            *SSE_HEADERS,
            *((k.lower().encode(), v.encode()) for k, v in self.out_headers.items()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        self._started = True

    async def _produce(self, send: Send) -> None:
        events = self.job.events()
        try:
            if self.encoding == "raw":
                await self._produce_raw(send, events)
            elif self.encoding == "events":
                await self._produce_events(send, events)
            else:
                await self._produce_json(send, events)
        except asyncio.CancelledError:
            # Cancelled while the job was suspended (say, inside a slow send).
            error = await self.job.unwind(events)
            if error is None:
                raise
            await self._fail(send, error)  # ended by the server: in-band, record stored

    async def _fail(self, send: Send, error: DragomanError) -> None:
        if self._started:
            if self.encoding == "events":
                body = self._events.event("error", error.body())
            else:
                body = b"event: error\ndata: " + json_bytes(error.body()) + b"\n\n"
            self._ended = True
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        headers = [(b"content-type", b"application/json")]
        out_headers = {**error.headers, **self.out_headers}
        if isinstance(error, DatabaseUnavailable | QueueFull | RateLimited):  # no record
            out_headers.pop("X-Translation-Id", None)
        for k, v in out_headers.items():
            headers.append((k.lower().encode(), v.encode()))
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": orjson.dumps(error.body())})

    async def _produce_raw(self, send: Send, events: AsyncGenerator[Event, None]) -> None:
        encoder = RawTextEncoder()
        async for event in events:
            if type(event) is list:
                chunk = b"".join([encoder.piece(piece) for piece in event])
                if not chunk:
                    continue
                if not self._started:
                    await self._start(send)
                self._sent += 1
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            elif isinstance(event, Finished):
                if not self._started:
                    await self._start(send)
                self._ended = True
                await send({"type": "http.response.body", "body": DONE, "more_body": False})
            elif isinstance(event, Failed):
                await self._fail(send, event.error)

    async def _produce_events(self, send: Send, events: AsyncGenerator[Event, None]) -> None:
        self._events = encoder = JsonEventEncoder()
        async for event in events:
            if isinstance(event, Failed):
                await self._fail(send, event.error)
                continue
            if isinstance(event, Queued) and event.position <= 0:
                continue
            prefix = b""
            if not self._started:
                await self._start(send)
                prefix = self._start_event()
            if type(event) is list:
                self._sent += 1
                body = prefix + b"".join([encoder.delta(piece) for piece in event])
                await send({"type": "http.response.body", "body": body, "more_body": True})
            elif isinstance(event, Queued):
                body = prefix + encoder.event("queued", {"position": event.position})
                await send({"type": "http.response.body", "body": body, "more_body": True})
            elif isinstance(event, Finished):
                body = prefix + encoder.event("done", event.record.public())
                self._ended = True
                await send({"type": "http.response.body", "body": body, "more_body": False})

    def _start_event(self) -> bytes:
        record = self.job.record
        return self._events.event(
            "start", {"id": record.id, "provider": record.provider, "model": record.model}
        )

    async def _produce_json(self, send: Send, events: AsyncGenerator[Event, None]) -> None:
        async for event in events:
            if isinstance(event, Finished):
                headers = [(b"content-type", b"application/json")]
                headers += [(k.lower().encode(), v.encode()) for k, v in self.out_headers.items()]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                self._started = True
                await send(
                    {"type": "http.response.body", "body": orjson.dumps(event.record.public())}
                )
            elif isinstance(event, Failed):
                await self._fail(send, event.error)
