"""Event logs on their own: in memory, and in Redis Streams when DRAGOMAN_TEST_REDIS_URL is set."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as redis

from dragoman.redis_clients import POOL_SIZE, RedisClients, redis_client
from dragoman.resumable.log import EventLogs, is_resumable_id, resumable_id
from dragoman.resumable.memory_log import MemoryEventLogs
from dragoman.resumable.redis_log import RedisEventLogs

REDIS_URL = os.environ.get("DRAGOMAN_TEST_REDIS_URL")


@pytest.fixture(params=["memory", "redis"])
async def logs(request: pytest.FixtureRequest) -> AsyncIterator[EventLogs]:
    if request.param == "memory":
        yield MemoryEventLogs(window_s=0.2)
        return
    if not REDIS_URL:
        pytest.skip("DRAGOMAN_TEST_REDIS_URL is not set")
    client = redis.Redis.from_url(REDIS_URL)
    yield RedisEventLogs(client, client, window_s=0.2, grace_s=0.2)
    await client.aclose()


def _event(n: int) -> bytes:
    return b"id: %d\nevent: delta\ndata: {}\n\n" % n


async def _collect(
    logs: EventLogs,
    translation_id: str,
    after: int,
    idle_s: float = 0.05,
    heard: list[str] | None = None,
) -> list[bytes]:
    """Follow a log to its end; `heard` gets the id once the backlog has arrived."""
    log = await logs.open(translation_id)
    assert log is not None
    out: list[bytes] = []
    async for batch in log.follow(after, idle_s=idle_s):
        out += batch
        if heard is not None and batch:
            heard.append(translation_id)
            heard = None
    return out


async def _until(condition: Callable[[], Awaitable[bool]], seconds: float = 30) -> None:
    """Wait for `condition`; the time limit only bounds a failing test."""
    async with asyncio.timeout(seconds):
        while not await condition():  # noqa: ASYNC110 (the condition is in Redis: polled)
            await asyncio.sleep(0.02)


async def _blocked_clients(client: redis.Redis) -> int:
    """Connections of this Redis that wait in a blocking command (`XREAD BLOCK`)."""
    return sum("b" in entry["flags"] for entry in await client.client_list())


def test_resumable_ids_are_marked_and_fit_the_id_column() -> None:
    ids = {resumable_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(is_resumable_id(i) and len(i) == 32 for i in ids)
    assert not is_resumable_id(uuid.uuid4().hex)


async def test_follow_replays_after_an_id_then_follows_to_the_end(logs: EventLogs) -> None:
    translation_id = resumable_id()
    log = logs.create(translation_id)
    await log.append([_event(0), _event(1), _event(2)])
    follower = asyncio.create_task(_collect(logs, translation_id, after=0))
    await log.append([_event(3)])
    await log.append([_event(4)], end=True)
    await logs.finished(translation_id)
    assert await follower == [_event(n) for n in range(1, 5)]
    assert await _collect(logs, translation_id, after=-1) == [_event(n) for n in range(5)]
    assert await _collect(logs, translation_id, after=4) == []


async def test_idle_followers_get_empty_batches_for_keep_alives(logs: EventLogs) -> None:
    translation_id = resumable_id()
    log = logs.create(translation_id)
    await log.append([_event(0)])
    opened = await logs.open(translation_id)
    assert opened is not None
    batches = opened.follow(0, idle_s=0.05)
    assert await anext(batches) == []
    await log.append([_event(1)], end=True)
    assert await anext(batches) == [_event(1)]
    with pytest.raises(StopAsyncIteration):
        await anext(batches)


async def test_a_finished_log_is_dropped_after_the_window(logs: EventLogs) -> None:
    translation_id = resumable_id()
    log = logs.create(translation_id)
    await log.append([_event(0)], end=True)
    await logs.finished(translation_id)
    assert await logs.open(translation_id) is not None
    for _ in range(200):
        if await logs.open(translation_id) is None:
            break
        await asyncio.sleep(0.02)
    assert await logs.open(translation_id) is None


async def test_discard_drops_at_once(logs: EventLogs) -> None:
    translation_id = resumable_id()
    log = logs.create(translation_id)
    await log.append([_event(0)])
    await logs.discard(translation_id)
    assert await logs.open(translation_id) is None


@pytest.mark.skipif(not REDIS_URL, reason="DRAGOMAN_TEST_REDIS_URL is not set")
async def test_a_redis_log_whose_process_stopped_ends_interrupted() -> None:
    assert REDIS_URL is not None
    client = redis.Redis.from_url(REDIS_URL)
    try:
        logs = RedisEventLogs(client, client, window_s=60, grace_s=1)
        translation_id = resumable_id()
        log = logs.create(translation_id)
        await log.append([_event(0), _event(1)])
        # What a dead process leaves: no final event, and no heartbeat any more.
        await client.delete(f"dragoman:events:{translation_id}:alive")
        events = await _collect(logs, translation_id, after=0)
        assert events[0] == _event(1)
        assert events[1].startswith(b"id: 2\nevent: error\n") and b'"interrupted"' in events[1]
        assert len(events) == 2
        await logs.discard(translation_id)
    finally:
        await client.aclose()


@pytest.mark.skipif(not REDIS_URL, reason="DRAGOMAN_TEST_REDIS_URL is not set")
async def test_redis_listener_marks_expire_with_the_grace_time() -> None:
    assert REDIS_URL is not None
    client = redis.Redis.from_url(REDIS_URL)
    try:
        logs = RedisEventLogs(client, client, window_s=60, grace_s=0.2)
        translation_id = resumable_id()
        assert not await logs.was_listened(translation_id)
        await logs.mark_listened(translation_id)
        assert await logs.was_listened(translation_id)
        for _ in range(100):
            if not await logs.was_listened(translation_id):
                break
            await asyncio.sleep(0.02)
        assert not await logs.was_listened(translation_id)
    finally:
        await client.aclose()


async def test_a_thousand_translations_and_remote_listeners_share_the_redis_connections() -> None:
    """More appends at once than a default connection pool allows (redis-py's caps at 100),
    and more listeners in another process (in `XREAD BLOCK`) than the pool of short commands
    holds: every event lands, every listener gets them all."""
    if not REDIS_URL:
        pytest.skip("DRAGOMAN_TEST_REDIS_URL is not set")
    from dragoman.config import Settings
    from dragoman.registry import StreamRegistry
    from dragoman.resumable.service import Resumption

    settings = Settings(_env_file=None, redis_url=REDIS_URL)  # type: ignore[call-arg]
    clients = [RedisClients.connect(REDIS_URL) for _ in range(2)]
    resumption = Resumption(settings, StreamRegistry(), clients[0])
    elsewhere = Resumption(settings, StreamRegistry(), clients[1])  # as another replica
    logs = resumption.logs
    ids = [resumable_id() for _ in range(1000)]
    runs = [logs.create(translation_id) for translation_id in ids]
    try:
        await asyncio.gather(*(run.append([_event(0)]) for run in runs))
        watcher = redis.Redis.from_url(REDIS_URL)
        before = await _blocked_clients(watcher)
        listeners = [
            asyncio.create_task(_collect(elsewhere.logs, i, after=-1, idle_s=5))
            for i in ids[: POOL_SIZE + 100]
        ]

        async def all_blocked() -> bool:  # the listeners wait in XREAD, holding connections
            return await _blocked_clients(watcher) >= before + POOL_SIZE + 100

        await _until(all_blocked)
        await watcher.aclose()
        await asyncio.gather(*(run.append([_event(1)], end=True) for run in runs))
        for heard in await asyncio.gather(*listeners):
            assert heard == [_event(0), _event(1)]
    finally:
        for translation_id in ids:
            await logs.discard(translation_id)
        await resumption.aclose()
        await elsewhere.aclose()
        for redis_clients in clients:
            await redis_clients.aclose()


@pytest.mark.skipif(not REDIS_URL, reason="DRAGOMAN_TEST_REDIS_URL is not set")
async def test_more_local_followers_than_the_redis_pool_holds_all_follow_to_the_end() -> None:
    """Followers of logs that this process writes wait for news without holding a connection
    each: more of them than the pool holds follow to the end, and meanwhile other commands
    still get a connection."""
    assert REDIS_URL is not None
    client = redis_client(REDIS_URL)  # as the service builds it
    try:
        logs = RedisEventLogs(client, client, window_s=60, grace_s=1)
        ids = [resumable_id() for _ in range(POOL_SIZE + 100)]
        written = [logs.create(translation_id) for translation_id in ids]
        for log in written:
            await log.append([_event(0)])
        # Waiting up to 5 s for news: in `XREAD BLOCK`, each would hold a connection as long.
        heard: list[str] = []
        followers = [
            asyncio.create_task(_collect(logs, i, after=-1, idle_s=5, heard=heard)) for i in ids
        ]

        async def all_heard() -> bool:  # then each one waits for news
            return len(heard) == len(ids)

        await _until(all_heard)
        assert await asyncio.wait_for(client.ping(), 1)
        for log in written:
            await log.append([_event(1)], end=True)
        results = await asyncio.wait_for(asyncio.gather(*followers), 20)
        assert all(events == [_event(0), _event(1)] for events in results)
        for translation_id in ids:
            await logs.discard(translation_id)
    finally:
        await client.aclose()
