"""`dragoman serve --workers 2` on the embedded model: one engine process for both workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import free_port
from tests.helpers import wait_until_answers


def _descendants(pid: int) -> list[tuple[int, str]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        current = todo.pop()
        try:
            cmdline = (Path(f"/proc/{current}/cmdline").read_bytes()).replace(b"\0", b" ")
        except OSError:
            continue
        found.append((current, cmdline.decode(errors="replace")))
        todo += children.get(current, [])
    return found


def test_two_workers_share_one_engine(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DRAGOMAN_PROVIDER": "local",
        "DRAGOMAN_LOCAL_THREADS": "2",
        "DRAGOMAN_LOG_LEVEL": "warning",
        "DRAGOMAN_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'w.db'}",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "dragoman", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_until_answers(f"{url}/readyz", proc, 180)
        engines = [p for p, cmd in _descendants(proc.pid) if "dragoman.engine.process" in cmd]
        assert len(engines) == 1, _descendants(proc.pid)
        pids = set()
        # New connections each time: the kernel spreads them over both workers.
        for text in ("Good morning.", "Thank you.", "Good night.", "See you."):
            ready = httpx.get(f"{url}/readyz").json()
            pids.add(ready["engine"]["pid"])
            answer = httpx.post(
                f"{url}/v1/translations",
                json={"text": text, "target_lang": "fr", "stream": False},
                timeout=120,
            )
            assert answer.status_code == 200 and answer.json()["status"] == "succeeded"
        assert pids == set(engines)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    # The engine went with the server.
    assert all(not Path(f"/proc/{pid}").exists() for pid in engines)
