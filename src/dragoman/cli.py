"""The `dragoman` command: serve, translate, history, subtitles, export, keys."""

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


@app.callback()
def _root() -> None:
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

    asyncio.run(Runtime.prepare_database(settings))
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


# translate and history: in-process on the configured provider, or against --server.

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="DRAGOMAN_SERVER",
        help="URL of a running dragoman service; without it the configured provider runs "
        "in this process.",
    ),
]


@app.command()
def translate(
    to: Annotated[str, typer.Option("--to", help="Target language tag, e.g. ko-KR.")],
    text: Annotated[
        str | None, typer.Argument(help="Text to translate; else --file or stdin.")
    ] = None,
    source: Annotated[
        str | None, typer.Option("--from", help="Source language; detected if absent.")
    ] = None,
    script: Annotated[
        str | None, typer.Option("--script", help="Script id to file the records under.")
    ] = None,
    server: ServerOption = None,
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
        _fail_usage(f"no such file: {file}")
    settings = None if server else _settings_or_exit()
    code = run_translate(
        text=text,
        to=to,
        source=source,
        script_id=script,
        server=server,
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
    server: ServerOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON for machines.")] = False,
    limit: Annotated[
        int, typer.Option(help="At most this many records, newest first.", min=1)
    ] = 50,
) -> None:
    """Show the stored translations, newest first."""
    from dragoman.translate_cli import run_history

    settings = None if server else _settings_or_exit()
    raise typer.Exit(
        run_history(
            script_id=script, server=server, as_json=as_json, limit=limit, settings=settings
        )
    )


@app.command()
def subtitles(
    path: Annotated[Path, typer.Argument(help="An SRT or WebVTT file.", metavar="FILE")],
    to: Annotated[str, typer.Option("--to", help="Target language tag, e.g. ko.")],
    source: Annotated[
        str | None, typer.Option("--from", help="Source language; detected if absent.")
    ] = None,
    script: Annotated[
        str | None, typer.Option("--script", help="Script id for the cues (default: a new one).")
    ] = None,
    server: ServerOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the translated file here, not stdout.")
    ] = None,
) -> None:
    """Translate a subtitle file cue by cue, keeping its numbering and timings."""
    from dragoman.subtitles_cli import run_subtitles

    if not path.is_file():
        _fail_usage(f"no such file: {path}")
    settings = None if server else _settings_or_exit()
    raise typer.Exit(
        run_subtitles(
            path=path,
            to=to,
            source=source,
            script_id=script,
            server=server,
            out=out,
            settings=settings,
        )
    )


@app.command()
def export(
    script: Annotated[str, typer.Argument(help="The script's id.", metavar="SCRIPT_ID")],
    to: Annotated[str, typer.Option("--to", help="Which translation: a language tag.")],
    format: Annotated[
        str, typer.Option("--format", help="txt, jsonl, or srt / vtt for subtitle scripts.")
    ] = "txt",
    server: ServerOption = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write here, not stdout.")] = None,
) -> None:
    """Write a script's translated segments, in order."""
    from dragoman.subtitles_cli import run_export

    if format not in ("txt", "jsonl", "srt", "vtt"):
        _fail_usage("--format must be txt, jsonl, srt or vtt.")
    settings = None if server else _settings_or_exit()
    raise typer.Exit(
        run_export(
            script_id=script, to=to, format=format, server=server, out=out, settings=settings
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

    settings = _settings_or_exit()

    async def run() -> Any:
        async with Runtime.open(settings, "records") as runtime:
            return await work(runtime.keys)

    try:
        return asyncio.run(run())
    except (DatabaseUnavailable, SQLAlchemyError, OSError) as exc:
        # One line, no traceback: the URL may carry a password, the message need not.
        cause = type(exc.__cause__ or exc).__name__
        typer.echo(f"dragoman: the database cannot be used ({cause}).", err=True)
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


def main() -> None:
    app(prog_name="dragoman")


if __name__ == "__main__":
    main()
