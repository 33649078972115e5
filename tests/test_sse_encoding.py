"""Nasty pieces survive both encodings, read by a spec-compliant client (httpx-sse)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from httpx_sse._decoders import SSEDecoder, SSELineDecoder

from dragoman.events import Delta
from dragoman.wire import CompatWire, V1Wire
from tests.conftest import ServerThread
from tests.helpers import pieces_directive, raw_events, raw_text, v1_events, v1_text

NASTY = [
    "\n",
    "\r\n",
    "\r",
    "a\nb",
    "line1\r\nline2\rline3",
    "\u2028",
    "x\u2029y",
    "\x0c",
    "\x85",
    "\x1c\x1d\x1e",
    "data: x",
    ": x",
    "event: error",
    "id: 99",
    "  leading spaces",
    " ",
    "trailing\n",
    "😀👍🏽 𝄞 𠜎",
    "é" * 5000 + "\n" + "z" * 70000,
    "",
    "end",
]


def _decode(stream: bytes) -> list[str]:
    lines = SSELineDecoder()
    decoder = SSEDecoder()
    out = []
    for line in [*lines.decode(stream.decode()), *lines.flush()]:
        event = decoder.decode(line)
        if event is not None:
            out.append(event.data)
    event = decoder.decode("")
    if event is not None:
        out.append(event.data)
    return out


def _as_lf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def test_raw_encoder_round_trip() -> None:
    encoder = CompatWire()
    stream = b"".join(encoder.piece(p) for p in NASTY)
    assert "".join(_decode(stream)) == _as_lf("".join(NASTY))
    assert encoder.piece("") == b""


def test_raw_encoder_crlf_split_across_pieces() -> None:
    encoder = CompatWire()
    stream = encoder.piece("a\r") + encoder.piece("\nb")
    assert "".join(_decode(stream)) == "a\nb"


def test_json_encoder_escapes_what_splitlines_would_break() -> None:
    chunk = V1Wire().encode(Delta(["a\u2028b\x85c\u2029"]))
    assert chunk.decode().splitlines() == chunk.decode().split("\n")[:-1]
    assert json.loads(_decode(chunk)[0]) == {"text": "a\u2028b\x85c\u2029"}


@pytest.mark.parametrize("endpoint", ["raw", "v1"])
def test_nasty_pieces_end_to_end(make_server: Callable[..., ServerThread], endpoint: str) -> None:
    server = make_server(max_text_chars=200_000)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        _check_nasty_pieces(client, endpoint)


def _check_nasty_pieces(client: httpx.Client, endpoint: str) -> None:
    pieces = list(NASTY)
    text = pieces_directive(pieces)
    if endpoint == "raw":
        response, events = raw_events(client, {"lang": "ko", "message": text})
        assert response.status_code == 200
        got = raw_text(events)
        assert got == _as_lf("".join(pieces))
        # Empty pieces are not sent: one event per non-empty piece, then [DONE].
        assert len(events) == len([p for p in pieces if p]) + 1
    else:
        response, events = v1_events(client, {"text": text, "target_lang": "ko"})
        assert response.status_code == 200
        got = v1_text(events)
        assert got == "".join(pieces)
        assert [int(e.id) for e in events] == list(range(len(events)))
        done = json.loads(events[-1].data)
        assert events[-1].event == "done" and done["translation"] == "".join(pieces)
    record = client.get(f"/v1/translations/{response.headers['x-translation-id']}").json()
    assert record["translation"] == "".join(pieces)
    assert record["status"] == "succeeded"
