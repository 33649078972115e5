"""The one mapping from events (`events.py`) to bytes on the wire.

Three kinds of answer:

- `V1Wire` (`/v1/...` streams, resumable logs, subtitle streams): every event carries an `id:`
  (consecutive from 0 in one stream), a name and JSON data, which never contains a raw line
  break; characters that naive line splitters such as `str.splitlines()` break on are escaped
  too, so even sloppy clients get the exact text.
- `CompatWire` (`POST /translate`): each piece is one event whose data is the raw text. A line
  break inside a field would end it, so a multi-line piece becomes several `data:` lines, which
  every compliant client joins back with LF (CR and CRLF arrive as LF, a limit of raw SSE data).
  Only CR, LF and CRLF end lines in SSE, so U+2028, form feeds and the like travel as they are.
  The stream ends with `data: [DONE]`.
- `JsonAnswer` (`"stream": false`): nothing until the final event, which is the whole answer.

`Started` is held back and sent with the event after it, so that a stream's first bytes (its
status line included) leave together. A new event type is one entry in `_V1` (and, when the
compatible stream shows it, in `CompatWire.encode`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import orjson

from dragoman.errors import DragomanError
from dragoman.events import (
    FINAL,
    Closed,
    CueDelta,
    CueDone,
    Delta,
    Done,
    Event,
    Failed,
    Frames,
    LiveDelta,
    LiveDone,
    LiveError,
    LiveSegment,
    Queued,
    Revision,
    Started,
    SubtitlesDone,
    SubtitlesStarted,
)

PING = b": ping\n\n"
DONE = b"data: [DONE]\n\n"
EVENT_STREAM = "text/event-stream; charset=utf-8"
JSON = "application/json"
# Every stream's headers besides its content type: no cache, and no proxy buffering (nginx).
HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}

# U+0085, U+2028 and U+2029 are not line breaks in SSE or JSON but are in str.splitlines().
_SPLITLINES_ONLY = (
    (b"\xc2\x85", b"\\u0085"),
    (b"\xe2\x80\xa8", b"\\u2028"),
    (b"\xe2\x80\xa9", b"\\u2029"),
)


def json_bytes(data: Any) -> bytes:
    out = orjson.dumps(data)
    if b"\xc2\x85" in out or b"\xe2\x80" in out:
        for raw, escaped in _SPLITLINES_ONLY:
            out = out.replace(raw, escaped)
    return out


def encoded_frame(event_id: int, name: str, data: bytes) -> bytes:
    """One v1 event whose data is JSON already encoded by `json_bytes`."""
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, name.encode(), data)


def frame(event_id: int | None, name: str, data: Any) -> bytes:
    """One v1 event: `id:` (none for an event outside the stream's numbering), `event:` and
    JSON `data:`."""
    if event_id is None:
        return b"event: %s\ndata: %s\n\n" % (name.encode(), json_bytes(data))
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, name.encode(), json_bytes(data))


class Wire(Protocol):
    media_type: str
    # False for one JSON answer: no keep-alive comments, nothing sent before the final event.
    streaming: bool

    def encode(self, event: Event) -> bytes:
        """The bytes of an event ("" when this answer shows nothing of it)."""

    def failure(self, error: DragomanError) -> bytes:
        """The in-band error that ends a stream after its first byte."""


# v1: the event's name and data, or (for pieces) one event per piece.
_V1: dict[type, Callable[[Any], list[tuple[str, Any]]]] = {
    Started: lambda e: [("start", {"id": e.id, "provider": e.provider, "model": e.model})],
    Queued: lambda e: [("queued", {"position": e.position})] if e.position > 0 else [],
    Delta: lambda e: [("delta", {"text": piece}) for piece in e.pieces],
    Done: lambda e: [("done", e.record.public())],
    Failed: lambda e: [("error", e.error.body())],
    SubtitlesStarted: lambda e: [
        ("start", {"script_id": e.script_id, "provider": e.provider, "model": e.model})
    ],
    CueDelta: lambda e: [("delta", {"text": piece, "cue": e.cue}) for piece in e.pieces],
    CueDone: lambda e: [
        ("cue", {"index": e.index, "start": e.start, "end": e.end, "text": e.text})
    ],
    SubtitlesDone: lambda e: [("done", e.public())],
    LiveSegment: lambda e: [("segment", {"index": e.index, "text": e.text, "final": e.final})],
    LiveDelta: lambda e: [("delta", {"index": e.index, "text": piece}) for piece in e.pieces],
    Revision: lambda e: [("revision", {"index": e.index, "text": e.text})],
    LiveDone: lambda e: [("done", {"index": e.index, "translation": e.translation, "id": e.id})],
    LiveError: lambda e: [
        (
            "error",
            {"error": e.error.body()["error"]} | ({} if e.index is None else {"index": e.index}),
        )
    ],
    Closed: lambda e: [("closed", {"reason": e.reason})],
}


class V1Wire:
    media_type = EVENT_STREAM
    streaming = True

    __slots__ = ("_held", "_next_id")

    def __init__(self, first_id: int = 0) -> None:
        self._next_id = first_id
        self._held: list[bytes] = []  # a `Started`, waiting for the event after it

    def encode(self, event: Event) -> bytes:
        if type(event) is Frames:
            return b"".join(event.data)
        return b"".join(self.frames(event))

    def frames(self, event: Event) -> list[bytes]:
        """The event's frames, one per id (a log keeps one entry per id)."""
        kind = type(event)
        if kind is Delta:  # the hot path: one event per piece
            first = self._next_id
            self._next_id += len(event.pieces)  # type: ignore[union-attr]
            out = [
                b'id: %d\nevent: delta\ndata: {"text":%s}\n\n' % (first + n, json_bytes(piece))
                for n, piece in enumerate(event.pieces)  # type: ignore[union-attr]
            ]
        elif kind is Frames:
            out = list(event.data)  # type: ignore[union-attr]
        else:
            out = [self._frame(name, data) for name, data in _V1[kind](event)]
            if kind is Started or kind is SubtitlesStarted:
                self._held += out
                return []
        if self._held:
            out, self._held = self._held + out, []
        return out

    def failure(self, error: DragomanError) -> bytes:
        return self._frame("error", error.body())

    def _frame(self, name: str, data: Any) -> bytes:
        event_id = self._next_id
        self._next_id += 1
        return frame(event_id, name, data)


class CompatWire:
    """`data: <text>` events; keeps the state needed for a CRLF split across two pieces."""

    media_type = EVENT_STREAM
    streaming = True

    __slots__ = ("_after_cr",)

    def __init__(self) -> None:
        self._after_cr = False

    def encode(self, event: Event) -> bytes:
        if type(event) is Delta:
            return b"".join([self.piece(piece) for piece in event.pieces])
        if type(event) is Done:
            return DONE
        return b""

    def failure(self, error: DragomanError) -> bytes:
        return b"event: error\ndata: " + json_bytes(error.body()) + b"\n\n"

    def piece(self, text: str) -> bytes:
        if self._after_cr and text.startswith("\n"):
            text = text[1:]
        # A piece that was only that LF leaves no CR pending: the next LF is a line of its own.
        self._after_cr = text.endswith("\r")
        if not text:
            return b""
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if "\n" in text:
            return ("data: " + text.replace("\n", "\ndata: ") + "\n\n").encode()
        return ("data: " + text + "\n\n").encode()


class JsonAnswer:
    """`"stream": false`: the final event's object as the whole answer."""

    media_type = JSON
    streaming = False

    def encode(self, event: Event) -> bytes:
        if type(event) is Done:
            return orjson.dumps(event.record.public())
        if type(event) is SubtitlesDone:
            return orjson.dumps(event.public())
        return b""

    def failure(self, error: DragomanError) -> bytes:
        return orjson.dumps(error.body())


def named(event: Event) -> list[tuple[str, Any]]:
    """The v1 names and data of an event (for a reader in this process, such as the CLI)."""
    return _V1[type(event)](event)


def is_final(event: Event) -> bool:
    return isinstance(event, FINAL)
