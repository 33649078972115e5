"""Outages of what dragoman leans on, during traffic: PostgreSQL stopped under a hundred streams
and started again, Redis restarted empty under a live session (Redis stopped and started under
keys with limits: test_limits.py).

Each test starts servers of its own (a PostgreSQL it stops, a Redis it stops): CI's second pass,
the suite on PostgreSQL, leaves them out."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from httpx_sse import aconnect_sse

from tests.conftest import PostgresProcess, RedisProcess, ServerThread
from tests.helpers import run_sql, wait_until

pytestmark = pytest.mark.once

PIECES = 30


@pytest.fixture
def postgres() -> Iterator[PostgresProcess]:
    server = PostgresProcess()
    yield server
    server.remove()


@dataclass
class Outcome:
    status: int
    record_id: str | None = None
    events: list[str] = field(default_factory=list)
    done: dict[str, object] | None = None
    error: dict[str, object] | None = None


async def _translate(client: httpx.AsyncClient, n: int, delay: float) -> Outcome:
    body = {
        "text": f"x [[slow:outage-{n}-{time.monotonic_ns()}:{PIECES}:{delay}]]",
        "target_lang": "ko",
    }
    async with aconnect_sse(client, "POST", "/v1/translations", json=body) as source:
        response = source.response
        outcome = Outcome(response.status_code, response.headers.get("x-translation-id"))
        if response.status_code != 200:
            outcome.error = json.loads(await response.aread())["error"]
            return outcome
        async for event in source.aiter_sse():
            outcome.events.append(event.event)
            if event.event == "done":
                outcome.done = json.loads(event.data)
            elif event.event == "error":
                outcome.error = json.loads(event.data)["error"]
    return outcome


EXPECTED = "".join(f"p{i} " for i in range(PIECES))


async def test_postgresql_stopped_for_seconds_under_a_hundred_streams(
    make_server: Callable[..., ServerThread], postgres: PostgresProcess
) -> None:
    """Every request gets its whole translation and its record, or a 503 before any byte; no
    record is left `streaming`."""
    server = make_server(database_url=postgres.url)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as client:
        # Fifty streams of three seconds; the database stops one second in, for three seconds,
        # while fifty more requests arrive.
        running = [asyncio.create_task(_translate(client, n, 0.1)) for n in range(50)]
        await asyncio.sleep(1.0)
        await asyncio.to_thread(postgres.stop)
        for n in range(50, 100):
            running.append(asyncio.create_task(_translate(client, n, 0.1)))
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(postgres.start)
        outcomes = await asyncio.gather(*running)

        whole = refused = 0
        for outcome in outcomes:
            if outcome.status == 503:
                assert outcome.error is not None
                assert outcome.error["code"] == "database_unavailable"
                assert outcome.record_id is None and outcome.events == []
                refused += 1
                continue
            assert outcome.status == 200, outcome
            assert outcome.events == ["start", *["delta"] * PIECES, "done"], outcome
            assert outcome.done is not None and outcome.done["translation"] == EXPECTED
            record = (await client.get(f"/v1/translations/{outcome.record_id}")).json()
            assert record["status"] == "succeeded" and record["translation"] == EXPECTED
            whole += 1
    assert whole + refused == 100
    assert whole > 0
    rows = run_sql(postgres.url, "SELECT status, count(*) FROM translations GROUP BY status")[0]
    assert dict(rows) == {"succeeded": whole}


async def test_postgresql_down_longer_than_the_wait_no_record_stays_streaming(
    make_server: Callable[..., ServerThread], postgres: PostgresProcess
) -> None:
    """An outage longer than DRAGOMAN_DATABASE_WAIT_S: streams under way end in-band with
    `database_unavailable` (never `done` for a translation that is not stored), new requests
    are 503 before any byte, and once the database is back no record is left `streaming`."""
    server = make_server(database_url=postgres.url, database_wait_s=0.5)
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
        running = [asyncio.create_task(_translate(client, n, 0.1)) for n in range(10)]
        await asyncio.sleep(1.0)
        await asyncio.to_thread(postgres.stop)
        under_way = await asyncio.gather(*running)
        refused = await _translate(client, 99, 0.0)
        await asyncio.to_thread(postgres.start)
        for outcome in under_way:
            assert outcome.status == 200
            assert outcome.events[-1] == "error" and outcome.done is None
            assert outcome.error is not None and outcome.error["code"] == "database_unavailable"
        assert refused.status == 503 and refused.record_id is None
        # The next request, once the database answers, is stored as usual, and with it the
        # records given up during the outage are finished as their clients were told.
        after = await _translate(client, 100, 0.0)
        assert after.status == 200 and after.done is not None
    rows = run_sql(
        postgres.url, "SELECT status, error_code, count(*) FROM translations GROUP BY 1, 2"
    )[0]
    assert sorted(rows) == [("failed", "database_unavailable", 10), ("succeeded", None, 1)]


async def test_a_postgresql_restart_between_requests_is_not_seen(
    make_server: Callable[..., ServerThread], postgres: PostgresProcess
) -> None:
    """The connections open before a restart are dead after it: the next write finds out and
    goes again on a fresh one."""
    server = make_server(database_url=postgres.url)
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
        first = await _translate(client, 0, 0.0)
        assert first.done is not None
        await asyncio.to_thread(postgres.stop)
        await asyncio.to_thread(postgres.start)
        # A read first, then writes.
        answer = await client.get(f"/v1/translations/{first.record_id}")
        assert answer.status_code == 200 and answer.json()["status"] == "succeeded"
        for n in range(1, 4):
            outcome = await _translate(client, n, 0.0)
            assert outcome.status == 200 and outcome.done is not None, outcome
            record = (await client.get(f"/v1/translations/{outcome.record_id}")).json()
            assert record["status"] == "succeeded"


def test_redis_restarted_empty_under_a_live_session(
    make_server: Callable[..., ServerThread],
) -> None:
    """The speaker on one replica, a listener on another; Redis stops, a segment is said while
    it is down, and it comes back without its data: the listener gets every segment, in order,
    and the session goes on."""
    from tests.test_live import Listener

    redis = RedisProcess()
    try:
        speaker, audience = (make_server(redis_url=redis.url) for _ in range(2))
        with httpx.Client(base_url=speaker.url, timeout=30) as client:
            answer = client.post("/v1/live", json={"target_langs": ["ko"]})
            assert answer.status_code == 201, answer.text
            session = answer.json()
            segments = f"/v1/live/{session['session_id']}/segments"
            listener = Listener(audience.url, session["join_code"], "ko").start()
            assert client.post(segments, json={"text": "before the outage"}).status_code == 202
            listener.wait_done(1)

            redis.stop()
            assert client.post(segments, json={"text": "during the outage"}).status_code == 202

            # Taken while Redis is down (the session's listeners counted in this process);
            # its events wait for Redis, and nothing reaches the listener meanwhile.
            assert len(listener.done()) == 1
            redis = RedisProcess(redis.port)  # back, and empty
            assert client.post(segments, json={"text": "after the outage"}).status_code == 202
            listener.wait_done(3)
            assert listener.done() == {
                0: "T:before the outage",
                1: "T:during the outage",
                2: "T:after the outage",
            }
            ids = listener.ids()
            assert ids == sorted(set(ids)), ids  # no id twice, none going back
            client.post(f"/v1/live/{session['session_id']}/close")
            assert wait_until(lambda: listener.ended.is_set(), 30)
    finally:
        redis.stop()
