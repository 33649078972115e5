"""Processes that start together on one database: each migrates it, one at a time (a
PostgreSQL advisory lock, SQLite's write lock); the others wait, then go on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import IO

import pytest

from tests.conftest import _required_service, free_port, fresh_postgres_database
from tests.fake_openai import FakeOpenAI
from tests.helpers import run_sql, wait_until_answers

# Each of these makes its own databases: CI's second pass (the suite on PostgreSQL) skips them.
pytestmark = pytest.mark.once


def _start_serve(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], int, IO[str]]:
    port = free_port()
    out = log.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dragoman", "serve", "--port", str(port)],
        env={**os.environ, **env},
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    return proc, port, out


def test_replicas_started_together_on_a_fresh_database_all_start(
    fake: FakeOpenAI, tmp_path: Path
) -> None:
    """As a deployment of two replicas does on its first start, twenty times: both migrate the
    same fresh database at the same moment; one waits for the other's lock, then goes on."""
    server = os.environ.get("DRAGOMAN_TEST_DATABASE_URL") or _required_service(
        "DRAGOMAN_TEST_POSTGRES_URL", "PostgreSQL server"
    )
    env = {
        "DRAGOMAN_PROVIDER": "openai",
        "OPENAI_BASE_URL": fake.base_url,
        "DRAGOMAN_LOG_LEVEL": "warning",
    }
    for attempt in range(20):
        with fresh_postgres_database(server) as url:
            # Started back to back, before either is waited for: they reach the database together.
            started = [
                _start_serve({**env, "DRAGOMAN_DATABASE_URL": url}, tmp_path / f"{attempt}-{i}.log")
                for i in range(2)
            ]
            try:
                for i, (proc, port, _) in enumerate(started):
                    serving = wait_until_answers(f"http://127.0.0.1:{port}/healthz", proc, 120)
                    log = (tmp_path / f"{attempt}-{i}.log").read_text()
                    assert serving, f"start {attempt + 1}, replica {i + 1} did not start:\n{log}"
                    assert "Traceback" not in log, log
            finally:
                for proc, _, out in started:
                    proc.kill()  # how they stop does not matter here
                    proc.wait(10)
                    out.close()
            assert run_sql(url, "SELECT count(*) FROM alembic_version")[0] == [(1,)]


_MIGRATE = """
import asyncio, sys
from dragoman.records.store import RecordStore

async def main():
    store = RecordStore(sys.argv[1])
    try:
        await store.prepare()
    finally:
        await store.engine.dispose()

asyncio.run(main())
"""


def test_processes_migrating_a_fresh_sqlite_file_together_all_succeed(tmp_path: Path) -> None:
    for attempt in range(5):
        url = f"sqlite+aiosqlite:///{tmp_path / f'together-{attempt}.db'}"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _MIGRATE, url],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(4)
        ]
        outputs = [proc.communicate(timeout=120)[0] for proc in procs]
        assert [proc.returncode for proc in procs] == [0] * 4, "\n".join(outputs)
        assert run_sql(url, "SELECT count(*) FROM alembic_version")[0] == [(1,)]
