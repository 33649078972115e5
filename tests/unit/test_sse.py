"""The SSE encoders against a parser written from the WHATWG "event stream interpretation"
rules, fed arbitrary text by hypothesis."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from dragoman.events import Delta, Started
from dragoman.wire import DONE, PING, CompatWire, V1Wire, frame


@dataclass
class Event:
    id: str | None
    event: str
    data: str


def parse_event_stream(stream: bytes) -> list[Event]:
    """https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation"""
    text = stream.decode("utf-8")
    text = text.removeprefix("\ufeff")
    events: list[Event] = []
    data: list[str] = []
    event_type = ""
    last_id: str | None = None
    # Lines end with CRLF, LF or CR; the last line of a stream without an end is discarded.
    lines = re.split(r"\r\n|\n|\r", text)
    for line in lines[:-1]:
        if line == "":
            if data:
                events.append(Event(last_id, event_type or "message", "\n".join(data)))
            data, event_type = [], ""
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event_type = value
        elif name == "id" and "\0" not in value:
            last_id = value
    return events


def _sse_line_breaks_as_lf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


pieces_strategy = st.lists(st.text(min_size=1), min_size=1, max_size=12)


@given(pieces_strategy)
def test_raw_pieces_arrive_as_their_text_with_line_breaks_as_lf(pieces: list[str]) -> None:
    encoder = CompatWire()
    stream = b"".join(encoder.piece(p) for p in pieces) + PING + DONE
    events = parse_event_stream(stream)
    assert events[-1].data == "[DONE]"
    assert "".join(e.data for e in events[:-1]) == _sse_line_breaks_as_lf("".join(pieces))


@given(st.lists(st.sampled_from(["a", "\r", "\n", "\r\n", "b\r", "\nc"]), min_size=1))
def test_raw_crlf_split_across_pieces_is_one_line_break(pieces: list[str]) -> None:
    encoder = CompatWire()
    stream = b"".join(encoder.piece(p) for p in pieces)
    events = parse_event_stream(stream)
    assert "".join(e.data for e in events) == _sse_line_breaks_as_lf("".join(pieces))


@given(pieces_strategy)
def test_json_events_carry_exact_text_and_consecutive_ids(pieces: list[str]) -> None:
    wire = V1Wire()
    stream = wire.encode(Started("x", "p", "m")) + b"".join(wire.encode(Delta([p])) for p in pieces)
    stream += frame(len(pieces) + 1, "done", {"translation": "".join(pieces)})
    events = parse_event_stream(stream)
    assert [e.event for e in events] == ["start"] + ["delta"] * len(pieces) + ["done"]
    assert [e.id for e in events] == [str(n) for n in range(len(pieces) + 2)]
    assert [json.loads(e.data)["text"] for e in events[1:-1]] == pieces
    assert json.loads(events[-1].data)["translation"] == "".join(pieces)


@given(st.text())
def test_json_events_survive_naive_line_splitting(text: str) -> None:
    encoded = V1Wire().encode(Delta([text])).decode()
    # str.splitlines() breaks on more than SSE does; the encoder leaves it nothing extra.
    assert encoded.splitlines() == encoded.split("\n")[:-1]
    data_line = encoded.splitlines()[2]
    assert json.loads(data_line.removeprefix("data: "))["text"] == text
