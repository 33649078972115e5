"""Per-key limits: requests and characters per minute, concurrent translations; in memory and
in Redis; and what happens while Redis is down (fail open)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from httpx_sse import connect_sse

from dragoman.config import Settings
from dragoman.errors import RateLimited
from dragoman.keys import ApiKey
from dragoman.quotas import Quotas
from tests.conftest import RedisProcess, ServerThread
from tests.fake_openai import FakeOpenAI
from tests.test_keys import bearer, create_key

BODY = {"text": "Hello", "target_lang": "ko", "stream": False}


def _post(client: httpx.Client, secret: str, text: str = "Hello") -> httpx.Response:
    return client.post("/v1/translations", json={**BODY, "text": text}, headers=bearer(secret))


def _assert_rate_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "rate_limited"
    assert int(response.headers["retry-after"]) >= 1


@pytest.fixture(params=["memory", "redis"])
def limited(
    request: pytest.FixtureRequest, make_server: Callable[..., ServerThread]
) -> Callable[..., ServerThread]:
    """A server with keys on, its counters in memory or in Redis."""
    redis = request.getfixturevalue("redis_url") if request.param == "redis" else None

    def make(**overrides: object) -> ServerThread:
        return make_server(auth="keys", redis_url=redis, **overrides)

    return make


def test_requests_per_minute(limited: Callable[..., ServerThread], db_url: str) -> None:
    server = limited()
    _, secret = create_key(db_url, rpm=2)
    _, other = create_key(db_url, rpm=2)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert _post(client, secret).status_code == 200
        assert _post(client, secret).status_code == 200
        _assert_rate_limited(_post(client, secret))
        compat = client.post(
            "/translate", json={"lang": "ko", "message": "Hi"}, headers=bearer(secret)
        )
        _assert_rate_limited(compat)
        assert _post(client, other).status_code == 200  # each key has its own
        # A refused request is not stored.
        page = client.get("/v1/translations", headers=bearer(secret)).json()
        assert len(page["items"]) == 2


def test_characters_per_minute(limited: Callable[..., ServerThread], db_url: str) -> None:
    server = limited()
    _, secret = create_key(db_url, cpm=12)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert _post(client, secret, "12345678").status_code == 200
        _assert_rate_limited(_post(client, secret, "12345678"))
        assert _post(client, secret, "1234").status_code == 200  # 12 in all


def test_server_defaults_apply_to_keys_without_their_own(
    limited: Callable[..., ServerThread], db_url: str
) -> None:
    server = limited(default_rpm=1)
    _, secret = create_key(db_url)
    _, generous = create_key(db_url, rpm=5)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert _post(client, secret).status_code == 200
        _assert_rate_limited(_post(client, secret))
        assert _post(client, generous).status_code == 200
        assert _post(client, generous).status_code == 200


def _stalled_stream(client: httpx.Client, secret: str, tag: str) -> Iterator[str]:
    body = {"text": f"x [[stall:1]] {tag}", "target_lang": "ko"}
    with connect_sse(
        client, "POST", "/v1/translations", json=body, headers=bearer(secret)
    ) as source:
        assert source.response.status_code == 200
        for event in source.iter_sse():
            yield event.event


def test_concurrent_translations(limited: Callable[..., ServerThread], db_url: str) -> None:
    server = limited()
    _, secret = create_key(db_url, concurrency=1, rpm=100)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        first = _stalled_stream(client, secret, "a")
        assert next(first) == "start"  # running, holding the key's one slot
        _assert_rate_limited(_post(client, secret))
        first.close()  # the client leaves: the slot comes back
        deadline = time.monotonic() + 30
        status = 429
        while status == 429 and time.monotonic() < deadline:
            status = _post(client, secret).status_code
            time.sleep(0.05)
        assert status == 200


def test_limits_are_off_with_keys_off(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(default_rpm=1)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(3):
            assert client.post("/v1/translations", json=BODY).status_code == 200


def test_unreachable_redis_fails_open_then_limits_come_back(
    make_server: Callable[..., ServerThread], db_url: str
) -> None:
    redis = RedisProcess()
    try:
        server = make_server(auth="keys", redis_url=redis.url)
        _, secret = create_key(db_url, rpm=1)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert _post(client, secret).status_code == 200
            _assert_rate_limited(_post(client, secret))  # counted in Redis

            redis.stop()
            # Redis is down: keys are still checked, limits are not enforced.
            for _ in range(3):
                assert _post(client, secret).status_code == 200
            assert client.get("/v1/translations").status_code == 401

            redis = RedisProcess(redis.port)  # back (empty): the limits apply again
            deadline = time.monotonic() + 30
            statuses: list[int] = []
            while statuses[-2:] != [200, 429] and time.monotonic() < deadline:
                statuses.append(_post(client, secret).status_code)
            assert statuses[-2:] == [200, 429], statuses
    finally:
        redis.stop()


def test_running_translations_count_again_once_redis_is_back(
    make_server: Callable[..., ServerThread], db_url: str
) -> None:
    """Redis restarted empty while two translations run, one started before the outage and one
    during it (not counted then): both hold the key's slots again once Redis answers."""
    redis = RedisProcess()
    try:
        server = make_server(auth="keys", redis_url=redis.url)
        _, secret = create_key(db_url, concurrency=2, rpm=1000)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            before = _stalled_stream(client, secret, "before-outage")
            assert next(before) == "start"
            redis.stop()
            during = _stalled_stream(client, secret, "during-outage")
            assert next(during) == "start"  # fail open: served, not counted
            redis = RedisProcess(redis.port)  # back, and empty
            # Within a renewal period both leases are in Redis again: a third is refused.
            deadline = time.monotonic() + 60
            status = 200
            while status == 200 and time.monotonic() < deadline:
                status = _post(client, secret).status_code
                time.sleep(0.2)
            assert status == 429
            _assert_rate_limited(_post(client, secret))
            before.close()
            during.close()
    finally:
        redis.stop()


