"""How a text becomes the engine's units (pure: no model)."""

from __future__ import annotations

import pytest

from dragoman.engine.scheduler import max_new_tokens
from dragoman.engine.units import base_model_units

# What it checks does not depend on the database: CI's second pass leaves it out.
pytestmark = pytest.mark.once


def test_sentences_share_one_prefix_and_keep_separators() -> None:
    units = base_model_units("\nHello there. How are you?\n\nFine.", "en", "fr")
    assert [u.source for u in units] == ["", "Hello there.", "How are you?", "Fine."]
    assert [u.after for u in units] == ["\n", " ", "\n\n", ""]
    assert len({u.prefix for u in units}) == 1 and units[1].prefix.startswith("English: ")
    assert units[1].prompt.endswith("\n\nEnglish: Hello there.\nFrench:")
    assert units[0].prompt == ""  # a leading empty line: only its line break goes out
    assert all(u.line for u in units)


def test_no_space_between_sentences_in_japanese() -> None:
    units = base_model_units("One. Two.", "en", "ja")
    assert [u.after for u in units] == ["", ""]


def test_output_is_bounded_by_the_input() -> None:
    assert max_new_tokens(5) == 31
    assert max_new_tokens(10_000) == 1024


def test_context_and_glossary_come_last_before_the_sentence() -> None:
    (unit,) = base_model_units(
        "The dragoman spoke.",
        "en",
        "ko",
        context=[("Hello, class.", "안녕하세요, 여러분.")],
        glossary=[("dragoman", "통역사")],
        similar=False,
    )
    assert unit.prompt == (
        "English: dragoman\nKorean: 통역사\n\n"
        "English: Hello, class.\nKorean: 안녕하세요, 여러분.\n\n"
        "English: The dragoman spoke.\nKorean:"
    )


def test_an_unoffered_language_error_lists_the_few_that_are() -> None:
    import pytest

    from dragoman.engine.examples import LOCAL_LANGUAGES
    from dragoman.errors import UnsupportedLanguage
    from dragoman.languages import LanguageCatalog

    with pytest.raises(UnsupportedLanguage) as caught:
        LanguageCatalog(LOCAL_LANGUAGES).resolve("ar", field="target_lang")
    assert "offered: en, ko, ja, zh, fr, es, de" in caught.value.message


def test_each_sentence_keeps_the_glossary_terms_of_its_own_text() -> None:
    units = base_model_units(
        "The sensor works. Busan is far.",
        "en",
        "ko",
        glossary=[("sensor", "센서"), ("busan", "부산"), ("tide gauge", "조위계")],
        similar=False,
    )
    assert [u.terms for u in units] == [("센서",), ("부산",)]
