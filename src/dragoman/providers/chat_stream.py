"""Reading an OpenAI-compatible chat completion stream: bytes in, text pieces out. No I/O.

The network read hands every read's bytes to `ChatStreamParser.feed`, which yields the batches
of text pieces that the read completed. Two tricks keep it cheap under load:

- the first piece of the stream is yielded alone, before the rest of its read is parsed, so
  that it reaches the client as early as possible;
- the rest of a read is parsed by one `orjson.loads` of all its chunks joined into a JSON
  array, instead of one call per chunk.

Errors are typed: `MalformedStream` (not the SSE/JSON shape of a chat stream, or ended before
its last chunk) and `UpstreamReportedError` (an `error` object inside the stream). Both are
`UpstreamError`s, which is what the client sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from dragoman.errors import UpstreamError
from dragoman.records.record import Usage


class MalformedStream(UpstreamError):
    default_message = "The translation model sent a malformed stream."


class EndedEarly(MalformedStream):
    default_message = "The translation model's stream ended early."


class UpstreamReportedError(UpstreamError):
    default_message = "The translation model reported an error."

    def __init__(self, detail: object) -> None:
        super().__init__()
        self.detail = detail  # the upstream's error object, for the log only


_DONE = b"[DONE]"


class ChatStreamParser:
    """The state of one stream: the unfinished line, usage, and whether it has finished.

    `finished` is set when a choice carries a `finish_reason` or `data: [DONE]` arrived;
    `done` when `data: [DONE]` arrived (nothing after it is read). `usage` holds the last
    usage chunk's counts.
    """

    __slots__ = ("_rest", "done", "finished", "sent_any", "usage")

    def __init__(self) -> None:
        self._rest = b""
        self.done = False
        self.finished = False
        self.sent_any = False
        self.usage: Usage | None = None

    def feed(self, data: bytes) -> Iterator[list[str]]:
        """The batches of pieces that `data` completes (never an empty batch).

        Consume the iterator fully before the next `feed`; it is lazy so that the caller can
        send the first piece before the rest of the read is parsed.
        """
        if self.done:
            return
        lines = (self._rest + data).split(b"\n") if self._rest else data.split(b"\n")
        self._rest = lines.pop()
        payloads = [line[5:].strip() for line in lines if line.startswith(b"data:")]
        if _DONE in payloads:
            payloads = payloads[: payloads.index(_DONE)]
            # [DONE] ends the stream even from servers that send no finish_reason.
            self.done = self.finished = True
        start = 0
        if not self.sent_any:
            batch: list[str] = []
            while start < len(payloads) and not batch:
                self._read_chunk(_loads(payloads[start]), batch)
                start += 1
            if batch:
                self.sent_any = True
                yield batch
        if start < len(payloads):
            rest = payloads[start:]
            batch = []
            try:
                try:
                    parsed = _loads(b"[" + b",".join(rest) + b"]")
                    if len(parsed) != len(rest):  # an empty or a doubled payload
                        raise MalformedStream()
                except MalformedStream:
                    # One bad payload: the good ones before it still count.
                    parsed = _loads_until_bad(rest)
                for chunk in parsed:
                    self._read_chunk(chunk, batch)
            except UpstreamError:
                # The pieces before the failure are delivered, then the failure.
                if batch:
                    self.sent_any = True
                    yield batch
                raise
            if batch:
                self.sent_any = True
                yield batch

    def end(self) -> None:
        """The body has ended: raise unless the stream had finished."""
        if not self.finished:
            raise EndedEarly()

    def _read_chunk(self, chunk: Any, batch: list[str]) -> None:
        if type(chunk) is not dict:
            raise MalformedStream()
        if "error" in chunk:
            raise UpstreamReportedError(chunk["error"])
        usage = chunk.get("usage")
        if usage:
            try:
                self.usage = Usage(
                    int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
                )
            except (AttributeError, TypeError, ValueError) as exc:
                raise MalformedStream() from exc
        choices = chunk.get("choices") or []
        if type(choices) is not list:
            raise MalformedStream()
        for choice in choices:
            if type(choice) is not dict:
                raise MalformedStream()
            delta = choice.get("delta") or {}
            if type(delta) is not dict:
                raise MalformedStream()
            content = delta.get("content")
            if content:
                if type(content) is not str:
                    raise MalformedStream()
                batch.append(content)
            if choice.get("finish_reason"):
                self.finished = True


def _loads_until_bad(payloads: list[bytes]) -> Iterator[Any]:
    for payload in payloads:
        yield _loads(payload)


def _loads(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise MalformedStream() from exc
