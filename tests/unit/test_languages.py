"""Language tags: resolution against an offered catalog, names, detection; fuzzed input."""

from __future__ import annotations

import langcodes
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dragoman.errors import UnsupportedLanguage
from dragoman.languages import (
    GENERAL_LANGUAGES,
    LanguageCatalog,
    LanguageDetector,
    base_language,
    standardize,
)

CATALOG = LanguageCatalog(GENERAL_LANGUAGES)


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        ("ko", "ko"),
        ("ko-KR", "ko-KR"),
        ("KO-kr", "ko-KR"),
        (" ko-KR ", "ko-KR"),
        ("zh-Hant", "zh-Hant"),
        ("sr-Latn-RS", "sr-Latn-RS"),
        ("iw", "he"),  # deprecated code, standard form
        ("tl", "fil"),
    ],
)
def test_tags_resolve_to_their_standard_form(value: str, tag: str) -> None:
    assert CATALOG.resolve(value, field="target_lang") == tag


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("ko--KR", "not a well-formed"),
        ("", "not a well-formed"),
        ("Korean", "not a well-formed"),  # names only where allowed
        ("und", "not offered"),
        ("x-private", "not offered"),
        ("tlh", "not offered"),
    ],
)
def test_bad_or_unoffered_tags_are_unsupported_language(value: str, reason: str) -> None:
    with pytest.raises(UnsupportedLanguage) as raised:
        CATALOG.resolve(value, field="target_lang")
    assert raised.value.message.startswith("target_lang: ")
    assert reason in raised.value.message


@pytest.mark.parametrize(("name", "tag"), [("Korean", "ko"), ("한국어", "ko"), ("English", "en")])
def test_names_resolve_where_allowed(name: str, tag: str) -> None:
    assert CATALOG.resolve(name, field="lang", allow_names=True) == tag


def test_a_catalog_offers_only_its_bases() -> None:
    small = LanguageCatalog(["en", "ko", "en"])
    assert small.listing() == [{"tag": "en", "name": "English"}, {"tag": "ko", "name": "Korean"}]
    with pytest.raises(UnsupportedLanguage):
        small.resolve("fr", field="target_lang")


def test_the_message_quotes_long_values_shortened() -> None:
    with pytest.raises(UnsupportedLanguage) as raised:
        CATALOG.resolve('"' + "x" * 100, field="source_lang")
    assert "x" * 41 not in raised.value.message
    assert "\"'" in raised.value.message  # the value's own quote is not the message's


@given(st.text(max_size=80))
def test_any_text_resolves_to_an_offered_tag_or_unsupported_language(value: str) -> None:
    for allow_names in (False, True):
        try:
            tag = CATALOG.resolve(value, field="target_lang", allow_names=allow_names)
        except UnsupportedLanguage as exc:
            assert exc.message.startswith("target_lang: ")
            assert len(exc.message) < 120
            continue
        assert base_language(tag) in GENERAL_LANGUAGES
        assert standardize(tag) == tag


@given(
    base=st.sampled_from(GENERAL_LANGUAGES),
    script=st.sampled_from(["", "-Latn", "-Cyrl", "-Hant"]),
    region=st.sampled_from(["", "-US", "-KR", "-419", "-BR"]),
    upper=st.booleans(),
)
def test_well_formed_tags_of_offered_languages_resolve(
    base: str, script: str, region: str, upper: bool
) -> None:
    value = base + script + region
    tag = CATALOG.resolve(value.upper() if upper else value, field="target_lang")
    assert tag == langcodes.standardize_tag(value)
    assert base_language(tag) == base_language(langcodes.standardize_tag(base))


@given(st.text(max_size=100))
def test_standardize_never_raises_and_is_idempotent(value: str) -> None:
    tag = standardize(value)
    if tag is not None:
        assert standardize(tag) == tag


def test_detection_within_what_is_offered() -> None:
    detector = LanguageDetector()
    text = "Le petit chat dort tranquillement sur le canapé du salon depuis ce matin."
    assert detector.detect(text) == "fr"
    assert detector.detect(text, CATALOG) == "fr"
    assert detector.detect(text, LanguageCatalog(["en", "ko"])) is None
