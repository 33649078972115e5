"""The provider the settings ask for: always a `RoutedProvider`, over the upstreams of the
`DRAGOMAN_UPSTREAMS` file, or over the one provider of `DRAGOMAN_PROVIDER` (an upstream named
after it: `openai` or `local`)."""

from __future__ import annotations

from dragoman.config import Settings
from dragoman.providers.base import Provider
from dragoman.providers.upstreams import config as upstreams_config
from dragoman.providers.upstreams.router import RoutedProvider


def make_provider(settings: Settings) -> RoutedProvider:
    """Raises `UpstreamsFileError` for an upstreams file that cannot be used."""
    if settings.upstreams:
        return RoutedProvider.from_config(upstreams_config.load(settings.upstreams), settings)
    return RoutedProvider.single(plain_provider(settings))


def plain_provider(settings: Settings) -> Provider:
    if settings.provider == "openai":
        from dragoman.providers.openai import OpenAIProvider

        return OpenAIProvider(settings)
    from dragoman.providers.local import LocalProvider

    return LocalProvider(settings)
