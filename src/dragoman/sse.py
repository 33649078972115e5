"""Server-Sent Events encoding that survives any text.

Two encodings of the same stream of pieces:

- `RawTextEncoder` (the compatible `POST /translate`): each piece is one event whose data is the
  raw text. A line break inside a field would end it, so a multi-line piece becomes several
  `data:` lines, which every compliant client joins back with LF (CR and CRLF arrive as LF, a
  limit of raw SSE data). Only CR, LF and CRLF end lines in SSE, so U+2028, form feeds and the
  like travel as they are.
- `JsonEventEncoder` (`/v1/translations`): every event carries an `id:`, a name and JSON data,
  which never contains a raw line break; characters that naive line splitters such as
  `str.splitlines()` break on are escaped too, so even sloppy clients get the exact text.
"""

from __future__ import annotations

from typing import Any

import orjson

PING = b": ping\n\n"
DONE = b"data: [DONE]\n\n"
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


class RawTextEncoder:
    """`data: <text>` events; keeps the state needed for a CRLF split across two pieces."""

    def __init__(self) -> None:
        self._after_cr = False

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


class JsonEventEncoder:
    """`id:` / `event:` / `data: <json>` events with ids counted from 0 per response."""

    def __init__(self) -> None:
        self._next_id = 0

    def event(self, name: str, data: Any) -> bytes:
        event_id = self._next_id
        self._next_id += 1
        return b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, name.encode(), json_bytes(data))

    def delta(self, text: str) -> bytes:
        return self.event("delta", {"text": text})
