"""The languages the configured provider offers, known without building it.

The command line checks `--to` and `--from` against this before it opens anything (a database,
an engine process, a model): a typo is answered at once, in the command's own words.
"""

from __future__ import annotations

from dragoman.config import Settings
from dragoman.engine.examples import LOCAL_LANGUAGES
from dragoman.languages import GENERAL_LANGUAGES, LanguageCatalog


def offered_languages(settings: Settings, *, offered_by: str = "this server") -> LanguageCatalog:
    """The catalog the provider `make_provider(settings)` builds would have."""
    if settings.provider == "openai":
        return LanguageCatalog(GENERAL_LANGUAGES, offered_by=offered_by)
    return LanguageCatalog(LOCAL_LANGUAGES, offered_by=offered_by)
