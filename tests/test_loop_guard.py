"""The embedded engine's loop guard and its languages' vocabulary, on the real model: a
continuation that loops is caught before its loop reaches the client, repetition that the
source has goes through untouched, and a translation writes only its target's scripts."""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import Iterator
from typing import Any

import pytest

from dragoman.engine.decoder import Decoder
from dragoman.engine.process import Engine
from dragoman.engine.scheduler import Request, Scheduler
from dragoman.engine.units import Unit
from dragoman.engine.vocabulary import (
    HAN,
    HANGUL,
    KANA,
    bundled_model_path,
    languages_model,
    token_group,
)

pytestmark = pytest.mark.once

# A prompt whose continuation this model repeats until its token limit.
LOOPING = "English: Is it her?\nFrench: Est-ce elle" + "-t-elle" * 8
SENTENCES = [
    "I forgot my umbrella at the restaurant.",
    "우산을 식당에 두고 왔어요.",
    "傘をレストランに忘れました。",
    "我把伞忘在餐厅了。",
    "Où est la gare ? 12,50 €",
    "¿Dónde está la estación?",
]
# A piece with a letter, three or more times in a row.
THRICE = re.compile(r"(.{2,40}?)\1{2,}")


@pytest.fixture(scope="module")
def decoder() -> Iterator[Decoder]:
    d = Decoder(str(languages_model(bundled_model_path())), threads=2, parallel=2, n_ctx=4096)
    yield d
    d.close()


def engine(decoder: Decoder, *, loop_guard: bool) -> Engine:
    scheduler = Scheduler(decoder, parallel=2, queue_max=8, loop_guard=loop_guard)
    return Engine(scheduler, None, groups=decoder.groups)


def run(engine: Engine, units: list[Unit], target: str) -> tuple[str, dict[str, Any]]:
    """The text the client gets, and the request's end message."""

    async def go() -> tuple[str, dict[str, Any]]:
        runner = asyncio.create_task(engine.scheduler.run())
        done = asyncio.Event()
        parts: list[str] = []
        end: dict[str, Any] = {}

        def emit(message: dict[str, Any]) -> None:
            if "p" in message:
                parts.append(message["p"])
            if "end" in message or "err" in message:
                end.update(message)
                done.set()

        request = Request(units=units, emit=emit, rows=engine.rows(target))
        engine.scheduler.submit(request)
        await asyncio.wait_for(done.wait(), 120)
        runner.cancel()
        return "".join(parts), end

    return asyncio.run(go())


def translate(engine: Engine, text: str, target: str) -> tuple[str, dict[str, Any]]:
    units = engine.units({"text": text, "source": "en", "target": target})
    return run(engine, units, target)


def loops(text: str) -> list[str]:
    return [m.group(1) for m in THRICE.finditer(text) if any(c.isalpha() for c in m.group(1))]


def test_a_looping_continuation_is_caught_before_the_client_sees_the_loop(
    decoder: Decoder,
) -> None:
    unit = [Unit("", LOOPING, "Is it her?", "", True)]
    unguarded, end = run(engine(decoder, loop_guard=False), unit, "fr")
    assert loops(unguarded), unguarded  # without the guard it runs on
    assert end["rep"] == "cut"  # to the token limit

    guarded, end = run(engine(decoder, loop_guard=True), unit, "fr")
    assert not loops(guarded), guarded
    assert end["rep"] in ("redecoded", "cut")
    assert len(guarded) < len(unguarded) / 2


def test_repetition_that_the_source_has_goes_through_untouched(decoder: Decoder) -> None:
    for text in ["It was very, very, very cold this morning.", "No, no, no, that is not it."]:
        plain, plain_end = translate(engine(decoder, loop_guard=False), text, "fr")
        guarded, end = translate(engine(decoder, loop_guard=True), text, "fr")
        assert guarded == plain
        assert end["rep"] is None and plain_end["rep"] is None


def test_a_translation_writes_only_its_target_s_scripts(decoder: Decoder) -> None:
    korean = engine(decoder, loop_guard=True)
    text, _ = translate(korean, "The 3 students bought 12 books in Tokyo and Beijing.", "ko")
    assert any(unicodedata.name(c, "").startswith("HANGUL") for c in text), text
    assert all(token_group(c) not in (KANA, HAN) for c in text), text
    # Every row a Korean translation may choose is common, special or Hangul.
    assert decoder.groups is not None
    assert sum(stop - start for start, stop in korean.rows("ko") or ()) == sum(
        decoder.groups[: HANGUL + 1]
    )
    assert korean.rows("ja") != korean.rows("ko")
    assert korean.rows("fr") == ((0, sum(decoder.groups[:2])),)


def test_the_languages_vocabulary_reads_text_as_the_shipped_one(decoder: Decoder) -> None:
    shipped = Decoder(str(bundled_model_path()), threads=2, parallel=1, n_ctx=512)
    try:
        assert decoder.n_vocab < shipped.n_vocab * 0.8
        for text in SENTENCES:
            ours = [decoder.piece(t) for t in decoder.tokenize(text, bos=True)]
            theirs = [shipped.piece(t) for t in shipped.tokenize(text, bos=True)]
            assert ours == theirs, text
        # A script it does not keep still reads, byte by byte.
        cyrillic = decoder.tokenize("Привет", bos=False)
        assert b"".join(decoder.piece(t) for t in cyrillic).decode() == "Привет"
    finally:
        shipped.close()
