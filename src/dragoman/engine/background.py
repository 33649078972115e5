"""The engine supervisor on a thread of its own, for `dragoman serve`.

uvicorn owns the main thread (and, with several workers, forks them); the supervisor runs
beside it on its own event loop, and tells the workers its state through the status file.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from pathlib import Path

from dragoman.config import Settings
from dragoman.engine.supervisor import EngineSupervisor


class BackgroundEngine:
    def __init__(self, settings: Settings) -> None:
        self._dir = tempfile.mkdtemp(prefix="dragoman-engine-")
        self.socket_path = str(Path(self._dir) / "engine.sock")
        from dragoman import metrics

        self.supervisor = EngineSupervisor(
            settings, self.socket_path, write_status=True, on_restart=metrics.engine_restarted
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="dragoman-engine", daemon=True)

    def start(self) -> BackgroundEngine:
        self._thread.start()
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self.supervisor.run())

    def stop(self) -> None:
        if self._thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(self.supervisor.stop(), self._loop)
            try:
                future.result(timeout=10)
            except Exception:
                pass
            self._thread.join(10)
        shutil.rmtree(self._dir, ignore_errors=True)
