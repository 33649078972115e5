"""The `dragoman` command: serve, translate, history, scripts, subtitles, export, keys.

Every command checks its arguments before it opens anything (a database, an engine process,
a model), and says its errors in its own words (`--to`, not `target_lang`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from dragoman.config import Settings

app = typer.Typer(
    name="dragoman",
    help="Live machine translation streamed over Server-Sent Events.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        from dragoman import __version__

        typer.echo(f"dragoman {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Live machine translation streamed over Server-Sent Events."""


def _fail_usage(message: str) -> None:
    typer.echo(f"dragoman: {message}", err=True)
    raise typer.Exit(2)


def _settings_or_exit() -> Settings:
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        _fail_usage(f"bad configuration: {problems}")
        raise AssertionError from None  # unreachable


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[
        int | None,
        typer.Option(
            help="HTTP worker processes (default 1). With the local provider they share one "
            "engine process, which holds the only copy of the model.",
            min=1,
        ),
    ] = None,
) -> None:
    """Start the HTTP service."""
    settings = _settings_or_exit()
    count = workers or 1
    metrics_dir = None
    if count > 1:
        # Each worker writes its metrics here and /metrics adds them up; fresh for this run,
        # so that no dead worker's values from an earlier one are counted. Set before anything
        # imports prometheus_client in this process: the engine's supervisor counts its
        # restarts here, and they must land in the same directory.
        metrics_dir = tempfile.mkdtemp(prefix="dragoman-metrics-")
        os.environ[_MULTIPROC_ENV] = metrics_dir
    try:
        _serve(settings, host, port, count)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _serve(settings: Settings, host: str, port: int, count: int) -> None:
    import uvicorn

    from dragoman.auth import BOUND_LOOPBACK_ENV, is_loopback, serve_refusal
    from dragoman.logging import configure_logging
    from dragoman.runtime import PREPARED_ENV, Runtime

    configure_logging(settings.log_level)
    refusal = serve_refusal(settings, host, count)
    if refusal is not None:
        _fail_usage(refusal)
    uses_engine = settings.provider == "local"
    if settings.upstreams:
        from dragoman.providers.upstreams.config import UpstreamsFileError, load

        try:
            upstreams = load(settings.upstreams)
        except UpstreamsFileError as exc:
            _fail_usage(exc.message)
            raise AssertionError from None  # unreachable
        uses_engine = any(spec.kind == "local" for spec in upstreams.upstreams)
    elif settings.provider == "openai" and settings.resolved_api_key() is None:
        _fail_usage(
            "the openai provider needs OPENAI_API_KEY (for OpenAI itself) or OPENAI_BASE_URL "
            "(for a self-hosted OpenAI-compatible server)."
        )
    from dragoman.translate_cli import database_problem, say_database

    try:
        asyncio.run(Runtime.prepare_database(settings))
    except Exception as exc:
        typer.echo(f"dragoman: {database_problem(settings, exc)}", err=True)
        raise typer.Exit(1) from None
    say_database(settings)
    os.environ[PREPARED_ENV] = "1"
    os.environ[BOUND_LOOPBACK_ENV] = "1" if is_loopback(host) else "0"
    engine = None
    if uses_engine and not settings.engine_socket:
        from dragoman.engine.background import BackgroundEngine

        # One engine for every worker: started here, its socket handed to them.
        engine = BackgroundEngine(settings).start()
        os.environ["DRAGOMAN_ENGINE_SOCKET"] = engine.socket_path
    try:
        uvicorn.run(
            "dragoman.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=count,
            access_log=False,
            log_level=settings.log_level.lower(),
            timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 5,
        )
    finally:
        if engine is not None:
            engine.stop()


# translate, history, scripts, subtitles, export: in this process, or against --server.

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
_SERVER_HELP = "URL of a running dragoman service (e.g. http://127.0.0.1:8000); without it, "
# For the commands that translate: the model runs in the command itself.
TranslatingServer = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="DRAGOMAN_SERVER",
        help=_SERVER_HELP + "the configured provider runs in this process and its records go "
        "to the database (DRAGOMAN_DATABASE_URL).",
    ),
]
# For the commands that read records: no model is loaded.
ReadingServer = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="DRAGOMAN_SERVER",
        help=_SERVER_HELP + "the records are read from the database (DRAGOMAN_DATABASE_URL).",
    ),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="DRAGOMAN_API_KEY",
        help="The API key for a --server that needs one (DRAGOMAN_AUTH=keys); the variable "
        "keeps it out of the process list.",
    ),
]
ToOption = Annotated[
    str, typer.Option("--to", help="Target language: a tag (ko, pt-BR) or a name (Korean).")
]
FromOption = Annotated[
    str | None,
    typer.Option("--from", help="Source language (tag or name); detected when absent."),
]


def _check_script(script: str | None) -> None:
    from dragoman.translate_cli import script_id_problem

    problem = script_id_problem(script) if script is not None else None
    if problem is not None:
        _fail_usage(problem)


