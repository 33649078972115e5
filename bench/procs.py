"""Processes of the benchmarks: starting servers, and reading their CPU time and memory."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

from tests.helpers import wait_until_answers

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start(
    cmd: list[str], env: dict[str, str], port: int, ready_path: str, log: IO[bytes] | None = None
) -> subprocess.Popen[bytes]:
    """Start a server and wait until `ready_path` answers; its output goes to `log`, if any."""
    out = log or subprocess.DEVNULL
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out)
    if not wait_until_answers(f"http://127.0.0.1:{port}{ready_path}", proc, 60):
        proc.kill()
        raise SystemExit(f"could not start: {' '.join(cmd)}")
    return proc


def start_redis(port: int, workdir: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return proc
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit("could not start redis-server (apt-get install redis-server)")
        time.sleep(0.05)
