"""A live session's channels: one ordered log of events per session and language, with ids
consecutive from 0, encoded once for every listener.

Without Redis a channel lives in this process's memory. With it, a channel is a Redis Stream
(`dragoman:live:<session>:<lang>`, entry id `0-<event id + 1>`), and its events are appended
by a script that takes their ids and writes them in one step, so that several replicas (a
segment's translation on one, a newly picked language's catch-up on another) can append to the
same channel without a gap or a clash. Each entry keeps the encoded event (`d`), its kind
(`k`), its segment's index (`i`) and when it was written (`t`, wall-clock seconds: the delivery
delay is measured from it, across replicas).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as redis

from dragoman.events import Closed, LiveDelta, LiveDone, LiveError, LiveEvent, LiveSegment, Revision
from dragoman.wire import encoded_frame, json_bytes, named

# A bound on a channel's memory: a long lecture in one language is some tens of thousands.
MAX_EVENTS = 200_000
# How long a closed session's channels stay readable (a listener who comes back late still
# reads the transcript), and how long an open one's outlive its last event.
KEEP_S = 3600

KINDS: dict[type, str] = {
    LiveSegment: "s",
    LiveDelta: "d",
    Revision: "r",
    LiveDone: "x",
    LiveError: "e",
    Closed: "c",
}


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    kind: str  # s: segment, d: delta, r: revision, x: done, e: error, c: closed
    index: int  # the segment's index; -1 for none
    frame: bytes
    at: float  # when it was written (time.time())


def _parts(events: list[LiveEvent]) -> list[tuple[str, bytes, str, int]]:
    """(name, JSON data, kind, index) of each event to append, one per id."""
    parts = []
    for event in events:
        kind = KINDS[type(event)]
        index = getattr(event, "index", None)
        for name, data in named(event):
            parts.append((name, json_bytes(data), kind, -1 if index is None else index))
    return parts


class Channels(Protocol):
    shared: bool

    async def append(self, session_id: str, lang: str, events: list[LiveEvent]) -> int:
        """Append events; the id of the last one."""

    async def last_id(self, session_id: str, lang: str) -> int:
        """The id of the channel's newest event (-1 when it has none)."""

    async def read(self, session_id: str, lang: str, after: int, upto: int) -> list[Entry]:
        """The entries with after < id <= upto, oldest first."""

    async def read_back(self, session_id: str, lang: str, upto: int, count: int) -> list[Entry]:
        """Up to `count` entries with id <= upto, newest first."""

    async def wait(self, session_id: str, lang: str, after: int, timeout_s: float) -> list[Entry]:
        """The entries after `after`, waiting up to `timeout_s` for one ([] then)."""

    async def languages(self, session_id: str) -> set[str]:
        """The languages that have a channel in this session."""

    def forget(self, session_id: str) -> None:
        """Drop what this process keeps of a session's channels (it ended a while ago)."""

    async def aclose(self) -> None: ...


class _MemoryChannel:
    __slots__ = ("changed", "entries", "first")

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.first = 0  # the id of entries[0] (older ones are dropped past MAX_EVENTS)
        self.changed = asyncio.Event()


class MemoryChannels:
    shared = False

    def __init__(self) -> None:
        self._channels: dict[tuple[str, str], _MemoryChannel] = {}

    def _get(self, session_id: str, lang: str) -> _MemoryChannel:
        channel = self._channels.get((session_id, lang))
        if channel is None:
            channel = self._channels[(session_id, lang)] = _MemoryChannel()
        return channel

    async def append(self, session_id: str, lang: str, events: list[LiveEvent]) -> int:
        channel = self._get(session_id, lang)
        now = time.time()
        next_id = channel.first + len(channel.entries)
        for name, data, kind, index in _parts(events):
            channel.entries.append(
                Entry(next_id, kind, index, encoded_frame(next_id, name, data), now)
            )
            next_id += 1
        if len(channel.entries) > MAX_EVENTS:
            dropped = len(channel.entries) - MAX_EVENTS
            del channel.entries[:dropped]
            channel.first += dropped
        changed, channel.changed = channel.changed, asyncio.Event()
        changed.set()
        return next_id - 1

    async def last_id(self, session_id: str, lang: str) -> int:
        channel = self._channels.get((session_id, lang))
        return -1 if channel is None else channel.first + len(channel.entries) - 1

    async def read(self, session_id: str, lang: str, after: int, upto: int) -> list[Entry]:
        channel = self._channels.get((session_id, lang))
        if channel is None:
            return []
        start = max(after + 1 - channel.first, 0)
        stop = max(upto + 1 - channel.first, 0)
        return channel.entries[start:stop]

    async def read_back(self, session_id: str, lang: str, upto: int, count: int) -> list[Entry]:
        channel = self._channels.get((session_id, lang))
        if channel is None:
            return []
        stop = max(upto + 1 - channel.first, 0)
        return channel.entries[max(stop - count, 0) : stop][::-1]

    async def wait(self, session_id: str, lang: str, after: int, timeout_s: float) -> list[Entry]:
        channel = self._get(session_id, lang)
        last = channel.first + len(channel.entries) - 1
        if last <= after:
            try:
                await asyncio.wait_for(channel.changed.wait(), timeout_s)
            except TimeoutError:
                return []
            last = channel.first + len(channel.entries) - 1
        return await self.read(session_id, lang, after, last)

    async def languages(self, session_id: str) -> set[str]:
        return {lang for (session, lang) in self._channels if session == session_id}

    def forget(self, session_id: str) -> None:
        for key in [key for key in self._channels if key[0] == session_id]:
            del self._channels[key]

    async def aclose(self) -> None:
        self._channels.clear()


