"""How the embedded provider cuts a text into sentences (pure helpers, no model)."""

from __future__ import annotations

import pytest

from dragoman.providers.local import split_segments, split_sentences

# What it checks does not depend on the database: CI's second pass leaves it out.
pytestmark = pytest.mark.once


def test_sentences_split_at_real_ends_only() -> None:
    assert split_sentences("Hi! How are you? Fine.") == ["Hi!", "How are you?", "Fine."]
    assert split_sentences("The store closes at 9 p.m. on Sundays.") == [
        "The store closes at 9 p.m. on Sundays."
    ]
    assert split_sentences("Mr. Tanaka has three children. He is 40.") == [
        "Mr. Tanaka has three children.",
        "He is 40.",
    ]
    assert split_sentences("今日は寒いです。 明日は暖かい。") == [
        "今日は寒いです。",
        "明日は暖かい。",
    ]


def test_segments_keep_line_breaks() -> None:
    assert split_segments("One. Two.\n\nThree") == [("One.", " "), ("Two.", "\n\n"), ("Three", "")]
    assert split_segments("\nx") == [("", "\n"), ("x", "")]
