"""A resumable run on its own: what its log holds when it is stopped in the middle of a write."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

from dragoman.errors import DragomanError, Stopped
from dragoman.resumable.log import EventLogs
from dragoman.resumable.run import ResumableRun
from dragoman.service import Job


class _Job:
    """Just what a run uses of a job: pieces come when the test puts them."""

    def __init__(self) -> None:
        self.record = SimpleNamespace(id="rtest", provider="openai", model="fake-model")
        self.abort_error: DragomanError | None = None
        self.final: asyncio.Future[None] | None = None
        self.pieces: asyncio.Queue[str] = asyncio.Queue()

    def abort(self, error: DragomanError) -> None:
        self.abort_error = error

    unwind = Job.unwind  # the real unwinding: it needs only `abort_error` and `final`

    async def events(self) -> AsyncIterator[Any]:
        while True:
            yield [await self.pieces.get()]


class _SlowLog:
    """A log whose writes take a round trip, as Redis's do."""

    def __init__(self) -> None:
        self.entries: list[bytes] = []
        self.writing = asyncio.Event()

    async def append(self, events: list[bytes], *, end: bool = False) -> None:
        self.writing.set()
        await asyncio.sleep(0.05)
        self.entries += events
        self.writing.clear()

    def follow(self, after: int, idle_s: float) -> AsyncIterator[list[bytes]]:
        raise NotImplementedError


class _Logs:
    shared = False

    async def finished(self, translation_id: str) -> None:
        return None

    async def discard(self, translation_id: str) -> None:
        return None


async def test_a_stop_during_a_write_leaves_no_gap_in_the_event_ids() -> None:
    job, log = _Job(), _SlowLog()
    run = ResumableRun(cast(Job, job), log, cast(EventLogs, _Logs()), grace_s=60)
    run.start()
    job.pieces.put_nowait("a ")
    assert await run.first is None
    job.pieces.put_nowait("b ")
    await asyncio.wait_for(log.writing.wait(), 5)  # the event of "b " is being written
    run.abort(Stopped())
    await asyncio.wait_for(run.ended(), 5)
    ids = [int(m.group(1)) for e in log.entries if (m := re.match(rb"id: (\d+)\n", e))]
    names = [re.search(rb"event: (\w+)", e).group(1) for e in log.entries]  # type: ignore[union-attr]
    assert ids == list(range(len(log.entries)))
    assert names == [b"start", b"delta", b"delta", b"error"]
    assert b'"cancelled"' in log.entries[-1]
