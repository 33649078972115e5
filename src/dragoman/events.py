"""The events of a translation, from the service to every way out.

A `Job` yields them; `wire.py` turns them into bytes for each kind of answer (v1 SSE, the
compatible `data:` stream, one JSON answer); the CLI, subtitle files and LibreTranslate lists
read them through `pieces()` and `result()`.

- `Started`: the translation is answering (its provider and model are known); it comes right
  before the first `Queued`, `Delta` or `Done`, never alone at the end of a stream;
- `Queued`: the request waits for the local model (position 1 is next; 0: it has started);
- `Delta`: pieces of translated text that arrived together (never empty, nor any piece);
- `Done`: the record, committed as `succeeded`;
- `Failed`: the error; `recorded` says whether a record of the request was stored (a refusal
  at admission or a database outage stores none).

`Frames` carries events already encoded (a log's replay, a live channel's fan-out): the wire
passes them through unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dragoman.errors import DragomanError

if TYPE_CHECKING:
    from dragoman.records.record import Record


@dataclass(frozen=True, slots=True)
class Started:
    id: str
    provider: str
    model: str


@dataclass(frozen=True, slots=True)
class Queued:
    position: int


@dataclass(frozen=True, slots=True)
class Delta:
    pieces: list[str]


@dataclass(frozen=True, slots=True)
class Done:
    record: Record


@dataclass(frozen=True, slots=True)
class Failed:
    error: DragomanError
    recorded: bool = True


@dataclass(frozen=True, slots=True)
class Frames:
    data: list[bytes]


# Subtitle files (`subtitles.py`): the file's script, a piece of a cue, a finished cue, the
# translated file.
@dataclass(frozen=True, slots=True)
class SubtitlesStarted:
    script_id: str
    provider: str
    model: str


@dataclass(frozen=True, slots=True)
class CueDelta:
    cue: int
    pieces: list[str]


@dataclass(frozen=True, slots=True)
class CueDone:
    index: int
    start: str
    end: str
    text: str


@dataclass(frozen=True, slots=True)
class SubtitlesDone:
    script_id: str
    format: str
    content: str

    def public(self) -> dict[str, Any]:
        return {"script_id": self.script_id, "format": self.format, "content": self.content}


# Live sessions (`live/`): the events of one session in one language, each with the
# segment's index in the script.
@dataclass(frozen=True, slots=True)
class LiveSegment:
    """A segment's source text (`final` False while it is a partial guess)."""

    index: int
    text: str
    final: bool = True


@dataclass(frozen=True, slots=True)
class LiveDelta:
    index: int
    pieces: list[str]


@dataclass(frozen=True, slots=True)
class Revision:
    """The whole current translation of an unfinished segment, replacing what was shown."""

    index: int
    text: str


@dataclass(frozen=True, slots=True)
class LiveDone:
    index: int
    translation: str
    id: str


@dataclass(frozen=True, slots=True)
class LiveError:
    """One segment's translation failed (`index`), or, without one, the listener's stream
    ends."""

    error: DragomanError
    index: int | None = None


@dataclass(frozen=True, slots=True)
class Closed:
    reason: str  # "closed" | "idle"


LiveEvent = LiveSegment | LiveDelta | Revision | LiveDone | LiveError | Closed

Event = (
    Started
    | Queued
    | Delta
    | Done
    | Failed
    | Frames
    | SubtitlesStarted
    | CueDelta
    | CueDone
    | SubtitlesDone
    | LiveSegment
    | LiveDelta
    | Revision
    | LiveDone
    | LiveError
    | Closed
)

# Events that end a stream: nothing follows them.
FINAL = (Done, Failed, SubtitlesDone)


async def pieces(events: AsyncIterator[Event]) -> AsyncIterator[str]:
    """The text of a translation's events, piece by piece; raises its error."""
    async with aclosing(events) as stream:  # type: ignore[type-var]
        async for event in stream:
            if type(event) is Delta or type(event) is CueDelta:
                for piece in event.pieces:
                    yield piece
            elif type(event) is Failed:
                raise event.error


async def result(events: AsyncIterator[Event]) -> Record:
    """The finished record of a translation's events; raises its error."""
    async with aclosing(events) as stream:  # type: ignore[type-var]
        async for event in stream:
            if type(event) is Done:
                return event.record
            if type(event) is Failed:
                raise event.error
    raise DragomanError("The translation ended without its record.")
