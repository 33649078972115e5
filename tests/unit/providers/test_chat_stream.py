"""The chat stream parser on its own: bytes in, batches of pieces, usage and errors out."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dragoman.errors import UpstreamError
from dragoman.providers.chat_stream import (
    ChatStreamParser,
    EndedEarly,
    MalformedStream,
    UpstreamReportedError,
)
from dragoman.records.record import Usage


def _chunk(content: str | None = None, finish: str | None = None, **extra: Any) -> bytes:
    choice = {"index": 0, "delta": {} if content is None else {"content": content}}
    choice["finish_reason"] = finish
    data = {"id": "c", "choices": [choice], **extra}
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def _usage(prompt: int, completion: int) -> bytes:
    data = {
        "id": "c",
        "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
    }
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def _stream(pieces: list[str]) -> bytes:
    return (
        b"".join(_chunk(p) for p in pieces)
        + _chunk(finish="stop")
        + _usage(3, len(pieces))
        + b"data: [DONE]\n\n"
    )


def _feed_all(parser: ChatStreamParser, reads: list[bytes]) -> list[list[str]]:
    batches: list[list[str]] = []
    for data in reads:
        batches += list(parser.feed(data))
    return batches


def test_first_piece_comes_alone_and_the_rest_of_the_read_as_one_batch() -> None:
    parser = ChatStreamParser()
    batches = _feed_all(parser, [_stream(["a", "b", "c"])])
    assert batches == [["a"], ["b", "c"]]
    assert parser.done and parser.finished
    assert parser.usage == Usage(3, 3)
    parser.end()


def test_later_reads_are_one_batch_each() -> None:
    parser = ChatStreamParser()
    batches = _feed_all(parser, [_chunk("a"), _chunk("b") + _chunk("c"), _chunk("d")])
    assert batches == [["a"], ["b", "c"], ["d"]]
    assert not parser.finished
    with pytest.raises(EndedEarly):
        parser.end()


@given(
    pieces=st.lists(st.text(min_size=1), min_size=1, max_size=8),
    cuts=st.lists(st.integers(min_value=0), max_size=6),
)
def test_any_split_of_the_bytes_gives_the_same_pieces(pieces: list[str], cuts: list[int]) -> None:
    body = _stream(pieces)
    points = sorted({c % (len(body) + 1) for c in cuts})
    reads = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    parser = ChatStreamParser()
    batches = _feed_all(parser, reads)
    assert [p for batch in batches for p in batch] == pieces
    assert all(batch for batch in batches)
    assert parser.done and parser.usage == Usage(3, len(pieces))


def test_crlf_lines_comments_and_other_fields_are_read_as_sse() -> None:
    body = b": keep-alive\r\nevent: message\r\n" + _chunk("x").replace(b"\n", b"\r\n")
    parser = ChatStreamParser()
    assert _feed_all(parser, [body]) == [["x"]]


def test_empty_content_and_role_only_deltas_yield_nothing() -> None:
    role = b'data: {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}\n\n'
    parser = ChatStreamParser()
    assert _feed_all(parser, [role + _chunk("") + _chunk(None)]) == []
    assert _feed_all(parser, [_chunk("y")]) == [["y"]]


def test_nothing_after_done_is_read() -> None:
    parser = ChatStreamParser()
    batches = _feed_all(parser, [_chunk("a") + b"data: [DONE]\n\n" + _chunk("late")])
    assert batches == [["a"]]
    assert _feed_all(parser, [_chunk("later")]) == []


def test_finish_reason_without_done_is_finished_but_not_done() -> None:
    parser = ChatStreamParser()
    _feed_all(parser, [_chunk("a", finish="stop")])
    assert parser.finished and not parser.done
    parser.end()


@pytest.mark.parametrize(
    "line",
    [
        b"data: {not json\n\n",
        b"data:\n\n",
        b"data: [1, 2]\n\n",
        b'data: {"choices": {"delta": "x"}}\n\n',
        b'data: {"choices": [{"delta": {"content": 7}}]}\n\n',
        b'data: {"choices": [], "usage": {"prompt_tokens": "many"}}\n\n',
    ],
)
@pytest.mark.parametrize("first", [True, False])
def test_malformed_chunks_raise_malformed_stream(line: bytes, first: bool) -> None:
    parser = ChatStreamParser()
    if not first:  # the rest of a read takes the one-parse path
        assert _feed_all(parser, [_chunk("a")]) == [["a"]]
    with pytest.raises(MalformedStream):
        _feed_all(parser, [line + _chunk("b")])


def test_an_error_object_in_the_stream_is_an_upstream_error_with_its_detail() -> None:
    parser = ChatStreamParser()
    with pytest.raises(UpstreamReportedError) as raised:
        _feed_all(parser, [_chunk("a") + b'data: {"error": {"message": "overloaded"}}\n\n'])
    assert raised.value.detail == {"message": "overloaded"}
    assert raised.value.code == "upstream_error"


def test_an_empty_body_ended_early() -> None:
    parser = ChatStreamParser()
    assert _feed_all(parser, [b""]) == []
    with pytest.raises(EndedEarly):
        parser.end()


@pytest.mark.parametrize(
    "bad", [b'data: {"error": {"message": "x"}}\n\n', b"data: {not json\n\n", b"data:\n\n"]
)
def test_pieces_before_a_failure_in_the_same_read_are_delivered(bad: bytes) -> None:
    parser = ChatStreamParser()
    delivered: list[list[str]] = []
    with pytest.raises(UpstreamError):
        for batch in parser.feed(_chunk("a") + _chunk("b") + _chunk("c") + bad + _chunk("d")):
            delivered.append(batch)
    assert delivered == [["a"], ["b", "c"]]
