"""Scripts on the embedded model, for real: a few short segments and a small subtitle file."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import httpx
import pytest
import srt

from tests.conftest import ServerThread

# What it checks does not depend on the database: CI's second pass leaves it out.
pytestmark = pytest.mark.once

HANGUL = re.compile(r"[\uac00-\ud7a3]")
KANA_KANJI = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
FILM = """1
00:00:01,000 --> 00:00:02,000
Good morning.

2
00:00:03,000 --> 00:00:05,500
Thank you very much.
"""


def local_server(make_server: Callable[..., ServerThread]) -> ServerThread:
    server = make_server(provider="local", local_threads=2)
    deadline = time.monotonic() + 120
    while httpx.get(f"{server.url}/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the model did not load"
        time.sleep(0.1)
    return server


def test_segments_and_subtitles_on_the_embedded_model(
    make_server: Callable[..., ServerThread],
) -> None:
    server = local_server(make_server)
    with httpx.Client(base_url=server.url, timeout=120) as client:
        client.put(
            "/v1/scripts/local-1/glossary",
            json={"entries": [{"source": "tea", "target": "차", "target_lang": "ko"}]},
        )
        records = []
        for text in ("I like green tea.", "Thank you very much."):
            response = client.post(
                "/v1/scripts/local-1/segments",
                json={"text": text, "target_lang": "ko", "source_lang": "en", "stream": False},
            )
            assert response.status_code == 200, response.text
            records.append(response.json())
        assert [r["segment_index"] for r in records] == [0, 1]
        assert all(r["status"] == "succeeded" and HANGUL.search(r["translation"]) for r in records)
        assert isinstance(records[0]["glossary_misses"], list)  # the entry applied
        assert records[1]["glossary_misses"] is None

        done = client.post(
            "/v1/subtitles",
            json={"content": FILM, "target_lang": "ja", "source_lang": "en", "stream": False},
        ).json()
        cues = list(srt.parse(done["content"]))
        assert [(c.index, c.start, c.end) for c in cues] == [
            (c.index, c.start, c.end) for c in srt.parse(FILM)
        ]
        assert all(KANA_KANJI.search(c.content) for c in cues), done["content"]


def test_glossary_terms_are_kept_by_the_embedded_model(
    make_server: Callable[..., ServerThread],
) -> None:
    # Without glossary steering this model writes neither term here (the 11th segment of the
    # lecture in bench.quality_script).
    server = local_server(make_server)
    entries = [
        {"source": "sea level", "target": "해수면", "target_lang": "ko"},
        {"source": "Tidewatch", "target": "타이드워치", "target_lang": "ko"},
        {"source": "Tidewatch", "target": "Tidewatch", "target_lang": "fr"},
        {"source": "sea level", "target": "niveau de la mer", "target_lang": "fr"},
    ]
    text = "Each sensor sends its reading of the sea level to Tidewatch by radio."
    with httpx.Client(base_url=server.url, timeout=120) as client:
        client.put("/v1/scripts/local-terms/glossary", json={"entries": entries})
        for lang in ("ko", "fr"):
            response = client.post(
                "/v1/scripts/local-terms/segments",
                json={"text": text, "target_lang": lang, "source_lang": "en", "stream": False},
            )
            record = response.json()
            assert record["glossary_misses"] == [], record["translation"]
