"""`dragoman serve` as a real process on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port
from tests.helpers import wait_until_answers


class ServeProcess:
    def __init__(self, env: dict[str, str], cwd: Path, python_path: str | None = None) -> None:
        self.port = free_port()
        full_env = {**os.environ, **env}
        full_env.pop("PYTHONPATH", None)
        if python_path:
            full_env["PYTHONPATH"] = python_path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dragoman", "serve", "--port", str(self.port)],
            cwd=cwd,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if not wait_until_answers(f"{self.url}/healthz", self.proc, 60):
            self.proc.kill()
            out, _ = self.proc.communicate(timeout=10)
            raise RuntimeError(f"dragoman serve did not start:\n{out}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()