async def test_a_dead_process_gives_its_slots_back(redis_url: str) -> None:
    """A process that dies holding a lease stops renewing it: the slot comes back by itself."""
    settings = Settings(_env_file=None, redis_url=redis_url)  # type: ignore[call-arg]
    key = ApiKey(
        id=f"key_{uuid.uuid4().hex[:12]}",
        name="t",
        rpm=None,
        cpm=None,
        concurrency=1,
        created_at="2026-01-01T00:00:00.000Z",
        revoked_at=None,
    )
    dying = Quotas(settings, lease_ttl_s=1.0)
    dying.start()
    await dying.admit(key, 5)  # its slot, never released
    await dying.aclose()  # as if the process died: no release, no more renewals

    survivor = Quotas(settings, lease_ttl_s=1.0)
    survivor.start()
    try:
        with pytest.raises(RateLimited):
            await survivor.admit(key, 5)
        lease = None
        deadline = time.monotonic() + 30
        while lease is None and time.monotonic() < deadline:
            try:
                lease = await survivor.admit(key, 5)
            except RateLimited:
                await asyncio.sleep(0.1)
        assert lease is not None
        lease.release()
    finally:
        await survivor.aclose()


def _key(**limits: int | None) -> ApiKey:
    return ApiKey(
        id=f"key_{uuid.uuid4().hex[:12]}",
        name="t",
        rpm=limits.get("rpm"),
        cpm=limits.get("cpm"),
        concurrency=limits.get("concurrency"),
        created_at="2026-01-01T00:00:00.000Z",
        revoked_at=None,
    )


@pytest.fixture(params=["memory", "redis"])
def quota_settings(request: pytest.FixtureRequest) -> Settings:
    redis = request.getfixturevalue("redis_url") if request.param == "redis" else None
    return Settings(_env_file=None, redis_url=redis)  # type: ignore[call-arg]


async def test_a_refused_request_counts_against_no_limit(quota_settings: Settings) -> None:
    quotas = Quotas(quota_settings)
    quotas.start()
    key = _key(rpm=2, cpm=10, concurrency=10)
    try:
        (await quotas.admit(key, 8)).release()
        with pytest.raises(RateLimited, match="characters"):
            await quotas.admit(key, 8)
        # The refused request took no request from the minute's two.
        (await quotas.admit(key, 2)).release()
        with pytest.raises(RateLimited, match="requests") as refused:
            await quotas.admit(key, 1)
        assert 1 <= int(refused.value.headers["Retry-After"]) <= 120
    finally:
        await quotas.aclose()


async def test_a_burst_is_counted_not_waved_through(quota_settings: Settings) -> None:
    """Far more requests at once than Redis connections: each is still counted."""
    quotas = Quotas(quota_settings)
    quotas.start()
    key = _key(rpm=10_000, concurrency=250)
    try:
        outcomes = await asyncio.gather(
            *(quotas.admit(key, 5) for _ in range(300)), return_exceptions=True
        )
        admitted = [lease for lease in outcomes if not isinstance(lease, BaseException)]
        refused = [e for e in outcomes if isinstance(e, RateLimited)]
        assert (len(admitted), len(refused)) == (250, 50)
        for lease in admitted:
            lease.release()
        # Released together, in batches: every slot comes back.
        deadline = time.monotonic() + 10
        while True:
            try:
                again = [await quotas.admit(key, 5) for _ in range(250)]
                break
            except RateLimited:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        for lease in again:
            lease.release()
    finally:
        await quotas.aclose()


def test_a_request_counted_while_its_upstream_starts_is_still_refused_before_any_byte(
    make_server: Callable[..., ServerThread], db_url: str, redis_url: str, fake: FakeOpenAI
) -> None:
    """A replica that last saw a key far from its limits counts the key's next request in Redis
    while the upstream starts. When another replica used up the room meanwhile, the answer is
    still a 429 with Retry-After, nothing stored, and the upstream closed."""
    here = make_server(auth="keys", redis_url=redis_url)
    there = make_server(auth="keys", redis_url=redis_url)
    _, secret = create_key(db_url, rpm=10)
    tag = f"early-{uuid.uuid4().hex[:8]}"
    with (
        httpx.Client(base_url=here.url, timeout=30) as a,
        httpx.Client(base_url=there.url, timeout=30) as b,
    ):
        assert _post(a, secret).status_code == 200  # 1 of 10: `here` saw plenty of room
        for _ in range(9):
            assert _post(b, secret).status_code == 200  # 10 of 10, through the other
        body = {"text": f"x [[slow:{tag}:20:0.05]]", "target_lang": "ko"}
        refused = a.post("/v1/translations", json=body, headers=bearer(secret))
        _assert_rate_limited(refused)
        assert "x-translation-id" not in refused.headers
        # It was counted alongside the start of its upstream request, which is closed.
        assert fake.closed_event(tag).wait(10)
        _assert_rate_limited(_post(a, secret))  # and now counted first
        page = a.get("/v1/translations", headers=bearer(secret)).json()
        assert len(page["items"]) == 10
