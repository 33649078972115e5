"""`dragoman translate` and `dragoman history`: streaming to a terminal or a pipe.

The translation goes raw to standard output, written and flushed piece by piece (never through
rich, whose markup would eat `[bold]` or `:smile:` in a translation); progress and errors go to
standard error. Exit codes: 0 ok, 1 translation failed, 2 usage or bad input, 3 server
unreachable, 130 interrupted.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from dragoman.config import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
_BAD_INPUT = {"invalid_request", "unsupported_language", "text_too_long"}

stderr = Console(stderr=True, highlight=False)


def _err(message: str) -> None:
    # Plain text: no wrapping or markup, so scripts can read it.
    sys.stderr.write(f"dragoman: {message}\n")
    sys.stderr.flush()


class TranslationFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def exit_code(self) -> int:
        if self.code in _BAD_INPUT:
            return EXIT_USAGE
        if self.code == "server_unreachable":
            return EXIT_UNREACHABLE
        return EXIT_FAILED


class _Remote:
    """Pieces from a running service."""

    def __init__(self, server: str) -> None:
        from dragoman.client import AsyncClient

        # A server with keys on needs one: the same variable for every command.
        self.client = AsyncClient(
            server, timeout=300, api_key=os.environ.get("DRAGOMAN_API_KEY") or None
        )

    async def __aenter__(self) -> _Remote:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def pieces(
        self, text: str, to: str, source: str | None, script_id: str | None
    ) -> AsyncIterator[str]:
        from dragoman.client import DragomanClientError

        try:
            async for piece in self.client.stream(text, to, source=source, script_id=script_id):
                yield piece
        except DragomanClientError as exc:
            raise TranslationFailed(exc.code, exc.message) from exc

    async def history(self, script_id: str | None, limit: int) -> list[dict[str, Any]]:
        from dragoman.client import DragomanClientError

        try:
            records = await self.client.history(script_id, limit=limit)
        except DragomanClientError as exc:
            raise TranslationFailed(exc.code, exc.message) from exc
        return [dict(r) for r in records[:limit]]


class _InProcess:
    """The configured provider in this process (`provider=True`), storing records like the
    service does; or only the records (`provider=False`)."""

    def __init__(self, settings: Settings, *, provider: bool) -> None:
        from dragoman.runtime import Runtime

        self._opening = Runtime.open(settings, "translate" if provider else "records")
        self.runtime: Any = None

    async def __aenter__(self) -> _InProcess:
        from dragoman.errors import DragomanError

        try:
            self.runtime = await self._opening.__aenter__()
        except DragomanError as exc:
            raise TranslationFailed(exc.code, exc.message) from exc
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._opening.__aexit__(exc_type, exc, tb)

    async def pieces(
        self, text: str, to: str, source: str | None, script_id: str | None
    ) -> AsyncIterator[str]:
        from dragoman.errors import DragomanError
        from dragoman.events import pieces
        from dragoman.service import TranslationRequest

        try:
            job = await self.runtime.translator.submit(
                TranslationRequest(
                    text=text, target_lang=to, source_lang=source, script_id=script_id
                )
            )
            async for piece in pieces(job.events()):
                yield piece
        except DragomanError as exc:
            raise TranslationFailed(exc.code, exc.message) from exc

    async def history(self, script_id: str | None, limit: int) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        cursor = None
        while len(records) < limit:
            items, cursor = await self.runtime.store.list(
                script_id=script_id, limit=min(200, limit - len(records)), cursor=cursor
            )
            records += items
            if cursor is None:
                break
        return records


def _backend(
    server: str | None, settings: Settings | None, *, provider: bool
) -> AbstractAsyncContextManager[Any]:
    if server:
        return _Remote(server)
    assert settings is not None
    return _InProcess(_quiet(settings), provider=provider)


def _quiet(settings: Settings) -> Settings:
    # The service's info log would bury the translation on a terminal.
    from dragoman.logging import configure_logging

    if settings.log_level.lower() in ("debug", "info"):
        settings = settings.model_copy(update={"log_level": "warning"})
    configure_logging(settings.log_level)
    return settings


def run_translate(
    *,
    text: str | None,
    to: str,
    source: str | None,
    script_id: str | None,
    server: str | None,
    file: Path | None,
    out: Path | None,
    settings: Settings | None,
) -> int:
    if text is not None:
        units, by_line = [text], False
    else:
        content = file.read_text(encoding="utf-8") if file else sys.stdin.read()
        units, by_line = content.split("\n"), True
    sink: TextIO = out.open("w", encoding="utf-8") if out else sys.stdout
    try:
        return asyncio.run(
            _translate_units(units, by_line, to, source, script_id, server, settings, sink)
        )
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    finally:
        if out:
            sink.close()


async def _translate_units(
    units: list[str],
    by_line: bool,
    to: str,
    source: str | None,
    script_id: str | None,
    server: str | None,
    settings: Settings | None,
    sink: TextIO,
) -> int:
    work = [u for u in units if u.strip()]
    if not work:
        _err("nothing to translate")
        return EXIT_USAGE
    progress = Progress(
        TextColumn("translating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
        disable=not (by_line and stderr.is_terminal and len(work) > 1),
    )
    try:
        async with _backend(server, settings, provider=True) as backend:
            with progress:
                bar = progress.add_task("translate", total=len(work))
                for i, unit in enumerate(units):
                    if unit.strip():
                        async for piece in backend.pieces(unit, to, source, script_id):
                            sink.write(piece)
                            sink.flush()
                        progress.advance(bar)
                    else:
                        sink.write(unit)
                    if i < len(units) - 1:
                        sink.write("\n")
                        sink.flush()
            if not by_line:
                sink.write("\n")
                sink.flush()
    except TranslationFailed as exc:
        _err(f"{exc.code}: {exc.message}")
        return exc.exit_code
    return EXIT_OK


def run_history(
    *,
    script_id: str | None,
    server: str | None,
    as_json: bool,
    limit: int,
    settings: Settings | None,
) -> int:
    async def fetch() -> list[dict[str, Any]]:
        async with _backend(server, settings, provider=False) as backend:
            records: list[dict[str, Any]] = await backend.history(script_id, limit)
            return records

    try:
        records = asyncio.run(fetch())
    except TranslationFailed as exc:
        _err(f"{exc.code}: {exc.message}")
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    if as_json:
        sys.stdout.write(json.dumps(records, ensure_ascii=False, indent=2) + "\n")
        return EXIT_OK
    table = Table(title=f"script {script_id}" if script_id else "all scripts")
    for column in ("created", "status", "langs", "text", "translation"):
        table.add_column(column, overflow="fold")
    for record in records:
        # Text(), not str: rich would read markup such as [bold] in people's texts.
        table.add_row(
            Text(record["created_at"]),
            Text(record["status"]),
            Text(f"{record['source_lang'] or '?'}→{record['target_lang']}"),
            Text(record["text"]),
            Text(record["translation"]),
        )
    Console(highlight=False).print(table)
    return EXIT_OK
