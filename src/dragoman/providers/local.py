"""Placeholder until the embedded model lands."""

from __future__ import annotations

from dragoman.config import Settings


class LocalProvider:
    def __init__(self, settings: Settings) -> None:
        raise NotImplementedError
