"""Starts the engine process, watches it, restarts it with backoff, and stops on a crash loop.

States: `starting` (loading the model), `ready` (it generated a token and listens),
`restarting` (it died; a new one follows after a backoff), `crash_loop` (it died
`CRASH_LIMIT` times within `CRASH_WINDOW_S`: no more restarts, the reason is logged and shown by
/readyz), `failed` (the model cannot be loaded: restarting would not help), `stopped`.

When the serving process runs several HTTP workers, the supervisor runs once in the parent
process and writes its state to a small JSON file beside the socket, which the workers read.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from dragoman.config import Settings
from dragoman.engine.wire import EXIT_LOAD_FAILED

log = structlog.get_logger(__name__)

CRASH_LIMIT = 5
CRASH_WINDOW_S = 60.0
RESTARTING = "The local model process stopped and is being restarted."


def status_path(socket_path: str) -> Path:
    return Path(socket_path + ".json")


def read_status(socket_path: str) -> dict[str, Any]:
    """The state an external supervisor last wrote; `unknown` when there is none yet."""
    try:
        data = json.loads(status_path(socket_path).read_text())
    except (OSError, ValueError):
        return {"state": "starting", "reason": None}
    return data if isinstance(data, dict) else {"state": "starting", "reason": None}


def engine_command(settings: Settings, socket_path: str) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "dragoman.engine.process",
        "--socket",
        socket_path,
        "--threads",
        str(settings.local_threads),
        "--parallel",
        str(settings.local_parallel),
        "--queue-max",
        str(settings.queue_max),
        "--log-level",
        settings.log_level,
        "--examples",
        settings.local_examples,
        "--glossary-bias",
        str(settings.local_glossary_bias),
    ]
    if settings.model_path:
        command += ["--model-path", settings.model_path]
    if settings.local_vocabulary == "full":
        command.append("--full-vocabulary")
    if not settings.local_loop_guard:
        command.append("--no-loop-guard")
    return command


class EngineSupervisor:
    def __init__(
        self,
        settings: Settings,
        socket_path: str,
        *,
        write_status: bool = False,
        on_restart: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.socket_path = socket_path
        self.state = "starting"
        self.reason: str | None = None
        self.pid: int | None = None
        self.restarts = 0
        self._write_status = write_status
        self._on_restart = on_restart
        self._proc: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._deaths: deque[float] = deque()
        self._changed = asyncio.Event()

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "reason": self.reason,
            "pid": self.pid,
            "restarts": self.restarts,
        }

    def _set(self, state: str, reason: str | None = None) -> None:
        self.state, self.reason = state, reason
        self._changed.set()
        if self._write_status:
            path = status_path(self.socket_path)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.status()))
            tmp.replace(path)

    async def wait_settled(self) -> None:
        """Until the engine is ready, or will not be."""
        while self.state in ("starting", "restarting"):
            self._changed.clear()
            await self._changed.wait()

    async def run(self) -> None:
        while not self._stopping:
            code = await self._run_once()
            if self._stopping:
                break
            if code == EXIT_LOAD_FAILED:
                self._set("failed", "The local model could not be loaded (see the server log).")
                log.error("engine_load_failed")
                return
            self.restarts += 1
            if self._on_restart is not None:
                self._on_restart()
            now = time.monotonic()
            self._deaths.append(now)
            while self._deaths and now - self._deaths[0] > CRASH_WINDOW_S:
                self._deaths.popleft()
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            if len(self._deaths) >= CRASH_LIMIT:
                reason = (
                    f"The local model process stopped {len(self._deaths)} times within "
                    f"{CRASH_WINDOW_S:.0f} s (last: {how}); it is not restarted again. "
                    "See the server log, then restart dragoman."
                )
                log.error("engine_crash_loop", deaths=len(self._deaths), last=how)
                self._set("crash_loop", reason)
                return
            backoff = min(0.25 * 2 ** (len(self._deaths) - 1), 8.0)
            log.error("engine_died", last=how, restart_in_s=backoff, restarts=self.restarts)
            self._set("restarting", RESTARTING)
            await asyncio.sleep(backoff)
        self._set("stopped", "The server is shutting down.")

    async def _run_once(self) -> int:
        self._proc = proc = await asyncio.create_subprocess_exec(
            *engine_command(self.settings, self.socket_path),
            stdin=asyncio.subprocess.PIPE,  # closed by our exit: the engine follows
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C in the terminal is the server's to handle
        )
        self.pid = proc.pid
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            if line.strip() == b"READY":
                self._set("ready")
                break
        return await proc.wait()

    async def stop(self) -> None:
        self._stopping = True
        proc = self._proc
        if proc is not None and proc.returncode is None:
            try:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
            except ProcessLookupError:
                pass
        if self.state not in ("crash_loop", "failed"):
            self._set("stopped", "The server is shutting down.")
        self._remove_files()

    def _remove_files(self) -> None:
        if self._write_status:
            status_path(self.socket_path).unlink(missing_ok=True)
        Path(self.socket_path).unlink(missing_ok=True)
