"""The one streaming response on its own, driven as an ASGI server drives it: its gate, its
in-band errors, keep-alives, a client that leaves or stops reading, and a shutdown."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from typing import Any

import pytest
from starlette.types import Message

from dragoman.api.event_stream import EventStreamResponse
from dragoman.errors import DragomanError, QueueFull, ShuttingDown, UpstreamError
from dragoman.events import Delta, Done, Event, Failed, Frames, Started
from dragoman.records.record import Record
from dragoman.registry import StreamRegistry
from dragoman.wire import PING, CompatWire, JsonAnswer, V1Wire, Wire


class FedStream:
    """A stream whose events the test puts; it ends with `None`."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.released = 0
        self.aborted: DragomanError | None = None

    def put(self, *events: Event | None) -> None:
        for event in events:
            self.queue.put_nowait(event)

    async def events(self) -> AsyncGenerator[Event, None]:
        try:
            while (event := await self.queue.get()) is not None:
                yield event
        finally:
            self.closed.set()

    def abort(self, error: DragomanError) -> None:
        self.aborted = error
        self.put(Failed(error))

    def release(self) -> None:
        self.released += 1


class Client:
    """The ASGI channel of one request: what the response sent, and a way to leave."""

    def __init__(self, *, stuck: bool = False) -> None:
        self.sent: list[Message] = []
        self.news = asyncio.Event()
        self._left = asyncio.Event()
        self._stuck = stuck  # a client that takes nothing: every body send blocks

    async def receive(self) -> Message:
        await self._left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self._stuck and message["type"] == "http.response.body":
            await asyncio.Event().wait()
        self.sent.append(message)
        self.news.set()

    def leave(self) -> None:
        self._left.set()

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.sent[0]["headers"]}

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])

    async def until(self, check: Any) -> None:
        async with asyncio.timeout(10):
            while not check():
                self.news.clear()
                await self.news.wait()


def _record() -> Record:
    return Record("hi", "fr", "en", None, "fake", "fake-model", id="r1", translation="salut")


def _response(
    stream: FedStream, wire: Wire, registry: StreamRegistry | None = None, **kw: Any
) -> EventStreamResponse:
    return EventStreamResponse(
        stream,  # type: ignore[arg-type]
        wire,
        registry or StreamRegistry(),
        keepalive_s=kw.pop("keepalive_s", 30),
        send_timeout_s=kw.pop("send_timeout_s", 30),
        headers={"X-Translation-Id": "r1"},
        **kw,
    )


async def _serve(response: EventStreamResponse, client: Client) -> asyncio.Task[None]:
    return asyncio.create_task(response({"type": "http"}, client.receive, client.send))


async def test_a_failure_before_the_first_event_is_a_real_status() -> None:
    stream, client = FedStream(), Client()
    stream.put(Failed(UpstreamError("down")))
    await (await _serve(_response(stream, V1Wire()), client))
    assert client.status == 502
    assert client.headers["content-type"] == "application/json"
    assert client.headers["x-translation-id"] == "r1"  # a record was stored to point at
    assert json.loads(client.body)["error"]["code"] == "upstream_error"
    assert stream.released >= 1


async def test_a_refusal_with_no_record_does_not_name_one() -> None:
    stream, client = FedStream(), Client()
    stream.put(Failed(QueueFull(headers={"Retry-After": "5"}), recorded=False))
    await (await _serve(_response(stream, V1Wire()), client))
    assert (client.status, client.headers.get("retry-after")) == (503, "5")
    assert "x-translation-id" not in client.headers


async def test_the_status_waits_for_the_first_event_then_failures_are_in_band() -> None:
    stream, client = FedStream(), Client()
    task = await _serve(_response(stream, V1Wire()), client)
    stream.put(Started("r1", "fake", "m"))
    await asyncio.sleep(0.05)
    assert client.sent == []  # a start alone sends nothing: it goes with the next event
    stream.put(Delta(["Bon"]), Failed(UpstreamError("broke")))
    await task
    assert client.status == 200
    assert client.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert client.headers["cache-control"] == "no-cache"
    assert client.sent[1]["body"].startswith(b"id: 0\nevent: start\n")
    assert b"id: 1\nevent: delta\n" in client.sent[1]["body"]
    assert client.sent[-1]["body"].startswith(b"id: 2\nevent: error\n")
    assert client.sent[-1]["more_body"] is False