@app.command()
def translate(
    to: ToOption,
    text: Annotated[
        str | None, typer.Argument(help="Text to translate; else --file or stdin.")
    ] = None,
    source: FromOption = None,
    script: Annotated[
        str | None,
        typer.Option(
            "--script",
            help="Translate as the next segments of this script (with its earlier segments "
            "and glossary as context), so that `dragoman export` gives them back.",
        ),
    ] = None,
    server: TranslatingServer = None,
    api_key: ApiKeyOption = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="Translate this file line by line.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the translation here instead of stdout.")
    ] = None,
) -> None:
    """Translate a text (or a file, or stdin, line by line), printing it as it streams."""
    from dragoman.translate_cli import run_translate

    if text is not None and file is not None:
        _fail_usage("give a text or --file, not both.")
    if text is None and file is None and sys.stdin.isatty():
        _fail_usage("give a text, --file PATH, or pipe text on standard input.")
    if file is not None and not file.is_file():
        _fail_usage(f"--file: no such file: {file}")
    _check_script(script)
    settings = None if server else _settings_or_exit()
    code = run_translate(
        text=text,
        to=to,
        source=source,
        script_id=script,
        server=server,
        api_key=api_key,
        file=file,
        out=out,
        settings=settings,
    )
    raise typer.Exit(code)


@app.command()
def history(
    script: Annotated[
        str | None, typer.Option("--script", help="Only this script's records.")
    ] = None,
    server: ReadingServer = None,
    api_key: ApiKeyOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON for machines.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many records.", min=1)] = 50,
) -> None:
    """List the stored translations (all, or one script's), newest first, as a table."""
    from dragoman.translate_cli import run_history

    _check_script(script)
    settings = None if server else _settings_or_exit()
    raise typer.Exit(
        run_history(
            script_id=script,
            server=server,
            api_key=api_key,
            as_json=as_json,
            limit=limit,
            settings=settings,
        )
    )


@app.command()
def scripts(
    server: ReadingServer = None,
    api_key: ApiKeyOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON for machines.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many scripts.", min=1)] = 50,
) -> None:
    """List the scripts, the last active first: segments, languages, first and last time."""
    from dragoman.translate_cli import run_scripts

    settings = None if server else _settings_or_exit()
    raise typer.Exit(
        run_scripts(server=server, api_key=api_key, as_json=as_json, limit=limit, settings=settings)
    )


@app.command()
def subtitles(
    path: Annotated[Path, typer.Argument(help="An SRT or WebVTT file.", metavar="FILE")],
    to: ToOption,
    source: FromOption = None,
    script: Annotated[
        str | None, typer.Option("--script", help="Script id for the cues (default: a new one).")
    ] = None,
    server: TranslatingServer = None,
    api_key: ApiKeyOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the translated file here, not stdout.")
    ] = None,
) -> None:
    """Translate a subtitle file cue by cue, keeping its numbering and timings."""
    from dragoman.subtitles_cli import run_subtitles

    if not path.is_file():
        _fail_usage(f"no such file: {path}")
    _check_script(script)
    settings = None if server else _settings_or_exit()
    raise typer.Exit(
        run_subtitles(
            path=path,
            to=to,
            source=source,
            script_id=script,
            server=server,
            api_key=api_key,
            out=out,
            settings=settings,
        )
    )


@app.command()
def export(
    script: Annotated[str, typer.Argument(help="The script's id.", metavar="SCRIPT_ID")],
    to: Annotated[str, typer.Option("--to", help="Which translation: a language tag or name.")],
    format: Annotated[
        str, typer.Option("--format", help="txt, jsonl, or srt / vtt for subtitle scripts.")
    ] = "txt",
    server: ReadingServer = None,
    api_key: ApiKeyOption = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write here, not stdout.")] = None,
) -> None:
    """Write a script's translated segments in one language, in order."""
    from dragoman.subtitles_cli import run_export

    if format not in ("txt", "jsonl", "srt", "vtt"):
        _fail_usage("--format must be txt, jsonl, srt or vtt.")
    _check_script(script)
    settings = None if server else _settings_or_exit()
    raise typer.Exit(
        run_export(
            script_id=script,
            to=to,
            format=format,
            server=server,
            api_key=api_key,
            out=out,
            settings=settings,
        )
    )


keys_app = typer.Typer(
    help="API keys (for DRAGOMAN_AUTH=keys): create, list, revoke.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")


