"""One listener of a live session in one language: what it missed (or the recent segments),
then the events as they come, from this process's feed of the channel.

A listener without `Last-Event-ID` first gets the last `DRAGOMAN_LIVE_REPLAY` segments: for
each finished one its (last) `segment` event and its `done` or `error`, for one still under
way every event it has had so far, each with its id in the channel. With `Last-Event-ID: N` it
gets every event after N. Then it follows live, until the session's `closed` event.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable

from dragoman import metrics
from dragoman.errors import DragomanError
from dragoman.events import Closed, Event, Frames, LiveError
from dragoman.live.channel import Channels, Entry
from dragoman.live.fanout import Hub, Subscriber
from dragoman.live.presence import Presence
from dragoman.live.store import Session
from dragoman.wire import frame, named

# Events read back per round trip while looking for the start of the replay.
_CHUNK = 512


class ListenerTooSlow(DragomanError):
    code = "listener_too_slow"
    status = 409
    default_message = (
        "This listener fell too far behind; resume with Last-Event-ID to get what it missed."
    )


def _unnumbered(event: Event) -> bytes:
    """An event that is this listener's own, outside the channel's numbering."""
    [(name, data)] = named(event)
    return frame(None, name, data)


TOO_SLOW = _unnumbered(LiveError(ListenerTooSlow()))


class LiveListener:
    def __init__(
        self,
        session: Session,
        lang: str,
        after: int | None,
        *,
        hub: Hub,
        presence: Presence,
        channels: Channels,
        replay_segments: int,
        buffer: int,
        catch_up: Callable[[], None] | None = None,
    ) -> None:
        self.session = session
        self.lang = lang
        self._after = after
        self._hub = hub
        self._presence = presence
        self._channels = channels
        self._replay_segments = replay_segments
        # The language's first listener: its last segments are translated now.
        self._catch_up = catch_up
        self._subscriber = Subscriber(buffer)

    async def events(self) -> AsyncGenerator[Event, None]:
        session, lang = self.session, self.lang
        feed = self._hub.feed(session.id, lang)
        position = await feed.attach(self._subscriber)
        await self._presence.joined(session.id, lang)
        try:
            if self._catch_up is not None:
                self._catch_up()
            backlog = await replay(
                self._channels, session.id, lang, self._after, position, self._replay_segments
            )
            if backlog:
                yield Frames([entry.frame for entry in backlog])
                if backlog[-1].kind == "c":
                    return
            if session.closed:  # closed before this language had a channel: nothing follows
                yield Frames([_unnumbered(Closed(session.close_reason or "closed"))])
                return
            while True:
                batch = await self._subscriber.next()
                if batch is None:
                    yield Frames([TOO_SLOW])
                    return
                if not batch:  # the feed ended: a shutdown; the client resumes elsewhere
                    return
                yield Frames([entry.frame for entry in batch])
                _delivered(batch)
                if batch[-1].kind == "c":
                    return
        finally:
            feed.detach(self._subscriber)
            await self._presence.left(session.id, lang)

    def abort(self, error: DragomanError) -> None:
        # A shutdown: the stream just ends, and the client resumes on another process with
        # its Last-Event-ID.
        self._subscriber.end()

    def release(self) -> None:
        self._subscriber.end()


def _delivered(batch: list[Entry]) -> None:
    """The delay of the batch's oldest piece of translation, from its upstream to here."""
    for entry in batch:
        if entry.kind == "d":
            metrics.live_delivered(max(time.time() - entry.at, 0.0))
            return


async def replay(
    channels: Channels, session_id: str, lang: str, after: int | None, upto: int, segments: int
) -> list[Entry]:
    """What a listener gets before the live events: everything after `after`, or (without
    it) the last `segments` segments, up to the event `upto`."""
    if after is not None:
        return await channels.read(session_id, lang, after, upto)
    if segments <= 0 or upto < 0:
        return []
    wanted: set[int] = set()
    collected: list[Entry] = []  # newest first
    cursor = upto
    while cursor >= 0:
        chunk = await channels.read_back(session_id, lang, cursor, _CHUNK)
        if not chunk:
            break
        for entry in chunk:
            if entry.kind == "s" and entry.index not in wanted:
                if len(wanted) == segments:
                    cursor = -1
                    break
                wanted.add(entry.index)
            collected.append(entry)
        else:
            cursor = chunk[-1].id - 1
    collected.reverse()
    finished = {e.index for e in collected if e.kind in ("x", "e") and e.index in wanted}
    last_segment = {e.index: e.id for e in collected if e.kind == "s"}
    out = []
    for entry in collected:
        if entry.kind == "c":
            out.append(entry)
        elif entry.index not in wanted:
            continue
        elif entry.index not in finished or entry.kind in ("x", "e"):
            out.append(entry)
        elif entry.kind == "s" and entry.id == last_segment[entry.index]:
            out.append(entry)
    return out
