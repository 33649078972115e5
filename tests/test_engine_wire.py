"""What a worker sends the engine: a script segment's context and glossary go with its text."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import pytest

from dragoman.engine import wire
from dragoman.engine.client import EngineClient

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
            assert items == [("usage", (1, 1))]
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
