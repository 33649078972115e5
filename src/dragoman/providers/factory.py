"""The provider the settings ask for."""

from __future__ import annotations

from dragoman.config import Settings
from dragoman.providers.base import Provider


def make_provider(settings: Settings) -> Provider:
    if settings.provider == "openai":
        from dragoman.providers.openai import OpenAIProvider

        return OpenAIProvider(settings)
    from dragoman.providers.local import LocalProvider

    return LocalProvider(settings)
