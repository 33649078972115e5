"""The SSE answer of a listener of a resumable translation: replay from the log, then follow.

The response to the `POST` that started the translation is a listener too: it waits for the
first event (so that failures before it are real HTTP errors, as on any stream) and then
replays the log from the start. A listener that disconnects only stops listening.
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson
import structlog
from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from dragoman.api.streaming import SSE_HEADERS
from dragoman.errors import DatabaseUnavailable, DragomanError
from dragoman.resumable.log import EventLog, EventLogs
from dragoman.resumable.run import ResumableRun
from dragoman.sse import PING

log = structlog.get_logger(__name__)


class ClientTooSlow(Exception):
    pass


class LogResponse(Response):
    background: BackgroundTask | None

    def __init__(
        self,
        translation_id: str,
        events_log: EventLog,
        logs: EventLogs,
        *,
        after: int,
        run: ResumableRun | None,
        wait_first: bool,
        keepalive_s: float,
        grace_s: float,
        send_timeout_s: float,
    ) -> None:
        self.background = None
        self.translation_id = translation_id
        self.events_log = events_log
        self.logs = logs
        self.after = after
        self.run = run
        self.wait_first = wait_first
        self.keepalive_s = keepalive_s
        self.grace_s = grace_s
        self.send_timeout_s = send_timeout_s
        # Set when the answer ends. Its loops check it as well as being cancelled: redis-py
        # (8.1) can swallow a cancellation that arrives during a command.
        self._stopped = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.run is not None:
            self.run.listener_joined()
        try:
            listener = asyncio.create_task(self._listen(self._timed(send)))
            watcher = asyncio.create_task(_until_disconnect(receive))
            waiters: set[asyncio.Future[None]] = {listener, watcher}
            if self.run is None and self.logs.shared:
                waiters.add(asyncio.create_task(self._mark_listened()))
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                self._stopped = True
                for task in waiters:
                    task.cancel()
                await asyncio.gather(*waiters, return_exceptions=True)
            if listener.done() and not listener.cancelled():
                with contextlib.suppress(ClientTooSlow):
                    listener.result()
        finally:
            if self.run is not None:
                self.run.listener_left()

    def _timed(self, send: Send) -> Send:
        """A client that takes nothing for `send_timeout_s` stops listening (the translation
        runs on; the events stay in the log for it to resume)."""

        async def timed_send(message: Message) -> None:
            try:
                async with asyncio.timeout(self.send_timeout_s):
                    await send(message)
            except TimeoutError:
                log.warning("client_too_slow", id=self.translation_id)
                raise ClientTooSlow() from None

        return timed_send

    async def _listen(self, send: Send) -> None:
        if self.wait_first and self.run is not None:
            error = await asyncio.shield(self.run.first)
            if error is not None:
                await _send_error(send, error, self.translation_id)
                return
        headers = [*SSE_HEADERS, (b"x-translation-id", self.translation_id.encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        async for batch in self.events_log.follow(self.after, self.keepalive_s):
            if self._stopped:
                return
            body = b"".join(batch) if batch else PING
            await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _mark_listened(self) -> None:
        # For the process that runs the translation: someone follows it from here.
        every = max(self.grace_s / 3, 0.05)
        while not self._stopped:
            with contextlib.suppress(Exception):
                await self.logs.mark_listened(self.translation_id)
            await asyncio.sleep(every)


async def _until_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _send_error(send: Send, error: DragomanError, translation_id: str) -> None:
    headers = [(b"content-type", b"application/json")]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    if not isinstance(error, DatabaseUnavailable):  # no record was stored to point at
        headers.append((b"x-translation-id", translation_id.encode()))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": orjson.dumps(error.body())})
