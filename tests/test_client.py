"""The Python client against a real running service."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from dragoman.client import (
    AsyncClient,
    Client,
    ServerUnreachable,
    TextTooLong,
    UnsupportedLanguage,
    UpstreamError,
    UpstreamRateLimited,
)
from tests.conftest import ServerThread
from tests.fake_openai import default_pieces
from tests.helpers import pieces_directive


def test_stream_joins_to_the_record(server: ServerThread) -> None:
    pieces = ["Hel", "lo\n", "\u2028", " wörld 😀", "\r\n", "end"]
    with Client(server.url) as client:
        got = list(client.stream(pieces_directive(pieces), "ko", script_id="cli-t"))
        assert got == pieces
        record = client.last_record
        assert record is not None and record["translation"] == "".join(got)
        assert client.get(record["id"]) == record
        assert [r["id"] for r in client.history("cli-t")] == [record["id"]]


def test_translate_and_history_pages(server: ServerThread) -> None:
    with Client(server.url) as client:
        ids = [client.translate(f"n{i} words", "fr", script_id="pages")["id"] for i in range(5)]
        history = client.history("pages")  # every page
        assert [r["id"] for r in history] == list(reversed(ids))
        assert [r["id"] for r in client.history("pages", limit=2)] == list(reversed(ids))[:2]
        assert history[0]["translation"] == "".join(default_pieces("n4 words"))


def test_typed_errors(server: ServerThread) -> None:
    with Client(server.url) as client:
        with pytest.raises(UnsupportedLanguage):
            client.translate("hi", "not a tag")
        with pytest.raises(TextTooLong) as too_long:
            list(client.stream("x" * 10_001, "ko"))
        assert too_long.value.status == 413
        with pytest.raises(UpstreamRateLimited) as limited:
            client.translate("x [[error:429]]", "ko")
        assert limited.value.retry_after == 7
        with pytest.raises(UpstreamError):  # in-band, after the first pieces
            list(client.stream("a b c [[drop:2]]", "ko"))
    with Client("http://127.0.0.1:9") as client, pytest.raises(ServerUnreachable):
        client.translate("hi", "ko")


def test_async_client(server: ServerThread) -> None:
    async def run() -> None:
        async with AsyncClient(server.url) as client:
            got = [piece async for piece in client.stream("one two", "ja", script_id="async")]
            assert "".join(got) == "T:one two"
            record = await client.translate("three", "ja", script_id="async")
            assert record["status"] == "succeeded"
            assert len(await client.history("async")) == 2

    asyncio.run(run())


def test_importing_the_client_imports_no_server() -> None:
    code = (
        "import sys, dragoman.client; "
        "heavy = ('fastapi', 'llama_cpp', 'sqlalchemy', 'openai'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
