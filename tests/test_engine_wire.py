"""What a worker sends the engine (a script segment's context and glossary go with its text),
and what it makes of the answer: the loop guard's verdict reaches the record."""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dragoman.engine import wire
from dragoman.engine.client import EngineClient
from dragoman.engine.supervisor import status_path
from tests.conftest import ServerThread

# What it checks does not depend on the database: CI's second pass leaves it out.
pytestmark = pytest.mark.once


async def _sent_messages(**kw: Any) -> dict[str, Any]:
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def engine(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(wire.encode({"hello": {"chat": False, "pid": 1}}))
        message = wire.decode(await reader.readline())
        await received.put(message)
        writer.write(wire.encode({"id": message["go"], "end": [1, 1]}))
        await writer.drain()
        await reader.read()  # until the client closes
        writer.close()
        await writer.wait_closed()

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "engine.sock")
        server = await asyncio.start_unix_server(engine, path=path)
        client = EngineClient(path)
        try:
            items = [item async for item in client.translate("Hi.", "en", "ko", **kw)]
            assert items == [("usage", (1, 1, None))]
            return await received.get()
        finally:
            await client.aclose()
            server.close()
            await server.wait_closed()


def test_context_and_glossary_reach_the_engine() -> None:
    message = asyncio.run(
        _sent_messages(context=[("Hello.", "안녕하세요.")], glossary=[("Hi", "하이")])
    )
    assert message["context"] == [["Hello.", "안녕하세요."]]
    assert message["glossary"] == [["Hi", "하이"]]
    assert (message["text"], message["source"], message["target"]) == ("Hi.", "en", "ko")


def test_a_plain_translation_sends_neither() -> None:
    message = asyncio.run(_sent_messages())
    assert "context" not in message and "glossary" not in message


class FakeEngine:
    """An engine on a Unix socket, in a thread of its own: it answers every request with one
    piece and the loop guard's verdict `rep`, as the real engine's scheduler reports it."""

    def __init__(self, path: str, rep: str | None) -> None:
        self.path, self.rep = path, rep
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)
        # What dragoman's supervisor writes beside the socket for its workers.
        status_path(path).write_text(json.dumps({"state": "ready", "reason": None}))

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_unix_server(self._serve, path=self.path)
        )
        self.ready.set()
        self.loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(wire.encode({"hello": {"chat": False, "pid": 1}}))
        while line := await reader.readline():
            message = wire.decode(line)
            if "go" in message:
                key = message["go"]
                writer.write(wire.encode({"id": key, "q": 0}))
                writer.write(wire.encode({"id": key, "p": "Il fait très froid."}))
                writer.write(wire.encode({"id": key, "end": [40, 7], "rep": self.rep}))
                await writer.drain()
        writer.close()
        await writer.wait_closed()

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def engine_socket(tmp_path: Path) -> Iterator[Callable[[str | None], str]]:
    engines: list[FakeEngine] = []

    def make(rep: str | None) -> str:
        path = str(tmp_path / f"engine-{len(engines)}.sock")
        engines.append(FakeEngine(path, rep))
        return path

    yield make
    for engine in engines:
        engine.stop()


@pytest.mark.parametrize("rep", ["redecoded", "cut", None])
def test_the_loop_guard_s_verdict_is_in_the_record(
    engine_socket: Callable[[str | None], str],  # first: the server stops before its engine
    make_server: Callable[..., ServerThread],
    rep: str | None,
) -> None:
    server = make_server(provider="local", engine_socket=engine_socket(rep))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        answer = client.post(
            "/v1/translations",
            json={"text": "It is very cold.", "source_lang": "en", "target_lang": "fr",
                  "stream": False},
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
        record = answer.json()
        assert record["translation"] == "Il fait très froid."
        assert record["repetition"] == rep
        stored = client.get(f"/v1/translations/{record['id']}").json()
        assert stored["repetition"] == rep
        assert stored["usage"] == {"prompt_tokens": 40, "completion_tokens": 7}
