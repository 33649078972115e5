"""`dragoman translate`, `dragoman history` and `dragoman scripts`: streaming to a terminal or
a pipe.

The translation goes raw to standard output, written and flushed piece by piece (never through
rich, whose markup would eat `[bold]` or `:smile:` in a translation); progress and errors go to
standard error. Exit codes: 0 ok, 1 translation failed, 2 usage or bad input, 3 server
unreachable, 130 interrupted.

A command checks what it was given (languages, script id, text lengths) before it opens
anything, and names the option the user typed (`--to`, not `target_lang`). In this process,
the languages are those the configured provider offers (known without loading it); against a
server, those its `GET /v1/languages` lists.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
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
# Said in the command's words alone; other failures also name their code.
_PLAIN = _BAD_INPUT | {"not_found", "empty"}
# The API's rule for script ids (`x-script-id`, `script_id`).
_SCRIPT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

stderr = Console(stderr=True, highlight=False)


def _err(message: str) -> None:
    # Plain text: no wrapping or markup, so scripts can read it.
    sys.stderr.write(f"dragoman: {message}\n")
    sys.stderr.flush()


def say_database(settings: Settings) -> None:
    """One line on standard error: which database this process reads and writes."""
    from dragoman.config import describe_database

    _err(f"database {describe_database(settings.database_url)}")


def database_problem(settings: Settings, exc: BaseException) -> str:
    """One line on a database that cannot be used: which one, and the kind of failure (its
    message may carry the URL, password included, so it is left to the log)."""
    from dragoman.config import describe_database

    cause = type(exc.__cause__ or exc).__name__
    return f"the database cannot be used ({cause}): {describe_database(settings.database_url)}"


def script_id_problem(script_id: str) -> str | None:
    """Why `--script` is not a script id, or None."""
    if _SCRIPT_ID.fullmatch(script_id):
        return None
    return "--script: must be 1 to 128 letters, digits or . _ : - (no spaces)."


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

    def report(self) -> int:
        """Say it on standard error; the exit code. A usage error or a missing script is said
        in the command's words alone; a failure of the translation or the server also names
        its code (`upstream_timeout: ...`)."""
        if self.code in _PLAIN:
            _err(self.message)
        else:
            _err(f"{self.code}: {self.message}")
        return self.exit_code


def _cli_fields() -> Any:
    from dragoman.service import Fields

    # How the command line names a request's fields; language names ("Korean") are welcome.
    return Fields("text", "--to", "--from", names=True)


def _resolve(catalog: Any, to: str, source: str | None) -> tuple[str, str | None]:
    from dragoman.errors import DragomanError

    fields = _cli_fields()
    try:
        target_tag: str = catalog.resolve(to, field=fields.target, allow_names=True)
        source_tag = None
        if source is not None and source.strip().lower() not in ("", "auto"):
            source_tag = catalog.resolve(source, field=fields.source, allow_names=True)
    except DragomanError as exc:
        raise TranslationFailed(exc.code, exc.message) from exc
    return target_tag, source_tag


class _Remote:
    """A running service."""

    def __init__(self, server: str, api_key: str | None) -> None:
        from dragoman.client import AsyncClient

        self.client = AsyncClient(server, timeout=300, api_key=api_key or None)

    async def __aenter__(self) -> _Remote:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def aclose(self) -> None:
        await self.client.aclose()

    async def languages(self, to: str, source: str | None) -> tuple[str, str | None]:
        """`--to` and `--from` as tags the server offers (its public language list)."""
        from dragoman.client import DragomanClientError
        from dragoman.languages import LanguageCatalog

        try:
            offered = await self.client.languages()
        except DragomanClientError as exc:
            raise TranslationFailed(exc.code, exc.message) from exc
        catalog = LanguageCatalog((item["tag"] for item in offered), offered_by="the server")
        return _resolve(catalog, to, source)

    def check_length(self, units: list[str]) -> None:
        """The server checks lengths itself (its limit is its own)."""

    async def pieces(
        self, text: str, to: str, source: str | None, script_id: str | None
    ) -> AsyncIterator[str]:
        from dragoman.client import DragomanClientError

        try:
            if script_id is not None:
                stream = self.client.stream_segment(script_id, text, to, source=source)
            else:
                stream = self.client.stream(text, to, source=source)
            async for piece in stream:
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

    async def scripts(self, limit: int) -> list[dict[str, Any]]:
        from dragoman.client import DragomanClientError

        try:
            scripts = await self.client.scripts(limit=limit)
        except DragomanClientError as exc:
            raise TranslationFailed(exc.code, exc.message) from exc
        return [dict(s) for s in scripts[:limit]]


class _InProcess:
    """The configured provider in this process (`provider=True`), storing records like the
    service does; or only the records (`provider=False`). Nothing is opened before
    `async with`: the checks come first."""

    def __init__(self, settings: Settings, *, provider: bool) -> None:
        self.settings = settings
        self._provider = provider
        self._opening: Any = None
        self.runtime: Any = None

    async def __aenter__(self) -> _InProcess:
        from dragoman.errors import DatabaseUnavailable, DragomanError
        from dragoman.runtime import Runtime

        self._opening = Runtime.open(self.settings, "translate" if self._provider else "records")
        try:
            self.runtime = await self._opening.__aenter__()
        except DatabaseUnavailable as exc:
            self._opening = None
            raise TranslationFailed(exc.code, database_problem(self.settings, exc)) from exc
        except DragomanError as exc:
            self._opening = None
            raise TranslationFailed(exc.code, exc.message) from exc
        say_database(self.settings)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._opening is not None:
            await self._opening.__aexit__(exc_type, exc, tb)

    async def aclose(self) -> None:
        """Nothing was opened before `async with`."""

    async def languages(self, to: str, source: str | None) -> tuple[str, str | None]:
        """`--to` and `--from` as tags the configured provider offers, without loading it."""
        from dragoman.providers.catalog import offered_languages

        provider = self.settings.provider
        who = "the embedded model" if provider == "local" else f"the {provider} provider"
        return _resolve(offered_languages(self.settings, offered_by=who), to, source)

    def check_length(self, units: list[str]) -> None:
        limit = self.settings.max_text_chars
        for number, unit in enumerate(units, 1):
            if len(unit) > limit:
                where = "the text" if len(units) == 1 else f"line {number}"
                raise TranslationFailed(
                    "text_too_long",
                    f"{where}: {len(unit)} characters; at most {limit} (DRAGOMAN_MAX_TEXT_CHARS).",
                )

    async def pieces(
        self, text: str, to: str, source: str | None, script_id: str | None
    ) -> AsyncIterator[str]:
        from dragoman.errors import DragomanError
        from dragoman.events import pieces
        from dragoman.service import TranslationRequest

        try:
            job = await self.runtime.translator.submit(
                TranslationRequest(
                    text=text,
                    target_lang=to,
                    source_lang=source,
                    script_id=script_id,
                    fields=_cli_fields(),
                    # With a script, each text is its next segment: numbered, with the
                    # script's previous segments and glossary, and exported in order.
                    segment=script_id is not None,
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

    async def scripts(self, limit: int) -> list[dict[str, Any]]:
        from dragoman.errors import DragomanError
        from dragoman.records.store import ANYONE

        scripts: list[dict[str, Any]] = []
        cursor = None
        try:
            while len(scripts) < limit:
                items, cursor = await self.runtime.scripts.list(
                    ANYONE, min(200, limit - len(scripts)), cursor
                )
                scripts += items
                if cursor is None:
                    break
        except DragomanError as exc:
            raise TranslationFailed(exc.code, exc.message) from exc
        return scripts


Backend = _Remote | _InProcess


def backend(
    server: str | None, settings: Settings | None, api_key: str | None, *, provider: bool
) -> Backend:
    """Where a command's work happens: `--server`, or this process. Opens nothing yet."""
    if server:
        return _Remote(server, api_key)
    assert settings is not None
    return _InProcess(quiet(settings), provider=provider)


