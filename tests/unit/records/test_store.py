"""The record store on a real SQLite file: batched writes, orphans, keyset cursors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import event

from dragoman.errors import InvalidRequest
from dragoman.records.record import Record
from dragoman.records.store import RecordStore, decode_cursor, encode_cursor


def _record(n: int = 0, **fields: Any) -> Record:
    return Record(
        text=f"text {n}",
        target_lang="ko",
        source_lang="en",
        script_id=fields.pop("script_id", None),
        provider="openai",
        model="m",
        **fields,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RecordStore]:
    store = RecordStore(f"sqlite+aiosqlite:///{tmp_path / 'records.db'}")
    await store.prepare()
    store.start()
    yield store
    await store.aclose()


def _count_commits(store: RecordStore) -> list[int]:
    commits: list[int] = []
    event.listen(store.engine.sync_engine, "commit", lambda _conn: commits.append(1))
    return commits


async def test_writes_queued_together_commit_in_one_transaction(store: RecordStore) -> None:
    commits = _count_commits(store)
    records = [_record(n) for n in range(100)]
    futures = [store.create(r) for r in records]
    for r in records[:50]:
        r.status, r.translation = "succeeded", "done"
        futures.append(store.finish(r))
    await asyncio.gather(*futures)
    assert len(commits) == 1
    first = await store.get(records[0].id)
    assert first is not None and first["status"] == "succeeded" and first["translation"] == "done"
    last = await store.get(records[-1].id)
    assert last is not None and last["status"] == "streaming"


async def test_a_finish_in_a_later_batch_updates_the_row(store: RecordStore) -> None:
    record = _record()
    await store.create(record)
    record.status, record.translation, record.total_ms = "cancelled", "part", 12
    await store.finish(record)
    row = await store.get(record.id)
    assert row is not None
    assert (row["status"], row["translation"], row["total_ms"]) == ("cancelled", "part", 12)


async def test_one_bad_record_does_not_sink_its_batch(store: RecordStore) -> None:
    taken = _record(1)
    await store.create(taken)
    duplicate = _record(2, id=taken.id)  # the same primary key: its insert fails
    good = [_record(n) for n in range(3, 8)]
    results = await asyncio.gather(
        store.create(duplicate), *[store.create(r) for r in good], return_exceptions=True
    )
    assert isinstance(results[0], Exception)
    assert results[1:] == [None] * len(good)
    for r in good:
        assert await store.get(r.id) is not None
    assert store.failing is False  # the last write of the batch succeeded


async def test_finish_orphans_fails_only_streaming_records(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'orphans.db'}"
    first = RecordStore(url)
    await first.prepare()
    first.start()
    open_one, done_one = _record(1), _record(2)
    done_one.status = "succeeded"
    await asyncio.gather(first.create(open_one), first.create(done_one))
    await first.aclose()

    second = RecordStore(url)
    try:
        assert await second.prepare() == 1
        orphan = await second.get(open_one.id)
        assert orphan is not None and orphan["status"] == "failed"
        assert orphan["error"]["code"] == "interrupted"
        finished = await second.get(done_one.id)
        assert finished is not None and finished["status"] == "succeeded"
    finally:
        await second.aclose()


async def test_keyset_pages_skip_and_repeat_nothing(store: RecordStore) -> None:
    # Several records share a timestamp: the id breaks the tie.
    stamps = ["2026-01-01T00:00:00.000Z"] * 4 + ["2026-01-01T00:00:00.001Z"] * 3
    records = [_record(n, created_at=stamp) for n, stamp in enumerate(stamps)]
    records += [_record(9, created_at="2026-01-02T00:00:00.000Z", script_id="s")]
    await asyncio.gather(*[store.create(r) for r in records])
    for limit in (1, 2, 3, 8, 9):
        seen: list[str] = []
        cursor = None
        while True:
            items, cursor = await store.list(script_id=None, limit=limit, cursor=cursor)
            seen += [item["id"] for item in items]
            if cursor is None:
                break
        expected = sorted(records, key=lambda r: (r.created_at, r.id), reverse=True)
        assert seen == [r.id for r in expected]
    items, cursor = await store.list(script_id="s", limit=5, cursor=None)
    assert [i["id"] for i in items] == [records[-1].id] and cursor is None


async def test_a_record_created_after_a_cursor_is_not_on_later_pages(store: RecordStore) -> None:
    old = [_record(n, created_at=f"2026-01-01T00:00:00.00{n}Z") for n in range(4)]
    await asyncio.gather(*[store.create(r) for r in old])
    first, cursor = await store.list(script_id=None, limit=2, cursor=None)
    await store.create(_record(7))  # newer than everything
    rest, end = await store.list(script_id=None, limit=10, cursor=cursor)
    assert [i["id"] for i in first + rest] == [r.id for r in reversed(old)] and end is None


@given(created_at=st.text(max_size=40), record_id=st.text(max_size=40))
def test_cursors_round_trip(created_at: str, record_id: str) -> None:
    cursor = encode_cursor(created_at, record_id)
    assert decode_cursor(cursor) == (created_at, record_id)
    assert cursor.isascii() and "=" not in cursor


@given(st.text(max_size=60))
def test_any_other_cursor_is_invalid_request_or_a_pair(value: str) -> None:
    try:
        created_at, record_id = decode_cursor(value)
    except InvalidRequest as exc:
        assert exc.message.startswith("cursor: ")
        return
    assert isinstance(created_at, str) and isinstance(record_id, str)
