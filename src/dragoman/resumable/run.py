"""A resumable translation runs in a task of its own and writes its events to a log.

Its clients are listeners of that log: the response to the `POST` that started it, and any
`GET /v1/translations/{id}/events`. A listener that leaves does not stop it; once no listener
has been there for `resume_grace_s` (in this process, nor, with Redis, in any other), it is
stopped like a cancel request would (`cancelled`, record `cancelled`).
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from dragoman.errors import DragomanError, Stopped
from dragoman.providers.base import Queued
from dragoman.resumable.log import EventLog, EventLogs
from dragoman.service import Failed, Finished, Job
from dragoman.sse import JsonEventEncoder

log = structlog.get_logger(__name__)


class ResumableRun:
    def __init__(self, job: Job, events_log: EventLog, logs: EventLogs, *, grace_s: float) -> None:
        self.job = job
        self.id = job.record.id
        self.log = events_log
        self._logs = logs
        self._grace_s = grace_s
        # None once the first event is in the log; the error when the job failed before it.
        self.first: asyncio.Future[DragomanError | None] = (
            asyncio.get_running_loop().create_future()
        )
        self.listeners = 0
        self._grace: asyncio.TimerHandle | None = None
        self._checking: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        # True while events that have their ids are written to the log: a cancel then would
        # leave them out, and the next event's id after a gap (a log in Redis, whose writes
        # take a round trip). An abort waits for the write to end: the run checks after each.
        self._writing = False

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self._run(), name=f"dragoman-resumable-{self.id}")
        self._arm_grace()  # until its first listener joins
        return self._task

    def abort(self, error: DragomanError) -> None:
        if self._task is not None and not self._task.done():
            self.job.abort(error)
            if not self._writing:
                self._task.cancel()

    async def ended(self) -> None:
        if self._task is not None:
            await asyncio.wait({self._task})

    # Listeners.

    def listener_joined(self) -> None:
        self.listeners += 1
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None

    def listener_left(self) -> None:
        self.listeners -= 1
        if self.listeners == 0 and self._task is not None and not self._task.done():
            self._arm_grace()

    def _arm_grace(self) -> None:
        loop = asyncio.get_running_loop()
        self._grace = loop.call_later(self._grace_s, self._grace_over)

    def _grace_over(self) -> None:
        self._grace = None
        if self.listeners > 0:
            return
        if self._logs.shared:
            # A listener in another process may follow it: ask before stopping. (The task is
            # kept: the event loop holds only a weak reference to it.)
            self._checking = asyncio.create_task(self._check_remote_listeners())
            self._checking.add_done_callback(_log_failure)
        else:
            self._stop_unheard()

    async def _check_remote_listeners(self) -> None:
        if self.listeners > 0:
            return
        if await self._logs.was_listened(self.id):
            self._arm_grace()
        elif self.listeners == 0:
            self._stop_unheard()

    def _stop_unheard(self) -> None:
        log.info("resumable_unheard", id=self.id, grace_s=self._grace_s)
        self.abort(Stopped(f"No client listened for {self._grace_s:g} s."))

    # The job.

    async def _run(self) -> None:
        encoder = JsonEventEncoder()
        events = self.job.events()
        started = False
        try:
            async for event in events:
                if isinstance(event, Failed):
                    if started:
                        await self._append([encoder.event("error", event.error.body())], True)
                    else:
                        await self._failed_before_start(event.error)
                    return
                if isinstance(event, Queued) and event.position <= 0:
                    continue
                out: list[bytes] = []
                if not started:
                    record = self.job.record
                    start = {"id": record.id, "provider": record.provider, "model": record.model}
                    out.append(encoder.event("start", start))
                if type(event) is list:
                    out += [encoder.delta(piece) for piece in event]
                elif isinstance(event, Queued):
                    out.append(encoder.event("queued", {"position": event.position}))
                elif isinstance(event, Finished):
                    out.append(encoder.event("done", event.record.public()))
                    await self._append(out, True)
                    return
                await self._append(out, False)
                if self.job.abort_error is not None:
                    # Stopped while the log was written: a cancel that the log's client took
                    # for itself must still stop the run.
                    raise asyncio.CancelledError()
                if not started:
                    started = True
                    self.first.set_result(None)
        except asyncio.CancelledError:
            error = await self.job.unwind(events)
            if error is None:
                raise
            if started:
                await self._append([encoder.event("error", error.body())], True)
            else:
                await self._failed_before_start(error)
        except Exception:  # the log could not be written
            log.exception("resumable_run_failed", id=self.id)
            error = DragomanError()
            self.job.abort(error)
            await events.aclose()
            with contextlib.suppress(Exception):
                if started:
                    await self._append([encoder.event("error", error.body())], True)
                else:
                    await self._failed_before_start(error)
        finally:
            if self._grace is not None:
                self._grace.cancel()
            if not self.first.done():
                self.first.set_result(DragomanError())

    async def _append(self, events: list[bytes], end: bool) -> None:
        self._writing = True
        try:
            await self.log.append(events, end=end)
            if end:
                await self._logs.finished(self.id)
        finally:
            self._writing = False

    async def _failed_before_start(self, error: DragomanError) -> None:
        if not self.first.done():
            self.first.set_result(error)
        # Its `POST` answers the error as a status; a listener that came early just ends.
        await self.log.append([], end=True)
        await self._logs.discard(self.id)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("resumable_listener_check_failed", error=type(task.exception()).__name__)
