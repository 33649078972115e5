"""A small OpenAI-compatible chat server on 127.0.0.1, written on raw asyncio streams.

It answers `GET /v1/models` and streaming `POST /v1/chat/completions`. What it does is steered
by a directive inside the user's text, so that one server covers every case:

- no directive: streams the text back in word-sized pieces, prefixed with "T:";
- `[[pieces:<json list>]]`: streams exactly these pieces;
- `[[error:500]]`, `[[error:429]]` (with `Retry-After: 7`): fails before the stream;
- `[[drop:N]]`: sends N pieces, then drops the connection;
- `[[hang]]`: never answers; `[[close]]`: closes the connection without answering;
- `[[stall:N]]`: sends N pieces, then goes silent;
- `[[gzip]]`: the whole answer gzip-compressed (`Content-Encoding: gzip`);
- `[[garbage:N]]`: sends N pieces, a line that is not JSON, then the rest as usual;
- `[[linger]]`: streams normally up to `[DONE]`, then never ends the HTTP body;
- `[[slow:TAG:N:SECONDS]]`: N pieces, SECONDS apart; when the client closes the connection,
  `closed[TAG]` is set.
- `[[big:TAG:N:SIZE]]`: N pieces of SIZE characters, as fast as the client takes them;
  `closed[TAG]` is set when the client closes the connection before the end;
- `[[errevent:N]]`: N pieces, then an `error` object inside the stream.

`fail` (or `--fail` standalone) makes every chat request fail the same way, whatever its text,
as a broken upstream does: `refuse` (500), `rate_limit` (429), `close`, `hang` (no answer),
`errevent` (an `error` object before any piece), `drop` (two pieces, then the connection
dropped). Its model list still answers, unless `fail` is
`down`: then every request, the model list too, is answered 503. `GET /fake/stats` answers
`{"chat_requests": N}`.

In benchmark mode (`python -m tests.fake_openai`) every request streams the same pieces, and
`POST /fake/config {"pieces": N, "delay": S}` changes their number and spacing; with `--stamp`
each piece is instead the wall-clock time it was sent (`"1733312345.123456 "`), for measuring
delivery delays downstream. With `--echo` it answers as in the tests (the directives, or "T:"
and the words), each piece `--delay` seconds after the last: a deterministic model at a
model's pace.

Raw streams keep it cheap (it is also the benchmark's upstream) and let it see exactly when
a client closes its connection.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import threading
import time
from typing import Any

DIRECTIVE = re.compile(r"\[\[(\w+)(?::(.*))?\]\]", re.S)


def default_pieces(text: str) -> list[str]:
    return ["T:", *re.findall(r"\s*\S+", text)]


class FakeOpenAI:
    def __init__(self, *, pieces_per_request: int | None = None, piece: str = "tok ") -> None:
        self.port = 0
        self.requests: list[dict[str, Any]] = []
        # What addressed each chat request: {"path", "query", "headers"} (lower-case names).
        self.request_heads: list[dict[str, Any]] = []
        self.closed: dict[str, threading.Event] = {}
        self.models = ["fake-model"]
        # Benchmark mode: every request streams `pieces_per_request` copies of `piece`.
        self.pieces_per_request = pieces_per_request
        self.piece = piece
        self.delay_s = 0.0
        # Benchmark mode: each piece is the time it was sent.
        self.stamp = False
        # Every chat request fails this way (see the module's description); None: as directed.
        self.fail: str | None = None
        self.chat_requests = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def closed_event(self, tag: str) -> threading.Event:
        return self.closed.setdefault(tag, threading.Event())

    # Running in a thread of its own, so that tests and benchmarks can use any client.

    def start(self) -> FakeOpenAI:
        self._thread = threading.Thread(target=self._run, name="fake-openai", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake server did not start")
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._server = loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port, backlog=4096)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        loop.run_forever()
        loop.close()

    def stop(self) -> None:
        if self._loop is None:
            return
        loop = self._loop

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    async def serve_forever(self, port: int) -> None:
        """Run in the current event loop (the benchmark's separate process)."""
        server = await asyncio.start_server(self._handle, "127.0.0.1", port, backlog=4096)
        self.port = server.sockets[0].getsockname()[1]
        async with server:
            await server.serve_forever()

    # HTTP/1.1, just enough of it.

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length", "0"))
                body = await reader.readexactly(length) if length else b""
                path, _, query = path.partition("?")
                head_info = {"path": path, "query": query, "headers": headers}
                keep = await self._respond(method, path, body, reader, writer, head_info)
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _respond(
        self,
        method: str,
        path: str,
        body: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        head_info: dict[str, Any],
    ) -> bool:
        if self.fail == "down":
            self._json(writer, 503, {"error": {"message": "fake down"}})
            await writer.drain()
            return True
        if method == "GET" and path == "/fake/stats":
            self._json(writer, 200, {"chat_requests": self.chat_requests})
            await writer.drain()
            return True
        if method == "GET" and path.rstrip("/").endswith("/models"):
            data = {"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]}
            self._json(writer, 200, data)
            await writer.drain()
            return True
        if method == "POST" and path == "/fake/config" and self.pieces_per_request is not None:
            # Benchmark mode only: the benchmark changes the stream's shape between phases.
            config = json.loads(body)
            self.pieces_per_request = int(config.get("pieces", self.pieces_per_request))
            self.delay_s = float(config.get("delay", self.delay_s))
            self._json(writer, 200, {"pieces": self.pieces_per_request, "delay": self.delay_s})
            await writer.drain()
            return True
        if method != "POST" or not path.endswith("/chat/completions"):
            self._json(writer, 404, {"error": {"message": "not found"}})
            await writer.drain()
            return True
        request = json.loads(body)
        self.chat_requests += 1
        if self.pieces_per_request is None:  # kept for the tests, not in benchmark mode
            self.requests.append(request)
            self.request_heads.append(head_info)
        user = next(
            (m["content"] for m in reversed(request["messages"]) if m["role"] == "user"), ""
        )
        match = DIRECTIVE.search(user)
        mode, arg = (match.group(1), match.group(2) or "") if match else ("echo", "")
        if self.fail is not None:
            mode, arg = _FAILURES[self.fail]
        if mode == "error":
            status = int(arg)
            extra = {"Retry-After": "7"} if status == 429 else {}
            self._json(writer, status, {"error": {"message": f"fake {status}"}}, extra)
            await writer.drain()
            return True
        if mode == "close":
            return False
        if mode == "hang":
            await reader.read()  # until the client gives up
            return False
        if self.pieces_per_request is not None:
            self._stream_head(writer)
            return await self._bench_stream(writer)
        if mode == "pieces":
            pieces = json.loads(arg)
        else:
            text = DIRECTIVE.sub("", user)
            fence = text.split("\n", 1)[0]
            if fence.startswith("<<<TEXT"):
                text = text[len(fence) + 1 : text.rfind(fence) - 1]
            pieces = default_pieces(text)
        if mode != "gzip":
            self._stream_head(writer)
        if mode == "drop":
            for p in pieces[: int(arg)]:
                self._chunk(writer, _delta(p))
            await writer.drain()
            writer.transport.abort()
            return False
        if mode == "gzip":
            # The whole answer gzip-compressed, as a compressing proxy would send it.
            body = b"".join(_delta(p) for p in pieces) + b"data: [DONE]\n\n"
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
                % (len(packed := gzip.compress(body)), packed)
            )
            await writer.drain()
            return True
        if mode == "garbage":
            count = int(arg)
            for p in pieces[:count]:
                self._chunk(writer, _delta(p))
            self._chunk(writer, b"data: {not json\n\n")
            for p in pieces[count:]:
                self._chunk(writer, _delta(p))
            self._finish(writer, 5, len(pieces))
            await writer.drain()
            return True
        if mode == "stall":
            for p in pieces[: int(arg)]:
                self._chunk(writer, _delta(p))
            await writer.drain()
            await reader.read()
            return False
        if mode == "linger":
            for p in pieces:
                self._chunk(writer, _delta(p))
            self._chunk(writer, b"data: [DONE]\n\n")
            await writer.drain()
            await reader.read()
            return False
        if mode == "big":
            tag, count, size = arg.split(":")
            closed = self.closed_event(tag)
            try:
                for i in range(int(count)):
                    self._chunk(writer, _delta(str(i % 10) * int(size)))
                    await writer.drain()
            except ConnectionError:
                closed.set()
                return False
            self._finish(writer, 5, int(count))
            await writer.drain()
            return True
        if mode == "errevent":
            for p in pieces[: int(arg)]:
                self._chunk(writer, _delta(p))
            self._chunk(writer, b'data: {"error": {"message": "fake overload"}}\n\n')
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        if mode == "slow":
            tag, count, delay = arg.split(":")
            closed = self.closed_event(tag)
            for i in range(int(count)):
                self._chunk(writer, _delta(f"p{i} "))
                try:
                    await writer.drain()
                    if await asyncio.wait_for(reader.read(1), float(delay)) == b"":
                        closed.set()
                        return False
                except TimeoutError:
                    pass
                except ConnectionError:  # the close can show up in the write as well
                    closed.set()
                    return False
            self._finish(writer, 5, int(count))
            await writer.drain()
            return True
        for p in pieces:
            self._chunk(writer, _delta(p))
            if self.delay_s:  # at a model's pace (`--echo --delay`)
                await writer.drain()
                await asyncio.sleep(self.delay_s)
        self._finish(writer, 7, len(pieces))
        await writer.drain()
        return True

    async def _bench_stream(self, writer: asyncio.StreamWriter) -> bool:
        chunk = _delta(self.piece)
        for _ in range(self.pieces_per_request or 0):
            if self.stamp:
                chunk = _delta(f"{time.time():.6f} ")
            self._chunk(writer, chunk)
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            await writer.drain()
        self._finish(writer, 10, self.pieces_per_request or 0)
        await writer.drain()
        return True

    @staticmethod
    def _json(
        writer: asyncio.StreamWriter, status: int, data: Any, extra: dict[str, str] | None = None
    ) -> None:
        body = json.dumps(data).encode()
        head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
        head += f"Content-Length: {len(body)}\r\n"
        for k, v in (extra or {}).items():
            head += f"{k}: {v}\r\n"
        writer.write(head.encode() + b"\r\n" + body)

    @staticmethod
    def _stream_head(writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )

    @staticmethod
    def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _finish(self, writer: asyncio.StreamWriter, prompt: int, completion: int) -> None:
        stop = {
            "id": "c",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        usage = {
            "id": "c",
            "object": "chat.completion.chunk",
            "choices": [],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }
        self._chunk(writer, b"data: " + json.dumps(stop).encode() + b"\n\n")
        self._chunk(writer, b"data: " + json.dumps(usage).encode() + b"\n\n")
        self._chunk(writer, b"data: [DONE]\n\n")
        writer.write(b"0\r\n\r\n")


_FAILURES = {
    "refuse": ("error", "500"),
    "rate_limit": ("error", "429"),
    "close": ("close", ""),
    "hang": ("hang", ""),
    "errevent": ("errevent", "0"),
    "drop": ("drop", "2"),  # breaks off after its first pieces
}


def _delta(text: str) -> bytes:
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def main() -> None:
    """Run standalone (the benchmark's upstream): every request streams the same pieces."""
    import argparse

    import uvloop

    parser = argparse.ArgumentParser(description="fake OpenAI-compatible streaming server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pieces", type=int, default=283)
    parser.add_argument("--piece", default="tok ")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between pieces")
    parser.add_argument("--stamp", action="store_true", help="each piece: the time it was sent")
    parser.add_argument(
        "--echo", action="store_true", help="the test suite's echo ('T:' and the words), paced"
    )
    parser.add_argument("--fail", choices=[*_FAILURES, "down"], help="every request fails so")
    parser.add_argument("--model", default="fake-model", help="the model it lists")
    args = parser.parse_args()
    fake = FakeOpenAI(pieces_per_request=None if args.echo else args.pieces, piece=args.piece)
    fake.delay_s = args.delay
    fake.stamp = args.stamp
    fake.fail = args.fail
    fake.models = [args.model]
    uvloop.run(fake.serve_forever(args.port))


if __name__ == "__main__":
    main()
