"""Which process writes a record while it streams, and whether that process still runs.

Every process that writes records is a *runner*: it has an id (new in each process), stamps
it on the records it creates, and keeps a row in the `runners` table fresh (its host, pid, the
pid's start time and when it was last seen), written by its record writer every
`BEAT_S` seconds in the same transactions as its records. A record left `streaming` is an
orphan (finished as `interrupted`) only when its runner is gone:

- a row not refreshed for `STALE_S` seconds (a runner on another host that died), or
- a row of this host whose pid no longer runs, or runs another program (a crash here: found
  at once, without waiting for the row to go stale), or
- no row and the record older than `STALE_S` (the runner stopped, or its row was swept; a
  younger record may be a starting runner's, written before its first beat), or
- this process's own runner while no record store of this process is open.

So replicas and workers may start at any moment, together or while others serve: a starting
process never fails another's live records, and the records of a dead one are finished by
the next process that starts, or by the periodic sweep of any running one.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

# A runner refreshes its row this often, and is taken for dead when it has not for STALE_S.
BEAT_S = 10.0
STALE_S = 45.0
# A row not refreshed for this long is deleted (a runner that stops cleanly deletes its own).
FORGET_S = 86400.0


def _start_ticks(pid: int) -> str:
    """When `pid` started, in clock ticks since boot ("" where /proc does not say)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return ""
    return fields[19]


@dataclass(frozen=True, slots=True)
class Runner:
    id: str
    host: str
    pid: int
    started: str


_current: Runner | None = None
# Record stores of this process that are open (started and not closed).
_open_stores = 0


def current() -> Runner:
    """This process's runner (a new one after a fork)."""
    global _current
    pid = os.getpid()
    if _current is None or _current.pid != pid:
        _current = Runner(uuid.uuid4().hex, socket.gethostname()[:255], pid, _start_ticks(pid))
    return _current


def current_id() -> str:
    return current().id


def store_opened() -> None:
    global _open_stores
    _open_stores += 1


def store_closed() -> bool:
    """A store of this process closed; True when it was the last one open."""
    global _open_stores
    _open_stores = max(0, _open_stores - 1)
    return _open_stores == 0


def this_process_writes() -> bool:
    return _open_stores > 0


def _runs(pid: int, started: str) -> bool:
    """Whether the process `pid` of this host still runs (the same one, when its start time
    is known)."""
    if started:
        return _start_ticks(pid) == started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def alive(host: str, pid: int, started: str, seen_at: float, now: float | None = None) -> bool:
    """Whether a runner whose row says this is still running."""
    now = time.time() if now is None else now
    if seen_at < now - STALE_S:
        return False
    if host == current().host:
        return _runs(pid, started)
    return True
