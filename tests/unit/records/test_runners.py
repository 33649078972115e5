"""Records left `streaming` are finished as `interrupted` only when the process writing them is
gone: never a live one's, whichever process starts or sweeps."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dragoman.records import runners
from dragoman.records.record import Record, now_rfc3339
from dragoman.records.store import RecordStore
from tests.helpers import run_sql


def _record(runner: str | None, *, age_s: float = 0.0) -> Record:
    record = Record(
        text="hello",
        target_lang="ko",
        source_lang="en",
        script_id=None,
        provider="openai",
        model="m",
        created_at=now_rfc3339(time.time() - age_s),
    )
    if runner is not None:
        record.runner = runner
    return record


def _runner_row(
    url: str, runner_id: str, host: str, pid: int, started: str, seen_at: float
) -> None:
    run_sql(
        url,
        "INSERT INTO runners (id, host, pid, started, seen_at) "
        f"VALUES ('{runner_id}', '{host}', {pid}, '{started}', {seen_at})",
    )


@pytest.fixture
async def url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'runners.db'}"
    store = RecordStore(url)
    await store.migrate()
    await store.engine.dispose()
    return url


@pytest.fixture
async def store(url: str) -> AsyncIterator[RecordStore]:
    store = RecordStore(url)
    store.start()
    yield store
    await store.aclose()


async def _status(store: RecordStore, record: Record) -> str:
    row = await store.get(record.id)
    assert row is not None
    status: str = row["status"]
    return status


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


async def test_another_process_starting_leaves_this_one_s_records_streaming(
    store: RecordStore, url: str
) -> None:
    mine = _record(None)  # stamped with this process's runner
    await store.create(mine)
    finish = (
        "import asyncio, sys\n"
        "from dragoman.records.store import RecordStore\n"
        "store = RecordStore(sys.argv[1])\n"
        "print(asyncio.run(store.finish_orphans()))\n"
    )
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", finish, url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.strip() == "0", result.stderr
    assert await _status(store, mine) == "streaming"


async def test_runners_that_are_gone_lose_their_records_and_live_ones_keep_them(
    store: RecordStore, url: str
) -> None:
    here, now = socket.gethostname(), time.time()
    started_self = runners.current().started
    _runner_row(url, "crashed-here", here, _dead_pid(), "", now)
    _runner_row(url, "reused-pid", here, os.getpid(), started_self + "0", now)
    _runner_row(url, "alive-elsewhere", "elsewhere", 1, "1", now)
    _runner_row(url, "silent-elsewhere", "elsewhere", 1, "1", now - runners.STALE_S - 1)
    cases = {
        "crashed-here": _record("crashed-here"),
        "reused-pid": _record("reused-pid"),  # its pid runs another program now
        "alive-elsewhere": _record("alive-elsewhere"),
        "silent-elsewhere": _record("silent-elsewhere"),
        "starting": _record("starting"),  # no row yet: it may be a runner's first record
        "long-gone": _record("long-gone", age_s=runners.STALE_S + 1),
        "before-runners": _record(None),
    }
    cases["before-runners"].runner = None  # type: ignore[assignment]
    await asyncio.gather(*[store.create(record) for record in cases.values()])
    other = RecordStore(url)
    try:
        assert await other.finish_orphans() == 5
        statuses = {name: await _status(other, record) for name, record in cases.items()}
    finally:
        await other.engine.dispose()
    assert statuses == {
        "crashed-here": "failed",
        "reused-pid": "failed",
        "alive-elsewhere": "streaming",
        "silent-elsewhere": "failed",
        "starting": "streaming",
        "long-gone": "failed",
        "before-runners": "failed",
    }
    # A gone runner's row stays (for a day): its records are known orphans, however young.
    late = _record("crashed-here")
    await store.create(late)
    other = RecordStore(url)
    try:
        assert await other.finish_orphans() == 1
        assert await _status(other, late) == "failed"
    finally:
        await other.engine.dispose()


async def test_a_running_store_sweeps_the_records_of_gone_runners(url: str) -> None:
    _runner_row(url, "crashed", socket.gethostname(), _dead_pid(), "", time.time())
    store = RecordStore(url, beat_s=0.1)
    store.start()
    try:
        orphan = _record("crashed")
        await store.create(orphan)
        for _ in range(200):
            if await _status(store, orphan) == "failed":
                break
            await asyncio.sleep(0.05)
        row = await store.get(orphan.id)
        assert row is not None and row["status"] == "failed"
        assert row["error"]["code"] == "interrupted"
    finally:
        await store.aclose()


async def test_the_last_store_of_a_process_closing_deletes_its_runner_row(url: str) -> None:
    first, second = RecordStore(url), RecordStore(url)
    first.start()
    second.start()
    await first.create(_record(None))
    await first.aclose()
    assert run_sql(url, "SELECT count(*) FROM runners")[0] == [(1,)]  # second is still open
    await second.aclose()
    assert run_sql(url, "SELECT count(*) FROM runners")[0] == [(0,)]
