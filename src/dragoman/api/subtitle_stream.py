"""`POST /v1/subtitles` as a response: the run's events as JSON SSE events (ids from 0), or
the `done` object as JSON.

The first event is awaited before the status is sent, so that a failure before it (a bad
language, the key's limit, the first cue's upstream failing before its first piece) is a real
HTTP status; later failures are one in-band `error` event. The watching is
`WatchedResponse`'s, as for translations: a client that leaves (also during `stream: false`)
or stops reading for `DRAGOMAN_SEND_TIMEOUT_S` cancels the run and the cue in progress ends
`cancelled`; idle streams get keep-alive comments; a shutdown ends the stream in-band
(`shutting_down`) through the stream registry.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import orjson
import structlog
from starlette.types import Send

from dragoman.api.streaming import StreamRegistry
from dragoman.api.watched_response import WatchedResponse
from dragoman.errors import DragomanError
from dragoman.sse import HEADERS, JsonEventEncoder
from dragoman.subtitles import SubtitleEvent, SubtitleRun

log = structlog.get_logger(__name__)

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    *((k.lower().encode(), v.encode()) for k, v in HEADERS.items()),
]


async def subtitle_response(
    run: SubtitleRun,
    registry: StreamRegistry,
    *,
    stream: bool,
    keepalive_s: float,
    send_timeout_s: float,
) -> SubtitleResponse:
    await run.admit()
    events = run.events()
    try:
        first = await anext(events)
    except BaseException:
        await events.aclose()
        raise
    return SubtitleResponse(
        run,
        first,
        events,
        registry,
        stream=stream,
        keepalive_s=keepalive_s,
        send_timeout_s=send_timeout_s,
    )


class SubtitleResponse(WatchedResponse):
    def __init__(
        self,
        run: SubtitleRun,
        first: SubtitleEvent,
        events: AsyncGenerator[SubtitleEvent, None],
        registry: StreamRegistry,
        *,
        stream: bool,
        keepalive_s: float,
        send_timeout_s: float,
    ) -> None:
        super().__init__(registry, keepalive_s=keepalive_s, send_timeout_s=send_timeout_s)
        self.run = run
        self.first = first
        self.events = events
        self.stream = stream
        self._abort_error: DragomanError | None = None
        self._encoder = JsonEventEncoder()

    def _stop(self, error: DragomanError) -> None:
        self._abort_error = error
        self.run.abort(error)

    def _pings(self) -> bool:
        return self.stream

    def _log_fields(self) -> dict[str, Any]:
        return {"script_id": self.run.script_id}

    async def _closed(self, produced: bool) -> None:
        if produced:  # else the producer is still unwinding the run itself
            await self.events.aclose()

    async def _produce(self, send: Send) -> None:
        try:
            if self.stream:
                await self._produce_events(send)
            else:
                await self._produce_json(send)
        except asyncio.CancelledError:
            await self.events.aclose()  # now, not at garbage collection: records the cue
            if self._abort_error is None:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            await self._fail(send, self._abort_error)

    async def _produce_events(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        self._started = True
        await self._send_event(send, *self.first)
        try:
            async for name, data in self.events:
                await self._send_event(send, name, data)
        except DragomanError as exc:
            await self._fail(send, exc)
            return
        except Exception:
            log.exception("subtitles_failed", script_id=self.run.script_id)
            await self._fail(send, DragomanError())
            return
        self._ended = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send_event(self, send: Send, name: str, data: dict[str, Any]) -> None:
        self._sent += 1
        body = self._encoder.event(name, data)
        await send({"type": "http.response.body", "body": body, "more_body": True})

    async def _produce_json(self, send: Send) -> None:
        done: dict[str, Any] | None = self.first[1] if self.first[0] == "done" else None
        try:
            async for name, data in self.events:
                if name == "done":
                    done = data
        except DragomanError as exc:
            await self._fail(send, exc)
            return
        except Exception:
            log.exception("subtitles_failed", script_id=self.run.script_id)
            await self._fail(send, DragomanError())
            return
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        self._started = True
        await send({"type": "http.response.body", "body": orjson.dumps(done)})

    async def _fail(self, send: Send, error: DragomanError) -> None:
        if self._started:
            if not self._ended:
                self._ended = True
                body = self._encoder.event("error", error.body())
                await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        headers = [(b"content-type", b"application/json")]
        headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": orjson.dumps(error.body())})