# ARGV[5]: the next id as far as the caller knows. A Redis that restarted without its data has
# lost the counter: ids go on from the caller's, not from 0, so that listeners (which wait for
# ids after their last) get what comes next.
_APPEND = """
local n = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), tonumber(ARGV[5]))
for i = 6, #ARGV, 4 do
  n = n + 1
  local event = 'id: ' .. (n - 1) .. '\\nevent: ' .. ARGV[i]
    .. '\\ndata: ' .. ARGV[i + 1] .. '\\n\\n'
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '0-' .. n,
             'd', event, 'k', ARGV[i + 2], 'i', ARGV[i + 3], 't', ARGV[3])
end
redis.call('SET', KEYS[2], n, 'EX', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[2])
return n - 1
"""


def _key(session_id: str, lang: str) -> str:
    return f"dragoman:live:{session_id}:{lang}"


def _entries(raw: Any) -> list[Entry]:
    out = []
    for entry_id, fields in raw:
        stream_id = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        out.append(
            Entry(
                int(stream_id.split("-")[1]) - 1,
                fields[b"k"].decode(),
                int(fields[b"i"]),
                fields[b"d"],
                float(fields[b"t"]),
            )
        )
    return out


class RedisChannels:
    shared = True

    def __init__(self, client: redis.Redis, reader: redis.Redis) -> None:
        self._redis = client
        # For `XREAD BLOCK` only, which holds a connection while it waits.
        self._reader = reader
        self._append = client.register_script(_APPEND)
        # The newest id this process has written or read, per channel (see `_APPEND`).
        self._known: dict[tuple[str, str], int] = {}

    async def append(self, session_id: str, lang: str, events: list[LiveEvent]) -> int:
        key = _key(session_id, lang)
        known = self._known.get((session_id, lang), -1)
        args: list[Any] = [MAX_EVENTS, KEEP_S, repr(time.time()), lang, known + 1]
        for name, data, kind, index in _parts(events):
            args += [name, data, kind, index]
        last = int(
            await self._append(
                keys=[key, key + ":seq", f"dragoman:live:{session_id}:langs"], args=args
            )
        )
        self._saw(session_id, lang, last)
        return last

    def _saw(self, session_id: str, lang: str, last: int) -> None:
        if last > self._known.get((session_id, lang), -1):
            self._known[(session_id, lang)] = last

    def forget(self, session_id: str) -> None:
        for key in [key for key in self._known if key[0] == session_id]:
            del self._known[key]

    async def last_id(self, session_id: str, lang: str) -> int:
        seq = await self._redis.get(_key(session_id, lang) + ":seq")
        return int(seq) - 1 if seq is not None else -1

    async def read(self, session_id: str, lang: str, after: int, upto: int) -> list[Entry]:
        if upto <= after:
            return []
        raw = await self._redis.xrange(
            _key(session_id, lang), min=f"0-{after + 2}", max=f"0-{upto + 1}"
        )
        return _entries(raw)

    async def read_back(self, session_id: str, lang: str, upto: int, count: int) -> list[Entry]:
        if upto < 0:
            return []
        raw = await self._redis.xrevrange(
            _key(session_id, lang), max=f"0-{upto + 1}", min="-", count=count
        )
        return _entries(raw)

    async def wait(self, session_id: str, lang: str, after: int, timeout_s: float) -> list[Entry]:
        key = _key(session_id, lang)
        answer: Any = await self._reader.xread(
            {key: f"0-{after + 1}"}, count=512, block=max(1, int(timeout_s * 1000))
        )
        entries = _entries(answer[0][1]) if answer else []
        if entries:
            self._saw(session_id, lang, entries[-1].id)
        return entries

    async def languages(self, session_id: str) -> set[str]:
        langs = await self._redis.smembers(f"dragoman:live:{session_id}:langs")
        return {lang.decode() if isinstance(lang, bytes) else str(lang) for lang in langs}

    async def aclose(self) -> None:
        return None  # the clients are closed by their owner
