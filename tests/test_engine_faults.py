"""The engine process dies (any signal) mid-stream: the service survives it, as it promises."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable

import httpx
import pytest
from httpx_sse import connect_sse

from tests.conftest import ServerThread
from tests.helpers import wait_for_record

# What it checks does not depend on the database: CI's second pass leaves it out.
pytestmark = pytest.mark.once

LONG_TEXT = " ".join(f"The cat number {i} sat on the red mat near the window." for i in range(40))


def _ready(server: ServerThread, seconds: float = 120) -> dict[str, object]:
    deadline = time.monotonic() + seconds
    while True:
        answer = httpx.get(f"{server.url}/readyz", timeout=5)
        if answer.status_code == 200:
            body: dict[str, object] = answer.json()
            return body
        assert time.monotonic() < deadline, answer.json()
        time.sleep(0.1)


def _engine_pid(server: ServerThread) -> int:
    engine = _ready(server)["engine"]
    assert isinstance(engine, dict)
    return int(engine["pid"])


@pytest.fixture
def local(make_server: Callable[..., ServerThread]) -> Callable[..., ServerThread]:
    def make(**overrides: object) -> ServerThread:
        server = make_server(provider="local", local_threads=2, **overrides)
        _ready(server)
        return server

    return make


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV])
def test_engine_death_mid_stream_is_survived(
    local: Callable[..., ServerThread], sig: signal.Signals
) -> None:
    server = local()
    pid = _engine_pid(server)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        body = {"text": LONG_TEXT, "target_lang": "de", "source_lang": "en"}
        with connect_sse(client, "POST", "/v1/translations", json=body) as source:
            record_id = source.response.headers["x-translation-id"]
            events = []
            for event in source.iter_sse():
                events.append(event)
                if event.event == "delta" and len(events) == 3:
                    os.kill(pid, sig)
            # Not ready while the engine is down, and the HTTP server still answers.
            assert client.get("/readyz").status_code == 503
            assert client.get("/healthz").status_code == 200
        last = events[-1]
        assert last.event == "error"
        error = json.loads(last.data)["error"]
        assert error["code"] == "upstream_error"
        assert "restarted" in error["message"]
        record = wait_for_record(server.url, record_id, "failed")
        assert record["status"] == "failed" and record["error"]["code"] == "upstream_error"
        assert record["translation"]  # what was produced before the death is kept

        # A new engine takes over, and translations work again.
        ready = _ready(server)
        assert ready["engine"]["pid"] != pid and ready["engine"]["restarts"] == 1  # type: ignore[index]
        after = client.post(
            "/v1/translations", json={"text": "Thank you.", "target_lang": "fr", "stream": False}
        )
        assert after.status_code == 200 and after.json()["status"] == "succeeded"


def _queued_position(client: httpx.Client, text: str) -> tuple[int, httpx.Response]:
    """Open a v1 stream that has to wait; its first queue position, and the open response."""
    body = {"text": text, "target_lang": "de", "source_lang": "en"}
    request = client.build_request("POST", "/v1/translations", json=body)
    response = client.send(request, stream=True)
    seen = []
    for line in response.iter_lines():
        seen.append(line)
        if line.startswith("data:") and '"position"' in line:
            return int(json.loads(line[5:])["position"]), response
    raise AssertionError(f"no queue position: {response.status_code} {seen}")


def test_engine_death_before_the_first_piece_is_a_502(local: Callable[..., ServerThread]) -> None:
    server = local(local_parallel=1)
    pid = _engine_pid(server)
    answers: list[httpx.Response] = []
    with httpx.Client(base_url=server.url, timeout=60) as client:
        # One request holds the only slot ...
        with connect_sse(
            client, "POST", "/v1/translations", json={"text": LONG_TEXT, "target_lang": "de"}
        ) as running:
            # (An iterator dropped half-way closes its connection: this one is kept.)
            events = running.iter_sse()
            assert any(event.event == "delta" for event in events)
            # ... a `/translate` request waits behind it, with nothing sent yet ...
            waiter = threading.Thread(
                target=lambda: answers.append(
                    httpx.post(
                        f"{server.url}/translate",
                        json={"lang": "fr", "message": "Good morning."},
                        timeout=60,
                    )
                )
            )
            waiter.start()
            # ... which is in the queue once a later request is second in line.
            with httpx.Client(base_url=server.url, timeout=60) as probe:
                while True:
                    position, response = _queued_position(probe, "Hello.")
                    response.close()
                    if position == 2:
                        break
            os.kill(pid, signal.SIGKILL)
            waiter.join(60)
    answer = answers[0]
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "upstream_error"
    assert "restarted" in answer.json()["error"]["message"]
    record_id = answer.headers["x-translation-id"]
    assert wait_for_record(server.url, record_id, "failed")["status"] == "failed"


def test_crash_loop_stops_restarting_and_says_why(local: Callable[..., ServerThread]) -> None:
    server = local()
    for _ in range(5):
        os.kill(_engine_pid(server), signal.SIGKILL)
        deadline = time.monotonic() + 60
        while httpx.get(f"{server.url}/readyz").status_code == 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    # The fifth death within a minute: no restart, and /readyz tells why.
    deadline = time.monotonic() + 60
    while True:
        answer = httpx.get(f"{server.url}/readyz")
        assert answer.status_code == 503
        message = answer.json()["error"]["message"]
        if "not restarted" in message:
            break
        assert time.monotonic() < deadline, message
        time.sleep(0.1)
    response = httpx.post(f"{server.url}/translate", json={"lang": "ko", "message": "Hello."})
    assert response.status_code == 502
    assert "not restarted" in response.json()["error"]["message"]


def test_requests_are_decoded_together(local: Callable[..., ServerThread]) -> None:
    server = local(local_parallel=4)
    texts = ["Good morning.", "I like green tea.", "Where is the station?"]
    results: list[list[tuple[str, str]]] = [[] for _ in texts]

    def run(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            body = {"text": texts[i], "target_lang": "fr", "source_lang": "en"}
            with connect_sse(client, "POST", "/v1/translations", json=body) as source:
                results[i] = [(e.event, e.data) for e in source.iter_sse()]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for events in results:
        kinds = [kind for kind, _ in events]
        assert "queued" not in kinds, kinds  # room for all three in one batch
        assert kinds[0] == "start" and kinds[-1] == "done"
        assert json.loads(events[-1][1])["translation"]
