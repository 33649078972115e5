"""The decoder keeps in its cache only the prefixes that running sequences use; an idle prefix
comes back from its saved state with the very same values (the real embedded model)."""

from __future__ import annotations

from collections.abc import Iterator

import llama_cpp
import pytest

from dragoman.engine.decoder import Decoder, Entry
from dragoman.engine.examples import few_shot_prefix
from dragoman.providers.local import bundled_model_path

KOREAN = few_shot_prefix("en", "ko")
FRENCH = few_shot_prefix("en", "fr")
SENTENCE = {KOREAN: "English: The train leaves at noon.\nKorean:",
            FRENCH: "English: The train leaves at noon.\nFrench:"}  # fmt: skip


@pytest.fixture(scope="module")
def decoder() -> Iterator[Decoder]:
    d = Decoder(str(bundled_model_path()), threads=2, parallel=2, n_ctx=4096)
    yield d
    d.close()


def _start(d: Decoder, seq: int, prefix: str) -> tuple[int, int]:
    """Start `seq` on `prefix` with its sentence; its first greedy token and next position."""
    pos = d.start_with_prefix(seq, prefix)
    prompt = d.tokenize(SENTENCE[prefix], bos=False)
    entries = [Entry(seq, t, pos + i, i == len(prompt) - 1) for i, t in enumerate(prompt)]
    ((token, _),) = d.decode(entries)
    return token, pos + len(prompt)


def _continue(d: Decoder, seq: int, token: int, pos: int, steps: int) -> list[int]:
    tokens = [token]
    for step in range(steps):
        ((token, _),) = d.decode([Entry(seq, token, pos + step, True)])
        tokens.append(token)
    return tokens


def _state(d: Decoder, seq: int) -> bytes:
    state = d.sequence_state(seq)
    assert state is not None
    return bytes(state)


def _prefix_seq(d: Decoder, prefix: str) -> int:
    return d._prefixes[prefix][0]


def test_an_idle_prefix_leaves_the_cache_and_comes_back_the_same(decoder: Decoder) -> None:
    first = _continue(decoder, 0, *_start(decoder, 0, KOREAN), steps=6)
    assert decoder.resident_prefixes() == [KOREAN]
    evaluated_state = _state(decoder, _prefix_seq(decoder, KOREAN))

    decoder.clear(0)
    _start(decoder, 0, FRENCH)
    assert decoder.resident_prefixes() == [FRENCH]  # Korean was idle: out of the cache
    # ... in llama.cpp too: only the French prefix's cells are tagged with a prefix sequence
    # (the Korean one's id may hold French now, but then French alone).
    french_seq, french_length = decoder._prefixes[FRENCH]
    for seq in range(decoder.parallel, decoder.parallel + 4):
        expected = french_length - 1 if seq == french_seq else -1
        assert llama_cpp.llama_memory_seq_pos_max(decoder.mem, seq) == expected, seq

    decoder.clear(0)
    evaluated = decoder.prefixes_evaluated
    again = _continue(decoder, 0, *_start(decoder, 0, KOREAN), steps=6)
    assert decoder.resident_prefixes() == [KOREAN]
    assert decoder.prefixes_evaluated == evaluated  # put back from its saved state
    assert _state(decoder, _prefix_seq(decoder, KOREAN)) == evaluated_state
    assert again == first
    decoder.clear(0)


def test_a_prefix_in_use_stays(decoder: Decoder) -> None:
    alone = _continue(decoder, 0, *_start(decoder, 0, KOREAN), steps=4)
    decoder.clear(0)

    token, pos = _start(decoder, 0, KOREAN)
    _start(decoder, 1, FRENCH)  # while sequence 0 runs on the Korean prefix
    assert sorted(decoder.resident_prefixes()) == sorted([KOREAN, FRENCH])
    assert _continue(decoder, 0, token, pos, steps=4) == alone
    decoder.clear(0)
    decoder.clear(1)
