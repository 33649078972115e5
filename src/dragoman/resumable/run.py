"""A resumable translation runs in a task of its own and writes its events to a log.

Its clients are listeners of that log: the response to the `POST` that started it, and any
`GET /v1/translations/{id}/events`. A listener that leaves does not stop it; once no listener
has been there for `resume_grace_s` (in this process, nor, with Redis, in any other), it is
stopped like a cancel request would (`cancelled`, record `cancelled`).
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import aclosing

import structlog

from dragoman.errors import DragomanError, Stopped
from dragoman.events import Failed
from dragoman.resumable.log import EventLog, EventLogs
from dragoman.service import Job
from dragoman.wire import V1Wire, is_final

log = structlog.get_logger(__name__)


class ResumableRun:
    def __init__(self, job: Job, events_log: EventLog, logs: EventLogs, *, grace_s: float) -> None:
        self.job = job
        self.record = job.record
        self.id = job.record.id
        self.log = events_log
        self._logs = logs
        self._grace_s = grace_s
        # None once the first event is in the log; the failure when the job failed before it.
        self.first: asyncio.Future[Failed | None] = asyncio.get_running_loop().create_future()
        self.listeners = 0
        self._grace: asyncio.TimerHandle | None = None
        self._checking: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self._run(), name=f"dragoman-resumable-{self.id}")
        self._arm_grace()  # until its first listener joins
        return self._task

    def abort(self, error: DragomanError) -> None:
        # The job ends itself with `error` as its final event, which goes into the log like
        # any other: a write in progress is never cut (its events keep their ids).
        self.job.abort(error)

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
        wire = V1Wire()
        started = False
        try:
            async with aclosing(self.job.events()) as events:
                async for event in events:
                    if type(event) is Failed and not started:
                        await self._failed_before_start(event)
                        return
                    frames = wire.frames(event)
                    final = is_final(event)
                    if not frames and not final:
                        continue
                    await self._append(frames, final)
                    if not started:
                        started = True
                        self.first.set_result(None)
                    if final:
                        return
        except Exception:  # the log could not be written
            log.exception("resumable_run_failed", id=self.id)
            error = DragomanError()
            with contextlib.suppress(Exception):
                if started:
                    await self._append([wire.failure(error)], True)
                else:
                    await self._failed_before_start(Failed(error))
        finally:
            if self._grace is not None:
                self._grace.cancel()
            if not self.first.done():
                self.first.set_result(Failed(DragomanError()))

    async def _append(self, events: list[bytes], end: bool) -> None:
        await self.log.append(events, end=end)
        if end:
            await self._logs.finished(self.id)

    async def _failed_before_start(self, failed: Failed) -> None:
        if not self.first.done():
            self.first.set_result(failed)
        # Its `POST` answers the error as a status; a listener that came early just ends.
        await self.log.append([], end=True)
        await self._logs.discard(self.id)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("resumable_listener_check_failed", error=type(task.exception()).__name__)