async def test_the_compatible_stream_ends_with_done() -> None:
    stream, client = FedStream(), Client()
    stream.put(Started("r1", "fake", "m"), Delta(["a\nb"]), Done(_record()))
    await (await _serve(_response(stream, CompatWire()), client))
    assert client.body == b"data: a\ndata: b\n\ndata: [DONE]\n\n"


async def test_a_json_answer_is_the_final_event_alone() -> None:
    stream, client = FedStream(), Client()
    stream.put(Started("r1", "fake", "m"), Delta(["salut"]), Done(_record()))
    await (await _serve(_response(stream, JsonAnswer()), client))
    assert client.status == 200 and client.headers["content-type"] == "application/json"
    assert json.loads(client.body)["translation"] == "salut"
    assert len(client.sent) == 2


async def test_idle_streams_get_keep_alives_after_the_first_event_only() -> None:
    stream, client = FedStream(), Client()
    task = await _serve(_response(stream, V1Wire(), keepalive_s=0.05), client)
    stream.put(Started("r1", "fake", "m"), Delta(["a"]))
    await client.until(lambda: any(m.get("body") == PING for m in client.sent))
    pings_before_start = [m for m in client.sent[:2] if m.get("body") == PING]
    assert pings_before_start == []
    stream.put(None)
    await task


async def test_a_listener_is_answered_at_once_without_the_gate() -> None:
    stream, client = FedStream(), Client()
    task = await _serve(_response(stream, V1Wire(), gate=False), client)
    await client.until(lambda: client.sent)
    assert client.status == 200
    stream.put(Frames([b"id: 7\nevent: delta\ndata: {}\n\n"]), None)
    await task
    assert client.body == b"id: 7\nevent: delta\ndata: {}\n\n"


async def test_a_client_that_leaves_stops_the_stream() -> None:
    stream, client = FedStream(), Client()
    task = await _serve(_response(stream, V1Wire()), client)
    stream.put(Started("r1", "fake", "m"), Delta(["a"]))
    await client.until(lambda: client.sent)
    client.leave()
    await asyncio.wait_for(task, 5)
    assert stream.closed.is_set() and stream.released >= 1


async def test_a_client_that_reads_nothing_is_dropped() -> None:
    stream, client = FedStream(), Client(stuck=True)
    task = await _serve(_response(stream, V1Wire(), keepalive_s=0.05, send_timeout_s=0.2), client)
    stream.put(Started("r1", "fake", "m"), Delta(["a"]))
    await asyncio.wait_for(task, 5)
    assert stream.closed.is_set()


async def test_a_shutdown_ends_open_streams_in_band() -> None:
    registry = StreamRegistry()
    stream, client = FedStream(), Client()
    task = await _serve(_response(stream, V1Wire(), registry), client)
    stream.put(Started("r1", "fake", "m"), Delta(["a"]))
    await client.until(lambda: client.sent)
    assert registry.active == {stream}
    registry.abort_all(ShuttingDown())
    await asyncio.wait_for(task, 5)
    assert isinstance(stream.aborted, ShuttingDown)
    assert b"event: error" in client.sent[-1]["body"] and b"shutting_down" in client.body
    assert registry.active == set()


@pytest.mark.parametrize("raised", [UpstreamError("x"), RuntimeError("bug")])
async def test_a_stream_that_raises_still_answers(raised: Exception) -> None:
    class Raising(FedStream):
        async def events(self) -> AsyncGenerator[Event, None]:
            raise raised
            yield  # an async generator

    client = Client()
    await (await _serve(_response(Raising(), V1Wire()), client))
    assert client.status == (502 if isinstance(raised, UpstreamError) else 500)
