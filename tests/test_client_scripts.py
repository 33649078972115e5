"""The Python client's script, glossary, subtitle and export calls, sync and async."""

from __future__ import annotations

import asyncio

import pytest
import srt

from dragoman.client import AsyncClient, Client, GlossaryEntry, InvalidRequest, NotFound
from tests.conftest import ServerThread
from tests.helpers import pieces_directive
from tests.test_script_segments import new_script
from tests.test_subtitles import SRT

ENTRY: GlossaryEntry = {"source": "dragoman", "target": "통역사", "target_lang": "ko"}


def test_client_scripts(server: ServerThread) -> None:
    script = new_script()
    with Client(server.url) as client:
        assert client.glossary(script) == []
        assert client.set_glossary(script, [ENTRY]) == [ENTRY]
        assert client.glossary(script) == [ENTRY]
        text = pieces_directive(["통역사 ", "왔다"]) + " dragoman"
        pieces = list(client.stream_segment(script, text, "ko"))
        assert pieces == ["통역사 ", "왔다"]
        streamed = client.last_record
        assert streamed is not None
        assert (streamed["segment_index"], streamed["glossary_misses"]) == (0, [])
        record = client.translate_segment(script, "The dragoman left.", "ko")
        assert (record["segment_index"], record["glossary_misses"]) == (1, ["dragoman"])
        info = client.script(script)
        assert (info["script_id"], info["segments"], info["target_langs"]) == (script, 2, ["ko"])
        assert client.export(script, "ko") == "통역사 왔다\nT:The dragoman left.\n"
        with pytest.raises(InvalidRequest):
            client.export(script, "ko", "srt")
        with pytest.raises(NotFound):
            client.script(new_script())

        done = client.subtitles(SRT, "ko", script_id=script + "-film")
        assert done["script_id"] == script + "-film" and done["format"] == "srt"
        events = list(client.stream_subtitles(SRT, "fr", format="srt"))
        names = [name for name, _ in events]
        assert names[0] == "start" and names[-1] == "done" and names.count("cue") == 3
        srt_export = client.export(script + "-film", "ko", "srt")
        assert [c.content for c in srt.parse(srt_export)] == [
            c.content for c in srt.parse(done["content"])
        ]
        with pytest.raises(InvalidRequest):
            list(client.stream_subtitles("not subtitles", "ko"))


def test_async_client_scripts(server: ServerThread) -> None:
    script = new_script()

    async def run() -> None:
        async with AsyncClient(server.url) as client:
            assert {"tag": "ko", "name": "Korean"} in await client.languages()
            assert await client.set_glossary(script, [ENTRY]) == [ENTRY]
            assert await client.glossary(script) == [ENTRY]
            pieces = [p async for p in client.stream_segment(script, "Hello dragoman", "ko")]
            assert "".join(pieces) == "T:Hello dragoman"
            assert client.last_record is not None
            assert client.last_record["glossary_misses"] == ["dragoman"]
            record = await client.translate_segment(script, "Again.", "ko")
            assert record["segment_index"] == 1
            assert (await client.script(script))["segments"] == 2
            assert await client.export(script, "ko") == "T:Hello dragoman\nT:Again.\n"
            done = await client.subtitles(SRT, "ko")
            assert len(list(srt.parse(done["content"]))) == 3
            names = [name async for name, _ in client.stream_subtitles(SRT, "ko")]
            assert names[-1] == "done"

    asyncio.run(run())
