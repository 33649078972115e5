"""What runs now in this process: every open stream, for a shutdown to end in-band, and the
translations by id, for a cancel request to find.

A shutdown first stops new work (`stopping`: new streams are refused with `shutting_down`),
then, after the grace period, aborts whatever still runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from dragoman.errors import DragomanError, ShuttingDown

if TYPE_CHECKING:
    from dragoman.records.record import Record


class Abortable(Protocol):
    def abort(self, error: DragomanError) -> None:
        """End the work in-band with `error`: its events end with that failure."""


class Running(Abortable, Protocol):
    """A translation that a cancel request can stop: a job, or a resumable run."""

    record: Record

    async def ended(self) -> None:
        """Return once it has stopped and its record's final state is stored (or failed to)."""


class StreamRegistry:
    def __init__(self) -> None:
        self.active: set[Abortable] = set()
        self.running: dict[str, Running] = {}
        self.stopping = False

    def check_open(self) -> None:
        """Raise `ShuttingDown` once the server has begun to stop: no new stream starts."""
        if self.stopping:
            raise ShuttingDown()

    def abort_all(self, error: DragomanError) -> None:
        for stream in list(self.active):
            stream.abort(error)
