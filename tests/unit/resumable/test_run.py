"""A resumable run on its own: what its log holds when it is stopped in the middle of a write."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

from dragoman.errors import Stopped
from dragoman.resumable.log import EventLogs
from dragoman.resumable.run import ResumableRun
from dragoman.service import TranslationRequest
from tests.unit.fakes import FedProvider, open_store, translator


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


async def test_a_stop_during_a_write_leaves_no_gap_in_the_event_ids(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    provider = FedProvider()
    job = await translator(store, provider).submit(TranslationRequest("a b", "fr"))
    upstream = provider.streams[0]
    log = _SlowLog()
    run = ResumableRun(job, log, cast(EventLogs, _Logs()), grace_s=60)
    run.start()
    upstream.put(["a "])
    assert await run.first is None
    upstream.put(["b "])
    await asyncio.wait_for(log.writing.wait(), 5)  # the event of "b " is being written
    run.abort(Stopped())
    await asyncio.wait_for(run.ended(), 5)
    ids = [int(m.group(1)) for e in log.entries if (m := re.match(rb"id: (\d+)\n", e))]
    names = [re.search(rb"event: (\w+)", e).group(1) for e in log.entries]  # type: ignore[union-attr]
    assert ids == list(range(len(log.entries)))
    assert names == [b"start", b"delta", b"delta", b"error"]
    assert b'"cancelled"' in log.entries[-1]
    await store.aclose()
