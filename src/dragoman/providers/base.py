"""What every provider offers, and what flows out of its stream."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from dragoman.errors import Cancelled, DragomanError
from dragoman.events import Queued
from dragoman.languages import LanguageCatalog
from dragoman.prompts import TranslationTask
from dragoman.records.record import Record, Usage


class StreamState:
    """Filled in by the provider while it streams: what the record keeps besides the text.

    With upstreams (`providers/upstreams/`): the upstream being tried or that answered (its
    name, its provider and model) and the attempts that failed before it. The job copies them
    into the record when its first event goes out (`name_upstream`) and at its end (`settle`).
    `avoid`, set by the caller before the stream starts: upstreams to pass over while another
    can take the request (a translation that failed after its first piece on one of them,
    asked again)."""

    __slots__ = (
        "_on_end",
        "_trying",
        "attempts",
        "avoid",
        "model",
        "provider",
        "repetition",
        "upstream",
        "usage",
    )

    def __init__(self, avoid: frozenset[str] = frozenset()) -> None:
        self.usage: Usage | None = None
        # The embedded model's loop guard, when it acted (`Record.repetition`).
        self.repetition: str | None = None
        self.avoid = avoid
        self.upstream: str | None = None
        self.provider: str | None = None
        self.model: str | None = None
        self.attempts: list[dict[str, Any]] = []
        self._trying: tuple[str, float] | None = None
        # Told the job's end (its error, None when it succeeded) once an upstream answered.
        self._on_end: Callable[[DragomanError | None], None] | None = None

    # Written by the provider.

    def trying(self, upstream: str, provider: str, model: str) -> None:
        """An attempt on `upstream` starts."""
        self._trying = (upstream, time.perf_counter())
        self.provider, self.model = provider, model
        self.usage = None
        self.repetition = None

    def failed(self, error: DragomanError) -> None:
        """The attempt in progress failed before its first piece."""
        if self._trying is not None:
            upstream, started = self._trying
            self._trying = None
            self.attempts.append(
                {"upstream": upstream, "error": error.body()["error"], "ms": _ms_since(started)}
            )

    def answered(self, on_end: Callable[[DragomanError | None], None] | None = None) -> None:
        """The attempt in progress sent its first piece: its upstream answers the request.
        `on_end` is told how the job ended (`settle`)."""
        if self._trying is not None:
            self.upstream = self._trying[0]
            self._trying = None
        self._on_end = on_end

    # Read by the job.

    def name_upstream(self, record: Record) -> None:
        """The record names the upstream that answers, and the attempts so far."""
        if self.provider is not None and self.model is not None:
            record.provider, record.model = self.provider, self.model
        record.upstream = self.upstream
        record.attempts = list(self.attempts)

    def settle(self, record: Record, error: DragomanError | None) -> None:
        """At the job's end: an attempt still in progress (cut by the job's deadline, its
        client leaving, a cancel or a shutdown) is one that failed, with the job's error."""
        self.failed(error or Cancelled())
        self.name_upstream(record)
        on_end, self._on_end = self._on_end, None
        if on_end is not None:
            on_end(error)


def _ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


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
