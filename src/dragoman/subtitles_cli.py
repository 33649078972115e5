"""`dragoman subtitles` and `dragoman export`: in this process on the configured provider, or
against a running service (`--server`), like `dragoman translate`.

The translated file goes to `--out` or standard output; a progress bar (cues done of cues in
the file) goes to standard error. Exit codes as `dragoman translate`'s.
"""

from __future__ import annotations

import asyncio
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
    backend,
    quiet,
    stderr,
)

Event = tuple[str, dict[str, Any]]


async def _remote_events(
    server: str,
    api_key: str | None,
    content: str,
    to: str,
    source: str | None,
    script_id: str | None,
) -> AsyncGenerator[Event, None]:
    from dragoman.client import AsyncClient, DragomanClientError

    async with AsyncClient(server, timeout=300, api_key=api_key or None) as client:
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

    async with _InProcess(settings, provider=True) as backend:
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


def _cue_count(path: Path, content: str) -> int:
    """The file's cues; a file that does not parse is refused here, before anything loads."""
    from dragoman.errors import DragomanError
    from dragoman.scripts.files import SubtitleFile

    try:
        return len(SubtitleFile(content).cues)
    except DragomanError as exc:
        # The API names the field ("content: ..."); here it is the file the user gave.
        message = exc.message.removeprefix("content: ")
        raise TranslationFailed(exc.code, f"{path}: {message}") from exc


async def _checked_languages(
    server: str | None,
    settings: Settings | None,
    api_key: str | None,
    to: str,
    source: str | None,
) -> tuple[str, str | None]:
    """`--to` and `--from` as offered tags, checked before anything loads."""
    where = backend(server, settings, api_key, provider=False)
    try:
        return await where.languages(to, source)
    finally:
        await where.aclose()


def run_subtitles(
    *,
    path: Path,
    to: str,
    source: str | None,
    script_id: str | None,
    server: str | None,
    api_key: str | None,
    out: Path | None,
    settings: Settings | None,
) -> int:
    content = path.read_text(encoding="utf-8-sig")

    async def translate() -> str:
        cues = _cue_count(path, content)
        target, source_tag = await _checked_languages(server, settings, api_key, to, source)
        if server:
            events = _remote_events(server, api_key, content, target, source_tag, script_id)
        else:
            assert settings is not None
            events = _local_events(quiet(settings), content, target, source_tag, script_id)
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
            bar = progress.add_task("cues", total=cues)
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
        return exc.report()
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
    api_key: str | None,
    out: Path | None,
    settings: Settings | None,
) -> int:
    async def fetch() -> str:
        from dragoman.client import DragomanClientError
        from dragoman.errors import DragomanError
        from dragoman.records.store import ANYONE

        target, _ = await _checked_languages(server, settings, api_key, to, None)
        async with backend(server, settings, api_key, provider=False) as where:
            try:
                if isinstance(where, _InProcess):
                    scripts = where.runtime.scripts
                    exported: str = await scripts.export(script_id, ANYONE, target, format)
                    info = None if exported else await scripts.info(script_id, ANYONE)
                else:
                    exported = await where.client.export(script_id, target, format)
                    info = None if exported else await where.client.script(script_id)
            except (DragomanError, DragomanClientError) as exc:
                if exc.code == "not_found":
                    raise TranslationFailed(
                        "not_found",
                        f"no script {script_id} (dragoman scripts lists them).",
                    ) from exc
                raise TranslationFailed(exc.code, exc.message) from exc
        if info is not None:  # nothing in this language: say what there is
            languages = ", ".join(info["target_langs"]) or "none"
            raise TranslationFailed(
                "empty",
                f"script {script_id} has no translated segment in {target} "
                f"(its languages: {languages}).",
            )
        return exported

    try:
        exported = asyncio.run(fetch())
    except TranslationFailed as exc:
        return exc.report()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    if out is not None:
        out.write_text(exported, encoding="utf-8")
    else:
        sys.stdout.write(exported)
        sys.stdout.flush()
    return EXIT_OK
