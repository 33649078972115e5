"""A listener of a resumable translation: replay from its log, then follow.

The response to the `POST` that started the translation is a listener too: it waits for the
run's first event (so that a failure before it is a real HTTP error, as on any stream) and then
replays the log from the start. A listener that leaves only stops listening: the translation
runs on (for `resume_grace_s` without any listener), and a shutdown ends it through its run,
whose final event reaches every listener through the log.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

from dragoman.errors import DragomanError
from dragoman.events import Event, Frames
from dragoman.resumable.log import EventLog, EventLogs
from dragoman.resumable.run import ResumableRun


class LogListener:
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
    ) -> None:
        self.translation_id = translation_id
        self.events_log = events_log
        self.logs = logs
        self.after = after
        self.run = run
        self.wait_first = wait_first
        self.keepalive_s = keepalive_s
        self.grace_s = grace_s
        # Set when the answer ends. The loops check it as well as being cancelled: redis-py
        # (8.1) can swallow a cancellation that arrives during a command.
        self._stopped = False

    async def events(self) -> AsyncGenerator[Event, None]:
        run = self.run
        if run is not None:
            run.listener_joined()
        marking: asyncio.Task[None] | None = None
        try:
            if self.wait_first and run is not None:
                failed = await asyncio.shield(run.first)
                if failed is not None:
                    yield failed
                    return
            if run is None and self.logs.shared:
                marking = asyncio.create_task(self._mark_listened())
            async for batch in self.events_log.follow(self.after, self.keepalive_s):
                if self._stopped:
                    return
                if batch:  # an empty batch: time for a keep-alive, which the response sends
                    yield Frames(batch)
        finally:
            self._stopped = True
            if marking is not None:
                marking.cancel()
                await asyncio.gather(marking, return_exceptions=True)
            if run is not None:
                run.listener_left()

    def abort(self, error: DragomanError) -> None:
        return None  # it ends with its log: the run writes the error there

    def release(self) -> None:
        self._stopped = True

    async def _mark_listened(self) -> None:
        # For the process that runs the translation: someone follows it from here.
        every = max(self.grace_s / 3, 0.05)
        while not self._stopped:
            with contextlib.suppress(Exception):
                await self.logs.mark_listened(self.translation_id)
            await asyncio.sleep(every)