def quiet(settings: Settings) -> Settings:
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
    api_key: str | None,
    file: Path | None,
    out: Path | None,
    settings: Settings | None,
) -> int:
    if text is not None:
        units, by_line = [text], False
    else:
        content = file.read_text(encoding="utf-8") if file else sys.stdin.read()
        if content.endswith("\n"):  # the last line's end, not one more (empty) line
            content = content[:-1]
        units, by_line = content.split("\n"), True
    if not any(unit.strip() for unit in units):
        _err("nothing to translate (the text is empty).")
        return EXIT_USAGE
    where = backend(server, settings, api_key, provider=True)
    try:
        return asyncio.run(_translate(where, units, by_line, to, source, script_id, out))
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED


async def _translate(
    where: Backend,
    units: list[str],
    by_line: bool,
    to: str,
    source: str | None,
    script_id: str | None,
    out: Path | None,
) -> int:
    try:
        to, source = await where.languages(to, source)
        where.check_length(units)
    except TranslationFailed as exc:
        await where.aclose()
        return exc.report()
    # Only now, with everything checked: the output file, the model, the database.
    sink: TextIO = out.open("w", encoding="utf-8") if out else sys.stdout
    try:
        return await _translate_units(where, units, by_line, to, source, script_id, sink)
    finally:
        if out:
            sink.close()


