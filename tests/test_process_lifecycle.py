"""`dragoman serve` as a real process: restarts, SIGTERM, and a plain (non-editable) install."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from tests.fake_openai import FakeOpenAI
from tests.helpers import record_status, wait_until
from tests.processes import ServeProcess

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def serve_env(fake: FakeOpenAI, db_url: str) -> dict[str, str]:
    return {
        "DRAGOMAN_PROVIDER": "openai",
        "OPENAI_BASE_URL": fake.base_url,
        "DRAGOMAN_DATABASE_URL": db_url,
        "DRAGOMAN_LOG_LEVEL": "warning",
    }


@pytest.fixture
def processes() -> Iterator[list[ServeProcess]]:
    started: list[ServeProcess] = []
    yield started
    for process in started:
        process.stop()


def _first_line_of_stream(
    url: str, text: str
) -> tuple[httpx.Client, httpx.Response, Iterator[str], str]:
    client = httpx.Client(base_url=url, timeout=30)
    request = client.build_request(
        "POST", "/v1/translations", json={"text": text, "target_lang": "ko"}
    )
    response = client.send(request, stream=True)
    lines = response.iter_lines()  # kept: dropping it would close the response
    next(lines)
    return client, response, lines, response.headers["x-translation-id"]


def test_restart_finishes_orphaned_records(
    serve_env: dict[str, str], tmp_path: Path, processes: list[ServeProcess]
) -> None:
    first = ServeProcess(serve_env, tmp_path)
    processes.append(first)
    client, response, _lines, record_id = _first_line_of_stream(
        first.url, "x [[slow:orphan:400:0.05]]"
    )
    # The record is in the database, still streaming.
    assert wait_until(lambda: record_status(first.url, record_id) == "streaming")
    first.proc.kill()  # a crash: no chance to finish anything
    first.proc.wait(10)
    response.close()
    client.close()

    second = ServeProcess(serve_env, tmp_path)
    processes.append(second)
    with httpx.Client(base_url=second.url) as reader:
        record = reader.get(f"/v1/translations/{record_id}").json()
    assert record["status"] == "failed"
    assert record["error"]["code"] == "interrupted"


def test_a_replica_starting_leaves_the_running_one_s_translations_alone(
    serve_env: dict[str, str], tmp_path: Path, processes: list[ServeProcess]
) -> None:
    first = ServeProcess(serve_env, tmp_path)
    processes.append(first)
    client, response, _lines, record_id = _first_line_of_stream(
        first.url, "x [[slow:replica-start:400:0.05]]"
    )
    try:
        assert wait_until(lambda: record_status(first.url, record_id) == "streaming")
        # Another replica starts on the same database while the translation runs: it finishes
        # the records of gone processes only.
        second = ServeProcess(serve_env, tmp_path)
        processes.append(second)
        assert record_status(second.url, record_id) == "streaming"
    finally:
        response.close()
        client.close()
    # Still the first one's: its client left, so it ends cancelled (not interrupted).
    assert wait_until(lambda: record_status(second.url, record_id) == "cancelled")


def test_sigterm_ends_open_streams_in_band(
    serve_env: dict[str, str], tmp_path: Path, processes: list[ServeProcess]
) -> None:
    env = {**serve_env, "DRAGOMAN_SHUTDOWN_GRACE_S": "1"}
    server = ServeProcess(env, tmp_path)
    processes.append(server)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        with connect_sse(
            client,
            "POST",
            "/v1/translations",
            json={"text": "x [[slow:term:400:0.05]]", "target_lang": "ko"},
        ) as source:
            record_id = source.response.headers["x-translation-id"]
            events = []
            for event in source.iter_sse():
                events.append(event)
                if len(events) == 3:
                    server.proc.send_signal(signal.SIGTERM)
    # Ended by the grace period (1 s), not by the upstream's 400 pieces 0.05 s apart.
    assert events[-1].event == "error"
    assert json.loads(events[-1].data)["error"]["code"] == "shutting_down"
    assert len(events) < 200
    server.proc.wait(15)
    # The record was finished before the process left.
    restarted = ServeProcess(serve_env, tmp_path)
    processes.append(restarted)
    with httpx.Client(base_url=restarted.url) as reader:
        record = reader.get(f"/v1/translations/{record_id}").json()
    assert record["status"] == "failed"
    assert record["error"]["code"] == "shutting_down"
    assert record["translation"].startswith("p0 p1 ")


def test_serve_refuses_openai_without_key_or_url(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env["DRAGOMAN_PROVIDER"] = "openai"
    result = subprocess.run(
        [sys.executable, "-m", "dragoman", "serve"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "OPENAI_API_KEY" in result.stderr and "Traceback" not in result.stderr


def test_non_editable_install_serves_from_empty_directory(
    serve_env: dict[str, str], tmp_path: Path, processes: list[ServeProcess]
) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**serve_env, "DRAGOMAN_DATABASE_URL": "sqlite+aiosqlite:///./fresh.db"}
    server = ServeProcess(env, empty, python_path=str(target))
    processes.append(server)
    where = subprocess.run(
        [sys.executable, "-c", "import dragoman; print(dragoman.__file__)"],
        env={**os.environ, "PYTHONPATH": str(target)},
        cwd=empty,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(target))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post("/translate", json={"lang": "ko", "message": "hello"})
        assert response.status_code == 200
        assert "data: T:" in response.text and response.text.endswith("data: [DONE]\n\n")
    assert (empty / "fresh.db").exists()


def _start_resumable(url: str, text: str, events: int) -> tuple[str, list[Any]]:
    with httpx.Client(base_url=url, timeout=30) as client:
        body = {"text": text, "target_lang": "ko", "resumable": True}
        with connect_sse(client, "POST", "/v1/translations", json=body) as source:
            record_id = source.response.headers["x-translation-id"]
            iterator = source.iter_sse()
            seen = [next(iterator) for _ in range(events)]
    return record_id, seen


def test_sigkill_mid_resumable_stream_then_restart_is_410_and_the_record(
    serve_env: dict[str, str], tmp_path: Path, processes: list[ServeProcess]
) -> None:
    first = ServeProcess(serve_env, tmp_path)
    processes.append(first)
    record_id, _ = _start_resumable(first.url, "x [[slow:kill-resumable:400:0.05]]", 3)
    assert wait_until(lambda: record_status(first.url, record_id) == "streaming")
    first.proc.kill()
    first.proc.wait(10)

    second = ServeProcess(serve_env, tmp_path)
    processes.append(second)
    with httpx.Client(base_url=second.url, timeout=30) as client:
        resumed = client.get(f"/v1/translations/{record_id}/events", headers={"Last-Event-ID": "2"})
        record = client.get(f"/v1/translations/{record_id}").json()
    assert resumed.status_code == 410
    assert resumed.json()["error"]["code"] == "resume_expired"
    assert record["status"] == "failed" and record["error"]["code"] == "interrupted"


@pytest.mark.skipif(
    not os.environ.get("DRAGOMAN_TEST_REDIS_URL"), reason="DRAGOMAN_TEST_REDIS_URL is not set"
)
def test_sigkill_with_redis_resume_ends_in_band_instead_of_hanging(
    serve_env: dict[str, str], tmp_path: Path, processes: list[ServeProcess]
) -> None:
    env = {
        **serve_env,
        "DRAGOMAN_REDIS_URL": os.environ["DRAGOMAN_TEST_REDIS_URL"],
        "DRAGOMAN_KEEPALIVE_S": "0.5",
    }
    first = ServeProcess(env, tmp_path)
    processes.append(first)
    record_id, seen = _start_resumable(first.url, "x [[slow:kill-redis:400:0.05]]", 3)
    assert wait_until(lambda: record_status(first.url, record_id) == "streaming")
    first.proc.kill()
    first.proc.wait(10)

    second = ServeProcess(env, tmp_path)
    processes.append(second)
    with httpx.Client(base_url=second.url, timeout=60) as client:
        url = f"/v1/translations/{record_id}/events"
        with connect_sse(client, "GET", url, headers={"Last-Event-ID": "1"}) as source:
            rest = [e for e in source.iter_sse() if e.data]
        record = client.get(f"/v1/translations/{record_id}").json()
    # What the dead process had logged, then the end it never wrote.
    assert rest[0].id == seen[2].id and rest[0].data == seen[2].data
    assert [int(e.id) for e in rest] == list(range(2, 2 + len(rest)))
    assert rest[-1].event == "error"
    assert json.loads(rest[-1].data)["error"]["code"] == "interrupted"
    assert record["status"] == "failed" and record["error"]["code"] == "interrupted"
