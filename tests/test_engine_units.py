"""How a text becomes the engine's units (pure: no model)."""

from __future__ import annotations

from dragoman.engine.scheduler import max_new_tokens
from dragoman.engine.units import base_model_units


def test_sentences_share_one_prefix_and_keep_separators() -> None:
    units = base_model_units("\nHello there. How are you?\n\nFine.", "en", "fr")
    assert [u.source for u in units] == ["", "Hello there.", "How are you?", "Fine."]
    assert [u.after for u in units] == ["\n", " ", "\n\n", ""]
    assert len({u.prefix for u in units}) == 1 and units[1].prefix.startswith("English: ")
    assert units[1].prompt == "English: Hello there.\nFrench:"
    assert units[0].prompt == ""  # a leading empty line: only its line break goes out
    assert all(u.line for u in units)


def test_no_space_between_sentences_in_japanese() -> None:
    units = base_model_units("One. Two.", "en", "ja")
    assert [u.after for u in units] == ["", ""]


def test_output_is_bounded_by_the_input() -> None:
    assert max_new_tokens(5) == 31
    assert max_new_tokens(10_000) == 1024