def _with_keys(work: Any) -> Any:
    """Run `work(keys)` on the configured database, migrated first."""
    from sqlalchemy.exc import SQLAlchemyError

    from dragoman.errors import DatabaseUnavailable
    from dragoman.runtime import Runtime
    from dragoman.translate_cli import database_problem, say_database

    settings = _settings_or_exit()

    async def run() -> Any:
        async with Runtime.open(settings, "records") as runtime:
            say_database(settings)
            return await work(runtime.keys)

    try:
        return asyncio.run(run())
    except (DatabaseUnavailable, SQLAlchemyError, OSError) as exc:
        # One line, no traceback, no password.
        typer.echo(f"dragoman: {database_problem(settings, exc)}", err=True)
        raise typer.Exit(1) from None


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="Who or what the key is for.")],
    rpm: Annotated[
        int | None, typer.Option(min=1, help="Requests per minute (default DRAGOMAN_DEFAULT_RPM).")
    ] = None,
    cpm: Annotated[
        int | None,
        typer.Option(min=1, help="Characters per minute (default DRAGOMAN_DEFAULT_CPM)."),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Concurrent translations (default DRAGOMAN_DEFAULT_CONCURRENCY)."),
    ] = None,
) -> None:
    """Create a key. Its secret is printed once, alone on the last line."""
    if not name.strip() or len(name) > 128:
        _fail_usage("--name must be 1 to 128 characters.")
    key, secret = _with_keys(
        lambda keys: keys.create(name, rpm=rpm, cpm=cpm, concurrency=concurrency)
    )
    typer.echo(f"id: {key.id}")
    typer.echo(f"name: {key.name}")
    typer.echo("secret (shown only now; send it as Authorization: Bearer <secret>):")
    typer.echo(secret)


@keys_app.command("list")
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="JSON for machines.")] = False,
) -> None:
    """List the keys (never their secrets)."""
    import json

    found = _with_keys(lambda keys: keys.list())
    if as_json:
        typer.echo(json.dumps([key.public() for key in found], indent=2))
        return
    for key in found:
        limits = " ".join(
            f"{label}={value if value is not None else 'default'}"
            for label, value in (("rpm", key.rpm), ("cpm", key.cpm), ("conc", key.concurrency))
        )
        state = f"revoked {key.revoked_at}" if key.revoked_at else "active"
        typer.echo(f"{key.id}\t{key.name}\t{limits}\t{state}")


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id.")]) -> None:
    """Revoke a key: every server refuses it within a few seconds."""
    if not _with_keys(lambda keys: keys.revoke(key_id)):
        typer.echo(f"dragoman: no such key: {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")


live_app = typer.Typer(
    help="Live sessions: one speaker, listeners each in their own language.",
    no_args_is_help=True,
)
app.add_typer(live_app, name="live")
LiveServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="DRAGOMAN_SERVER",
        help="URL of the running dragoman service (default http://127.0.0.1:8000).",
    ),
]


@live_app.command("start")
def live_start(
    to: Annotated[
        str, typer.Option("--to", help="Languages to translate into, comma-separated: ko,ja.")
    ] = "",
    title: Annotated[str | None, typer.Option("--title", help="What listeners see.")] = None,
    script: Annotated[
        str | None, typer.Option("--script", help="Script id for the segments (default: new).")
    ] = None,
    source: Annotated[
        str | None, typer.Option("--from", help="The speaker's language; detected if absent.")
    ] = None,
    partial: Annotated[
        bool,
        typer.Option(
            "--partial",
            help="Lines are a recogniser's guesses: '~ text' replaces the guess of the "
            "utterance being spoken, '= text' (or no mark) is its final text.",
        ),
    ] = False,
    vosk: Annotated[
        bool,
        typer.Option(
            "--vosk",
            help='Lines are Vosk\'s JSON results: {"partial": ...} guesses, {"text": ...} '
            "final texts.",
        ),
    ] = False,
    keep_open: Annotated[
        bool, typer.Option("--keep-open", help="Leave the session open at the end of input.")
    ] = False,
    qr: Annotated[
        bool | None,
        typer.Option("--qr/--no-qr", help="Print a QR code of the listeners' URL (terminal)."),
    ] = None,
    server: LiveServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Open a live session, print its join code and URL, and send each line of standard input
    as a segment (pipe a speech-to-text program into it)."""
    from dragoman.live_cli import run_start

    languages = [lang.strip() for lang in to.split(",") if lang.strip()]
    raise typer.Exit(
        run_start(
            to=languages,
            title=title,
            script_id=script,
            source=source,
            server=server,
            api_key=api_key,
            partial=partial,
            vosk=vosk,
            keep_open=keep_open,
            qr=qr,
            lines=sys.stdin,
        )
    )


@live_app.command("watch")
def live_watch(
    code: Annotated[str, typer.Argument(help="The session's join code.", metavar="CODE")],
    lang: Annotated[str, typer.Option("--lang", help="The language to read it in, e.g. ko.")],
    sources: Annotated[
        bool, typer.Option("--sources", help="Print what was said above each translation.")
    ] = False,
    server: LiveServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Print a live session in one language as it is given, until it ends."""
    from dragoman.live_cli import run_watch

    raise typer.Exit(
        run_watch(code=code, lang=lang, server=server, api_key=api_key, sources=sources)
    )


def main() -> None:
    app(prog_name="dragoman")


if __name__ == "__main__":
    main()
