"""Where a resumable translation's events are kept: the interface, and ids that say "resumable".

A log holds the translation's SSE events, encoded once, in id order: entry N is the event whose
`id:` is N (ids count from 0 without gaps), so a replay after `Last-Event-ID: N` is the entries
from N + 1 on, byte for byte what the original stream sent. The last entry of a finished
translation is its `done` or `error` event.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Protocol

# The ids of resumable translations start with this letter (the others are plain hex), so that
# a missing log still tells "expired" (410) from "never resumable" (409) after any restart.
RESUMABLE_ID_PREFIX = "r"


def resumable_id() -> str:
    return RESUMABLE_ID_PREFIX + uuid.uuid4().hex[1:]


def is_resumable_id(translation_id: str) -> bool:
    return translation_id.startswith(RESUMABLE_ID_PREFIX)


class EventLog(Protocol):
    async def append(self, events: list[bytes], *, end: bool = False) -> None:
        """Add encoded events (the next ids, in order); `end`: the last is the final event."""

    def follow(self, after: int, idle_s: float) -> AsyncIterator[list[bytes]]:
        """The events with ids above `after`, then the new ones as they come, until the final
        event. Yields an empty list after `idle_s` without news (time for a keep-alive)."""


class EventLogs(Protocol):
    shared: bool  # True when other processes see the same logs

    def create(self, translation_id: str) -> EventLog:
        """A new, empty log for a translation that starts now."""

    async def open(self, translation_id: str) -> EventLog | None:
        """The log of a translation, running or finished within the window; else None."""

    async def finished(self, translation_id: str) -> None:
        """The translation has ended: keep its log for the replay window, then drop it."""

    async def discard(self, translation_id: str) -> None:
        """Drop the log now (the translation failed before its first event)."""

    async def keep_alive(self, translation_ids: list[str]) -> None:
        """These translations are still running in this process (for listeners elsewhere)."""

    async def mark_listened(self, translation_id: str) -> None:
        """A listener follows this translation (for the process that runs it)."""

    async def was_listened(self, translation_id: str) -> bool:
        """Whether a listener in any process marked this translation within the grace time."""

    async def aclose(self) -> None: ...
