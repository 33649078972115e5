"""Real servers on 127.0.0.1: the fake OpenAI-compatible upstream and dragoman itself."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy.engine import make_url

from dragoman.app import create_app
from dragoman.config import Settings
from tests.fake_openai import FakeOpenAI


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerThread:
    """dragoman served by uvicorn over real HTTP, in a thread of the test process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        # Built here, started by `start()`: a test may add middleware in between.
        self.app = create_app(settings)
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("dragoman did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@pytest.fixture(scope="session", autouse=True)
def _own_data_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """No test reads or writes the user's data directory (the default database lives there):
    a command run without DRAGOMAN_DATABASE_URL uses this session's own."""
    previous = os.environ.get("XDG_DATA_HOME")
    home = tmp_path_factory.mktemp("xdg-data")
    os.environ["XDG_DATA_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("XDG_DATA_HOME", None)
    else:
        os.environ["XDG_DATA_HOME"] = previous


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database for this test: a SQLite file, or with
    DRAGOMAN_TEST_DATABASE_URL (a PostgreSQL server's URL, `postgresql+asyncpg://...`) a new
    database on that server, dropped afterwards."""
    server = os.environ.get("DRAGOMAN_TEST_DATABASE_URL")
    if not server:
        yield f"sqlite+aiosqlite:///{tmp_path / 'dragoman.db'}"
        return
    with fresh_postgres_database(server) as url:
        yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on a real PostgreSQL server, whichever database the run is on."""
    server = os.environ.get("DRAGOMAN_TEST_DATABASE_URL") or _required_service(
        "DRAGOMAN_TEST_POSTGRES_URL", "PostgreSQL server"
    )
    with fresh_postgres_database(server) as url:
        yield url


@contextmanager
def fresh_postgres_database(server_url: str) -> Iterator[str]:
    name = f"dragoman_test_{uuid.uuid4().hex[:16]}"
    _postgres_admin(server_url, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        _postgres_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _postgres_admin(server_url: str, statement: str) -> None:
    import asyncpg

    url = make_url(server_url).set(drivername="postgresql")

    async def run() -> None:
        conn = await asyncpg.connect(url.render_as_string(hide_password=False))
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    # In a thread of its own: a test may be inside an event loop.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


@pytest.fixture
def make_settings(fake: FakeOpenAI, db_url: str) -> Callable[..., Settings]:
    """Settings for a dragoman on the fake upstream and this test's database."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "provider": "openai",
            "openai_base_url": fake.base_url,
            "database_url": db_url,
            "log_level": "warning",
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


@pytest.fixture
def make_server(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., ServerThread]]:
    started: list[ServerThread] = []

    def make(**overrides: Any) -> ServerThread:
        server = ServerThread(make_settings(**overrides)).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def server(make_server: Callable[..., ServerThread]) -> ServerThread:
    return make_server()


@pytest.fixture
def client(server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def pytest_unconfigure(config: pytest.Config) -> None:
    # llama_cpp opens two /dev/null files when imported and never closes them; closed here, their
    # ResourceWarnings do not end the run's output after the summary line.
    utils = sys.modules.get("llama_cpp._utils")
    for name in ("outnull_file", "errnull_file"):
        handle = getattr(utils, name, None)
        if handle is not None:
            handle.close()


def _required_service(variable: str, what: str) -> str:
    """A service's URL from the environment; without it the test skips, or fails in CI."""
    value = os.environ.get(variable)
    if value:
        return value
    if os.environ.get("CI") == "true":
        pytest.fail(f"{variable} is not set: CI must run these tests against a real {what}")
    pytest.skip(f"{variable} is not set (a real {what} is needed)")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _required_service("DRAGOMAN_TEST_REDIS_URL", "Redis")


class RedisProcess:
    """A throw-away redis-server of this test's own, on a free loopback port."""

    def __init__(self, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            if os.environ.get("CI") == "true":
                pytest.fail("redis-server is not installed")
            pytest.skip("redis-server is not installed (apt-get install redis-server)")
        self.port = port or free_port()
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(10)


class PostgresProcess:
    """A throw-away PostgreSQL server of this test's own, on a free loopback port, that the test
    can stop and start again (`initdb`/`pg_ctl` from /usr/lib/postgresql/*/bin; as the
    `postgres` user when the tests run as root, since PostgreSQL refuses to run as root)."""

    def __init__(self) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: p.parts)
        if not found:
            if os.environ.get("CI") == "true":
                pytest.fail("PostgreSQL is not installed (/usr/lib/postgresql/*/bin)")
            pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
        self.bin = found[-1].parent
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="dragoman-pg-"))
        self.dir.chmod(0o755)
        self.data = self.dir / "data"
        self.data.mkdir()
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres")
            shutil.chown(self.dir, "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--no-sync")  # fmt: skip
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self._as, str(self.bin / tool), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=300"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-w",
                  "-o", options, "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """`fast`: connections are ended, as when the server is shut down or fails over."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.dir, ignore_errors=True)
