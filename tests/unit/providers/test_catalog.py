"""The languages the command line checks before it loads anything are the ones the provider
it would build offers."""

from __future__ import annotations

import asyncio

import pytest

from dragoman.config import Settings
from dragoman.providers.catalog import offered_languages
from dragoman.providers.factory import make_provider


@pytest.mark.parametrize("provider", ["local", "openai"])
def test_the_catalog_is_the_providers(provider: str) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        provider=provider,
        openai_base_url="http://127.0.0.1:9/v1",
        database_url="sqlite+aiosqlite://",
    )
    built = make_provider(settings)  # built, not started: nothing is loaded
    try:
        assert offered_languages(settings).bases == built.languages.bases
    finally:
        asyncio.run(built.aclose())
