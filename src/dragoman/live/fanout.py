"""Fan-out in one process: each (session, language) that has listeners here is followed once
(`Feed`), and every new event is handed, encoded once, to each listener's bounded buffer
(`Subscriber`). A listener that falls `limit` events behind is dropped, never waited for: its
stream ends with `listener_too_slow`, and it resumes with `Last-Event-ID`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

import structlog

from dragoman.live.channel import Channels, Entry

log = structlog.get_logger(__name__)

# How long a feed waits in one read before it checks that it still has listeners.
_WAIT_S = 5.0


class Subscriber:
    __slots__ = ("_entries", "_news", "closed", "limit", "overflowed")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._entries: deque[Entry] = deque()
        self._news = asyncio.Event()
        self.overflowed = False
        self.closed = False  # its feed ended (a shutdown)

    def deliver(self, batch: list[Entry]) -> None:
        if self.overflowed:
            return
        if len(self._entries) + len(batch) > self.limit:
            self.overflowed = True
            self._entries.clear()
        else:
            self._entries.extend(batch)
        self._news.set()

    def end(self) -> None:
        self.closed = True
        self._news.set()

    async def next(self) -> list[Entry] | None:
        """What arrived since the last call (waiting for it); None once it fell too far
        behind, [] when its feed ended."""
        while not self._entries and not self.overflowed and not self.closed:
            self._news.clear()
            await self._news.wait()
        if self.overflowed:
            return None
        batch = list(self._entries)
        self._entries.clear()
        return batch


class Feed:
    """One (session, language) followed for the listeners of this process."""

    def __init__(self, channels: Channels, session_id: str, lang: str, hub: Hub) -> None:
        self._channels = channels
        self.session_id = session_id
        self.lang = lang
        self._hub = hub
        self.subscribers: set[Subscriber] = set()
        self.position = -1  # the newest event id handed to the subscribers
        self._started: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def attach(self, subscriber: Subscriber) -> int:
        """Add a listener: it gets every event after the returned id."""
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        await asyncio.shield(self._started)
        if self._stopping:  # its last listener left meanwhile: follow with a new feed
            return await self._hub.feed(self.session_id, self.lang).attach(subscriber)
        # No await between reading the position and joining: nothing falls in between.
        self.subscribers.add(subscriber)
        return self.position

    def detach(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)
        if not self.subscribers:
            # The last listener here left: a new one starts a new feed.
            self._hub.forget(self)
            self._stopping = True
            if self._task is not None:
                self._task.cancel()

    async def _start(self) -> None:
        self.position = await self._channels.last_id(self.session_id, self.lang)
        self._task = asyncio.create_task(
            self._follow(), name=f"dragoman-live-{self.session_id}-{self.lang}"
        )

    async def _follow(self) -> None:
        # `_stopping` as well as the cancellation: redis-py can swallow a cancellation that
        # arrives during a command.
        try:
            while not self._stopping:
                try:
                    batch = await self._channels.wait(
                        self.session_id, self.lang, self.position, _WAIT_S
                    )
                except Exception as exc:  # Redis went away: try again; listeners wait
                    log.warning("live_feed_read_failed", error=type(exc).__name__)
                    await asyncio.sleep(1.0)
                    continue
                if not batch:
                    continue
                self.position = batch[-1].id
                for subscriber in list(self.subscribers):
                    subscriber.deliver(batch)
        finally:
            self._hub.forget(self)
            for subscriber in list(self.subscribers):
                subscriber.end()

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class Hub:
    """The feeds of this process."""

    def __init__(self, channels: Channels) -> None:
        self._channels = channels
        self._feeds: dict[tuple[str, str], Feed] = {}

    def feed(self, session_id: str, lang: str) -> Feed:
        feed = self._feeds.get((session_id, lang))
        if feed is None:
            feed = self._feeds[(session_id, lang)] = Feed(self._channels, session_id, lang, self)
        return feed

    def forget(self, feed: Feed) -> None:
        if self._feeds.get((feed.session_id, feed.lang)) is feed:
            del self._feeds[(feed.session_id, feed.lang)]

    async def aclose(self) -> None:
        for feed in list(self._feeds.values()):
            await feed.stop()
