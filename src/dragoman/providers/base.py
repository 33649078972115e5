"""What every provider offers, and what flows out of its stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from dragoman.events import Queued
from dragoman.languages import LanguageCatalog
from dragoman.prompts import TranslationTask
from dragoman.records.record import Usage


class StreamState:
    """Filled in by the provider while it streams: what the record keeps besides the text."""

    __slots__ = ("usage",)

    def __init__(self) -> None:
        self.usage: Usage | None = None


class Provider(Protocol):
    name: str
    languages: LanguageCatalog
    # True when the provider needs the source language in its prompt (detected when unknown).
    needs_source_lang: bool

    @property
    def model(self) -> str: ...

    async def start(self) -> None:
        """Load or look up what the provider needs; called once in the background at start-up."""

    def is_ready(self) -> bool: ...

    def not_ready_reason(self) -> str | None:
        """Why the provider is not ready, in words for people (None when it is)."""

    async def check_ready(self) -> bool:
        """A fresh readiness probe for /readyz."""

    def stream(
        self, task: TranslationTask, state: StreamState
    ) -> AsyncIterator[list[str] | Queued]:
        """Batches of text pieces as the model writes them (and queue updates, for a local
        model). A batch holds the pieces that arrived together; pieces are never empty.

        Raises `DragomanError` subclasses: upstream rate limits, errors and timeouts, full queue.
        Cancelling the consumer must stop the model's work (close the upstream connection, or
        stop the generation at the next token).
        """

    async def aclose(self) -> None: ...
