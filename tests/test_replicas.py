"""Replicas and workers: `dragoman serve` processes sharing one PostgreSQL and one Redis.

A key's limits hold across replicas, a record written through one is read through another,
and `--workers 2` serves with shared limits and metrics.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from httpx_sse import connect_sse
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port
from tests.fake_openai import FakeOpenAI
from tests.helpers import wait_until_answers

BODY = {"text": "Hello", "target_lang": "ko", "stream": False}


class Replica:
    """`dragoman serve` in a process of its own, its output in a file."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.port = free_port()
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dragoman", "serve", "--port", str(self.port), *args],
            env={**os.environ, **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        if not wait_until_answers(f"{self.url}/readyz", self.proc, 60):
            self.stop()
            raise RuntimeError(f"dragoman serve did not start:\n{log.read_text()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


@pytest.fixture
def shared_env(fake: FakeOpenAI, postgres_url: str, redis_url: str) -> dict[str, str]:
    return {
        "DRAGOMAN_PROVIDER": "openai",
        "OPENAI_BASE_URL": fake.base_url,
        "DRAGOMAN_DATABASE_URL": postgres_url,
        "DRAGOMAN_REDIS_URL": redis_url,
        "DRAGOMAN_AUTH": "keys",
        "DRAGOMAN_LOG_LEVEL": "warning",
    }


@pytest.fixture
def replicas(shared_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Replica]]:
    started: list[Replica] = []

    def start(*args: str) -> Replica:
        replica = Replica(shared_env, tmp_path / f"replica-{len(started)}.log", *args)
        started.append(replica)
        return replica

    yield start
    for replica in started:
        replica.stop()


def create_key(env: dict[str, str], *args: str) -> str:
    """`dragoman keys create`, as an operator runs it: the secret."""
    result = subprocess.run(
        [sys.executable, "-m", "dragoman", "keys", "create", "--name", "replicas", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]


def _post(url: str, secret: str) -> httpx.Response:
    # A connection per request: with several workers, any of them may answer it.
    return httpx.post(
        f"{url}/v1/translations",
        json=BODY,
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )


def test_two_replicas_share_limits_and_records(
    replicas: Callable[..., Replica], shared_env: dict[str, str]
) -> None:
    one, two = replicas(), replicas()
    secret = create_key(shared_env, "--rpm", "3")
    auth = {"Authorization": f"Bearer {secret}"}

    first = _post(one.url, secret)
    assert first.status_code == 200, first.text
    assert _post(two.url, secret).status_code == 200
    assert _post(one.url, secret).status_code == 200
    for url in (two.url, one.url):  # the key's 3 per minute are spent, on both
        refused = _post(url, secret)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "rate_limited"

    # Written through one, read through the other.
    record_id = first.json()["id"]
    record = httpx.get(f"{two.url}/v1/translations/{record_id}", headers=auth, timeout=30)
    assert record.status_code == 200 and record.json() == first.json()


def test_concurrent_streams_are_counted_across_replicas(
    replicas: Callable[..., Replica], shared_env: dict[str, str]
) -> None:
    one, two = replicas(), replicas()
    secret = create_key(shared_env, "--concurrency", "1")
    auth = {"Authorization": f"Bearer {secret}"}
    body = {"text": "x [[stall:1]] replicas", "target_lang": "ko"}
    with (
        httpx.Client(timeout=30) as client,
        connect_sse(client, "POST", f"{one.url}/v1/translations", json=body, headers=auth) as s,
    ):
        events = s.iter_sse()
        assert next(events).event == "start"  # running on one, holding the key's one slot
        refused = _post(two.url, secret)
        assert refused.status_code == 429 and "retry-after" in refused.headers
    # The stream's client left: the slot comes back, whichever replica is asked.
    deadline = time.monotonic() + 30
    status = 429
    while status == 429 and time.monotonic() < deadline:
        status = _post(two.url, secret).status_code
        time.sleep(0.05)
    assert status == 200


def _requests_counted(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "dragoman_requests_total" and sample.labels == {
                "endpoint": "/v1/translations",
                "code": "200",
            }:
                return sample.value
    return 0.0


def test_two_workers_share_limits_and_metrics(
    replicas: Callable[..., Replica], shared_env: dict[str, str]
) -> None:
    server = replicas("--workers", "2")
    secret = create_key(shared_env, "--rpm", "6")
    statuses = [_post(server.url, secret).status_code for _ in range(8)]
    assert statuses == [200] * 6 + [429] * 2
    # A request is counted once its answer is sent: the last one may be a moment behind.
    deadline = time.monotonic() + 10
    while _requests_counted(server.url) != 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    # Every scrape, whichever worker answers it, adds up both workers' counts.
    assert {_requests_counted(server.url) for _ in range(6)} == {6.0}
