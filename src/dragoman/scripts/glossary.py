"""Which glossary entries apply to a segment, and which of them its translation missed."""

from __future__ import annotations

from dragoman.languages import base_language
from dragoman.scripts.store import GlossaryEntry


def glossary_terms(entries: list[GlossaryEntry], target_lang: str) -> list[tuple[str, str]]:
    """(source, target) of the entries for this target language or its base language."""
    langs = {target_lang, base_language(target_lang)}
    return [(entry.source, entry.target) for entry in entries if entry.target_lang in langs]


def applicable_glossary(
    entries: list[GlossaryEntry], text: str, target_lang: str
) -> list[tuple[str, str]]:
    """Entries for this target language (or its base language) whose source term occurs in
    the text, ignoring case."""
    folded = text.casefold()
    return [
        (source, target)
        for source, target in glossary_terms(entries, target_lang)
        if source.casefold() in folded
    ]


def glossary_misses(glossary: list[tuple[str, str]], translation: str) -> list[str] | None:
    """Source terms whose target term is not in the translation (ignoring case); None when no
    entry applied."""
    if not glossary:
        return None
    folded = translation.casefold()
    return [source for source, target in glossary if target.casefold() not in folded]