async def _translate_units(
    where: Backend,
    units: list[str],
    by_line: bool,
    to: str,
    source: str | None,
    script_id: str | None,
    sink: TextIO,
) -> int:
    work = [u for u in units if u.strip()]
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
        async with where:
            with progress:
                bar = progress.add_task("translate", total=len(work))
                for unit in units:
                    if unit.strip():
                        async for piece in where.pieces(unit, to, source, script_id):
                            sink.write(piece)
                            sink.flush()
                        progress.advance(bar)
                    else:
                        sink.write(unit)
                    sink.write("\n")
                    sink.flush()
    except TranslationFailed as exc:
        return exc.report()
    return EXIT_OK


def run_history(
    *,
    script_id: str | None,
    server: str | None,
    api_key: str | None,
    as_json: bool,
    limit: int,
    settings: Settings | None,
) -> int:
    records = _listing(server, settings, api_key, lambda where: where.history(script_id, limit))
    if isinstance(records, int):
        return records
    if as_json:
        return _print_json(records)
    if not records:
        if script_id:
            print(f"No translations in script {script_id}.")
        else:
            print("No translations yet.")
        return EXIT_OK
    table = Table(title=f"script {script_id}" if script_id else "newest first")
    for column in ("created (UTC)", "script", "langs"):
        table.add_column(column, no_wrap=True)
    for column in ("text", "translation"):  # what is left of the width, shared
        table.add_column(column, overflow="fold", ratio=1)
    for record in records:
        script = record["script_id"] or "–"
        if record.get("segment_index") is not None:
            script += f" #{record['segment_index']}"
        # Text(), not str: rich would read markup such as [bold] in people's texts.
        translation = Text(record["translation"])
        if record["status"] != "succeeded":  # the exception is shown, not the rule
            error = record.get("error") or {}
            note = record["status"] + (f": {error['code']}" if error.get("code") else "")
            translation.append(f"{' ' if record['translation'] else ''}({note})", style="dim")
        table.add_row(
            Text(_when(record["created_at"])),
            Text(script),
            Text(f"{record['source_lang'] or '?'}→{record['target_lang']}"),
            Text(record["text"]),
            translation,
        )
    Console(highlight=False).print(table)
    return EXIT_OK


def _listing(
    server: str | None,
    settings: Settings | None,
    api_key: str | None,
    read: Callable[[Backend], Awaitable[list[dict[str, Any]]]],
) -> list[dict[str, Any]] | int:
    """What `read` lists, from the server or the database; the exit status when it failed."""

    async def fetch() -> list[dict[str, Any]]:
        async with backend(server, settings, api_key, provider=False) as where:
            return await read(where)

    try:
        return asyncio.run(fetch())
    except TranslationFailed as exc:
        return exc.report()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _print_json(items: list[dict[str, Any]]) -> int:
    sys.stdout.write(json.dumps(items, ensure_ascii=False, indent=2) + "\n")
    return EXIT_OK


def _when(stamp: str) -> str:
    """An RFC 3339 UTC stamp, short: `2025-06-01 12:00`."""
    return stamp.replace("T", " ")[:16]


def run_scripts(
    *,
    server: str | None,
    api_key: str | None,
    as_json: bool,
    limit: int,
    settings: Settings | None,
) -> int:
    scripts = _listing(server, settings, api_key, lambda where: where.scripts(limit))
    if isinstance(scripts, int):
        return scripts
    if as_json:
        return _print_json(scripts)
    if not scripts:
        print("No scripts yet: translate with --script ID to start one.")
        return EXIT_OK
    table = Table(title="scripts, the last active first")
    longest = max(len(script["script_id"]) for script in scripts)
    table.add_column("script", overflow="fold", min_width=min(32, longest))
    for column in ("segments", "languages"):
        table.add_column(column, overflow="fold")
    for column in ("created (UTC)", "updated (UTC)"):
        table.add_column(column, no_wrap=True)
    for script in scripts:
        table.add_row(
            Text(script["script_id"]),
            Text(str(script["segments"])),
            Text(", ".join(script["target_langs"])),
            Text(_when(script["created_at"])),
            Text(_when(script["updated_at"])),
        )
    Console(highlight=False).print(table)
    return EXIT_OK
