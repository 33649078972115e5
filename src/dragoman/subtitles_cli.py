"""`dragoman subtitles` and `dragoman export`: in this process on the configured provider, or
against a running service (`--server`), like `dragoman translate`.

The translated file goes to `--out` or standard output; a progress bar (cues done of cues in
the file) goes to standard error. Exit codes as `dragoman translate`'s.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dragoman.config import Settings
from dragoman.translate_cli import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    TranslationFailed,
    _err,
    _InProcess,
    _quiet,
    stderr,
)

Event = tuple[str, dict[str, Any]]


async def _remote_events(
    server: str, content: str, to: str, source: str | None, script_id: str | None
) -> AsyncGenerator[Event, None]:
    from dragoman.client import AsyncClient, DragomanClientError

    async with AsyncClient(
        server, timeout=300, api_key=os.environ.get("DRAGOMAN_API_KEY") or None
    ) as client:
        try:
            async for event in client.stream_subtitles(
                content, to, source=source, script_id=script_id
            ):
                yield event
        except DragomanClientError as exc:
            raise TranslationFailed(exc.code, exc.message) from exc


async def _local_events(
    settings: Settings, content: str, to: str, source: str | None, script_id: str | None
) -> AsyncGenerator[Event, None]:
    from dragoman.errors import DragomanError
    from dragoman.events import Failed
    from dragoman.subtitles import SubtitleRun, SubtitlesRequest
    from dragoman.wire import named

    async with _InProcess(_quiet(settings), provider=True) as backend:
        try:
            run = SubtitleRun(
                backend.runtime.translator,
                SubtitlesRequest(
                    content=content, target_lang=to, source_lang=source, script_id=script_id
                ),
            )
            await run.admit()
            async with aclosing(run.events()) as events:
                async for event in events:
                    if type(event) is Failed:
                        raise event.error
                    for pair in named(event):
                        yield pair
        except DragomanError as exc:
            raise TranslationFailed(exc.code, exc.message) from exc


def _cue_count(content: str) -> int | None:
    from dragoman.errors import DragomanError
    from dragoman.scripts.files import SubtitleFile

    try:
        return len(SubtitleFile(content).cues)
    except DragomanError:
        return None  # the service says why


def run_subtitles(
    *,
    path: Path,
    to: str,
    source: str | None,
    script_id: str | None,
    server: str | None,
    out: Path | None,
    settings: Settings | None,
) -> int:
    content = path.read_text(encoding="utf-8-sig")

    async def translate() -> str:
        if server:
            events = _remote_events(server, content, to, source, script_id)
        else:
            assert settings is not None
            events = _local_events(settings, content, to, source, script_id)
        progress = Progress(
            TextColumn("subtitles"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=stderr,
            transient=True,
            disable=not stderr.is_terminal,
        )
        done: dict[str, Any] | None = None
        with progress:
            bar = progress.add_task("cues", total=_cue_count(content))
            async with aclosing(events) as stream:
                async for name, data in stream:
                    if name == "cue":
                        progress.advance(bar)
                    elif name == "done":
                        done = data
        if done is None:
            raise TranslationFailed("connection_lost", "the translation ended without its file")
        # Where the cues are now: `dragoman export` and the API find them under this id.
        stderr.print(f"script {done['script_id']}", markup=False, highlight=False)
        result: str = done["content"]
        return result

    try:
        translated = asyncio.run(translate())
    except TranslationFailed as exc:
        _err(f"{exc.code}: {exc.message}")
        return exc.exit_code
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    if out is not None:
        out.write_text(translated, encoding="utf-8")
    else:
        sys.stdout.write(translated)
        sys.stdout.flush()
    return EXIT_OK


def run_export(
    *,
    script_id: str,
    to: str,
    format: str,
    server: str | None,
    out: Path | None,
    settings: Settings | None,
) -> int:
    async def fetch() -> str:
        if server:
            from dragoman.client import AsyncClient, DragomanClientError

            async with AsyncClient(
                server, timeout=60, api_key=os.environ.get("DRAGOMAN_API_KEY") or None
            ) as client:
                try:
                    return await client.export(script_id, to, format)
                except DragomanClientError as exc:
                    raise TranslationFailed(exc.code, exc.message) from exc
        from dragoman.errors import DragomanError
        from dragoman.records.store import ANYONE

        assert settings is not None
        async with _InProcess(_quiet(settings), provider=False) as backend:
            try:
                exported: str = await backend.runtime.scripts.export(script_id, ANYONE, to, format)
            except DragomanError as exc:
                raise TranslationFailed(exc.code, exc.message) from exc
            return exported

    try:
        exported = asyncio.run(fetch())
    except TranslationFailed as exc:
        _err(f"{exc.code}: {exc.message}")
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    if out is not None:
        out.write_text(exported, encoding="utf-8")
    else:
        sys.stdout.write(exported)
        sys.stdout.flush()
    return EXIT_OK
