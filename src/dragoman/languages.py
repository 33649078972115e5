"""Language tags: validation against what a provider offers, display names, detection."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterable
from functools import lru_cache

import langcodes

from dragoman.errors import UnsupportedLanguage

# Languages offered through a general-purpose chat model: the ones such models translate well.
GENERAL_LANGUAGES: tuple[str, ...] = (
    "af", "am", "ar", "az", "be", "bg", "bn", "bs", "ca", "cs", "cy", "da", "de", "el", "en",
    "es", "et", "eu", "fa", "fi", "fil", "fr", "ga", "gl", "gu", "he", "hi", "hr", "hu", "hy",
    "id", "is", "it", "ja", "ka", "kk", "km", "kn", "ko", "lo", "lt", "lv", "mk", "ml", "mn",
    "mr", "ms", "my", "nb", "ne", "nl", "pa", "pl", "ps", "pt", "ro", "ru", "si", "sk", "sl",
    "sq", "sr", "sv", "sw", "ta", "te", "th", "tr", "uk", "ur", "uz", "vi", "zh", "zu",
)  # fmt: skip


# BCP 47's shape (RFC 5646, section 2.1) with an ISO 639 language, without checking any
# subtag against the registry.
_WELL_FORMED = re.compile(
    r"[A-Za-z]{2,3}(?:-[A-Za-z]{4})?(?:-(?:[A-Za-z]{2}|[0-9]{3}))?"
    r"(?:-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*(?:-[0-9A-WY-Za-wy-z](?:-[A-Za-z0-9]{2,8})+)*"
    r"(?:-[xX](?:-[A-Za-z0-9]{1,8})+)?"
)


@lru_cache(maxsize=4096)
def standardize(tag: str) -> str | None:
    """The tag in `langcodes.standardize_tag` form, or None when it is not well-formed."""
    if not tag or len(tag) > 64 or not tag.isascii():
        return None
    try:
        if not langcodes.tag_is_valid(tag):
            return None
        return langcodes.standardize_tag(tag)
    except (ValueError, LookupError):
        return None


@lru_cache(maxsize=4096)
def display_name(tag: str) -> str:
    """'ko-KR' -> 'Korean (South Korea)': how prompts name a language."""
    return langcodes.Language.get(tag).display_name()


def base_language(tag: str) -> str:
    return langcodes.Language.get(tag).language or tag


class LanguageCatalog:
    """The languages one provider offers, and the checks of request tags against them."""

    def __init__(self, bases: Iterable[str], *, offered_by: str = "this server") -> None:
        self.bases = tuple(dict.fromkeys(bases))
        self._offered = frozenset(self.bases)
        # Who offers them, in error messages ("is not offered by this server").
        self.offered_by = offered_by

    def listing(self) -> list[dict[str, str]]:
        return [{"tag": tag, "name": display_name(tag)} for tag in self.bases]

    def resolve(self, value: str, *, field: str, allow_names: bool = False) -> str:
        """A request's tag (or, where allowed, language name) as a standard offered tag."""
        tag = standardize(value.strip())
        if tag is None and allow_names:
            tag = _find_by_name(value.strip())
        if tag is None:
            if _WELL_FORMED.fullmatch(value.strip()):  # a tag, of a language nobody registered
                raise UnsupportedLanguage(f"{field}: {_quote(value)} is not {self._offer()}.")
            raise UnsupportedLanguage(
                f"{field}: {_quote(value)} is not a well-formed language tag."
            )
        if base_language(tag) not in self._offered:
            raise UnsupportedLanguage(f"{field}: {_quote(value)} is not {self._offer()}.")
        return tag

    def _offer(self) -> str:
        if len(self.bases) <= 10:
            return f"offered by {self.offered_by} (offered: {', '.join(self.bases)})"
        if self.offered_by == "this server":
            return "offered by this server (see GET /v1/languages)"
        return f"offered by {self.offered_by}"


@lru_cache(maxsize=1024)
def _find_by_name(name: str) -> str | None:
    # language_data's name index breaks (SystemError, UnicodeDecodeError) on a NUL in the
    # name; no language name holds a control character.
    if not name or len(name) > 64 or not name.isprintable():
        return None
    try:
        return standardize(langcodes.find(name).to_tag())
    except (LookupError, ValueError):
        return None


def _quote(value: str) -> str:
    shown = value if len(value) <= 40 else value[:40] + "…"
    return '"' + shown.replace('"', "'") + '"'


class LanguageDetector:
    """Detects the language of a text with py3langid, whose model ships in its package.

    Loading the model takes about two seconds, so it is loaded once, on first use or from
    `warm_up()` in a worker thread at start-up.
    """

    # Below this probability the answer is too unsure to store.
    MIN_PROBABILITY = 0.5

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._identifier: object | None = None

    def warm_up(self) -> None:
        self._get()

    def _get(self) -> object:
        with self._lock:
            if self._identifier is None:
                from py3langid.langid import MODEL_FILE, LanguageIdentifier

                self._identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
            return self._identifier

    async def detect_async(self, text: str, offered: LanguageCatalog | None = None) -> str | None:
        """`detect` without blocking the event loop while the model is still loading."""
        if self._identifier is None:
            return await asyncio.to_thread(self.detect, text, offered)
        return self.detect(text, offered)

    def guess(self, text: str) -> tuple[str | None, float]:
        """The most likely language and its probability (0 to 1), however unsure."""
        identifier = self._get()
        lang, probability = identifier.classify(text[:2000])  # type: ignore[attr-defined]
        return standardize(str(lang)), float(probability)

    def detect(self, text: str, offered: LanguageCatalog | None = None) -> str | None:
        identifier = self._get()
        lang, probability = identifier.classify(text[:2000])  # type: ignore[attr-defined]
        if float(probability) < self.MIN_PROBABILITY:
            return None
        tag = standardize(str(lang))
        if tag is None or (offered is not None and base_language(tag) not in offered.bases):
            return None
        return tag
