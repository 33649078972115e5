"""What the gateway adds: first-token delay, record creation, and disconnect propagation.

    python -m bench.gateway [--runs 50]

Starts, side by side in this run, the fake OpenAI-compatible upstream of the test suite (in a
thread) and `dragoman serve` pointed at it (a separate process), then reports:

- time to first token on `POST /translate` through dragoman against the upstream read
  directly (the limit), p50 and p99 at concurrency 1;
- the time one record creation takes to commit (the writer task on a SQLite file), written
  once the first event is out, so that it never delays the first token;
- the time from a client dropping its connection mid-stream to the upstream seeing its own
  connection closed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from dragoman.records.record import Record
from dragoman.records.store import RecordStore
from tests.conftest import free_port
from tests.fake_openai import FakeOpenAI
from tests.helpers import wait_until_answers


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _first_text_ms(client: httpx.Client, url: str, body: dict[str, object], marker: bytes) -> float:
    started = time.perf_counter()
    with client.stream("POST", url, json=body) as response:
        for chunk in response.iter_raw():
            if marker in chunk:
                return (time.perf_counter() - started) * 1000
    raise RuntimeError("no text arrived")


def ttft(fake: FakeOpenAI, dragoman_url: str, runs: int) -> tuple[list[float], list[float]]:
    direct, through = [], []
    upstream_body = {
        "model": "fake-model",
        "stream": True,
        "messages": [{"role": "user", "content": "hello world"}],
    }
    with httpx.Client(timeout=30) as client:
        for i in range(runs + 5):
            d = _first_text_ms(
                client, f"{fake.base_url}/chat/completions", upstream_body, b'"content"'
            )
            t = _first_text_ms(
                client,
                f"{dragoman_url}/translate",
                {"lang": "ko", "message": "hello world"},
                b"data: ",
            )
            if i >= 5:  # warm-up
                direct.append(d)
                through.append(t)
    return direct, through


async def _record_commit_ms(db_url: str, runs: int) -> list[float]:
    store = RecordStore(db_url)
    await store.prepare()
    store.start()
    times = []
    try:
        for _ in range(runs):
            record = Record(
                text="hello",
                target_lang="ko",
                source_lang="en",
                script_id=None,
                provider="openai",
                model="m",
            )
            started = time.perf_counter()
            await store.create(record)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        await store.aclose()
    return times


def disconnect(fake: FakeOpenAI, dragoman_url: str, runs: int) -> list[float]:
    latencies = []
    for i in range(runs):
        tag = f"bench-{i}-{time.monotonic_ns()}"
        closed = fake.closed_event(tag)
        with httpx.Client(base_url=dragoman_url, timeout=30) as client:
            request = client.build_request(
                "POST", "/translate", json={"lang": "ko", "message": f"x [[slow:{tag}:1000:0.5]]"}
            )
            response = client.send(request, stream=True)
            lines = response.iter_lines()
            next(lines)
            started = time.perf_counter()
            response.close()
        if not closed.wait(10):
            raise RuntimeError("the upstream connection was not closed")
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    fake = FakeOpenAI().start()
    with tempfile.TemporaryDirectory() as workdir:
        port = free_port()
        env = {
            **os.environ,
            "DRAGOMAN_PROVIDER": "openai",
            "OPENAI_BASE_URL": fake.base_url,
            "DRAGOMAN_DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/bench.db",
            "DRAGOMAN_LOG_LEVEL": "warning",
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "dragoman", "serve", "--port", str(port)], env=env
        )
        url = f"http://127.0.0.1:{port}"
        try:
            if not wait_until_answers(f"{url}/readyz", proc, 60):
                raise SystemExit("dragoman did not start")
            direct, through = ttft(fake, url, args.runs)
            commits = asyncio.run(
                _record_commit_ms(f"sqlite+aiosqlite:///{Path(workdir) / 'commit.db'}", args.runs)
            )
            drops = disconnect(fake, url, max(5, args.runs // 5))
        finally:
            proc.terminate()
            proc.wait(30)
            fake.stop()
    added = [t - d for t, d in zip(through, direct, strict=True)]
    rows = [
        ("first token, upstream read directly", direct),
        ("first token through dragoman `/translate`", through),
        ("added by dragoman (paired runs)", added),
        ("record creation commit (written after the first event)", commits),
        ("client disconnect → upstream connection closed", drops),
    ]
    print(f"| measure ({args.runs} runs) | p50 ms | p99 ms |")
    print("|---|---|---|")
    for name, values in rows:
        print(f"| {name} | {_pct(values, 0.5):.2f} | {_pct(values, 0.99):.2f} |")


if __name__ == "__main__":
    main()
