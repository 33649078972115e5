"""`dragoman live start` and `dragoman live watch`: a live session from a terminal, against a
running service.

`start` opens a session, prints its join code and the listeners' URL (and a QR code of it on a
terminal), then sends each line of its standard input as a segment: a speech-to-text program
can be piped into it. With `--partial`, lines are a recogniser's running guesses (see
`partial_lines`); with `--vosk`, Vosk's JSON results (`vosk_lines`). At the end of its input it
closes the session.

`watch` prints a session in one language as it is given: on a terminal the segment being
translated is rewritten in place as it grows; into a pipe, each segment's final translation is
one line.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.text import Text

from dragoman.translate_cli import EXIT_INTERRUPTED, EXIT_OK, TranslationFailed, _err

DEFAULT_SERVER = "http://127.0.0.1:8000"
# What `--partial` reads: a line per guess of the utterance being spoken, and a final line.
PARTIAL_MARK = "~ "
FINAL_MARK = "= "


def _client(server: str | None, api_key: str | None) -> Any:
    from dragoman.client import Client

    return Client(
        server or DEFAULT_SERVER,
        timeout=60,
        api_key=api_key or os.environ.get("DRAGOMAN_API_KEY") or None,
    )


def _failed(exc: Any) -> TranslationFailed:
    return TranslationFailed(exc.code, exc.message)


def partial_lines(lines: Iterator[str]) -> Iterator[tuple[str, bool]]:
    """(text, final) of a recogniser's output, one line each: `~ text` is the current guess of
    the utterance being spoken (it replaces the previous guess), `= text` its final text, and a
    line without a mark is a final text too. Empty lines are skipped."""
    for raw in lines:
        line = raw.rstrip("\r\n")
        if line.startswith(PARTIAL_MARK) or line == PARTIAL_MARK.strip():
            text, final = line[len(PARTIAL_MARK) :], False
        elif line.startswith(FINAL_MARK) or line == FINAL_MARK.strip():
            text, final = line[len(FINAL_MARK) :], True
        else:
            text, final = line, True
        if text.strip():
            yield text, final


def vosk_lines(lines: Iterator[str]) -> Iterator[tuple[str, bool]]:
    """(text, final) of Vosk's recogniser results as a program prints them: JSON objects, one
    after the other, each on one line or pretty-printed over several (as `KaldiRecognizer`
    returns them): `PartialResult()` `{"partial": "the city"}`, `Result()` and
    `FinalResult()` `{"text": "the city council met"}` (with `"result"` word timings when asked
    for). Other lines (Vosk's own log, say) and empty results are skipped."""
    import json

    buffer, depth, quoted, escaped = "", 0, False, False
    for line in lines:
        if depth == 0 and not line.lstrip().startswith("{"):
            continue  # between objects: Vosk's own log, blank lines
        buffer += line
        for char in line:
            if escaped:
                escaped = False
            elif quoted:
                escaped, quoted = char == "\\", char != '"'
            elif char == '"':
                quoted = True
            elif char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
        if depth > 0:
            continue
        text, buffer, depth = buffer, "", 0
        try:
            result = json.loads(text)
        except ValueError:
            continue
        if not isinstance(result, dict):
            continue
        partial, final = result.get("partial"), result.get("text")
        if isinstance(partial, str) and partial.strip():
            yield partial, False
        elif isinstance(final, str) and final.strip():
            yield final, True


def run_start(
    *,
    to: list[str],
    title: str | None,
    script_id: str | None,
    source: str | None,
    server: str | None,
    api_key: str | None,
    partial: bool,
    vosk: bool,
    keep_open: bool,
    qr: bool | None,
    lines: TextIO,
) -> int:
    from dragoman.client import DragomanClientError

    base = (server or DEFAULT_SERVER).rstrip("/")
    with _client(server, api_key) as client:
        try:
            session = client.live_start(to, title=title, script_id=script_id, source_lang=source)
        except DragomanClientError as exc:
            return _report(_failed(exc))
        url = base + session["viewer_url"]
        out = sys.stdout
        out.write(f"join code: {session['join_code']}\n")
        out.write(f"listeners: {url}\n")
        out.write(f"session:   {session['session_id']} (keep it private)\n")
        out.flush()
        if qr if qr is not None else out.isatty():
            import segno

            segno.make(url, error="m").terminal(out=out, compact=True)
            out.flush()
        said = 0
        try:
            if vosk:
                units = vosk_lines(lines)
            elif partial:
                units = partial_lines(lines)
            else:
                units = ((text, True) for text in _plain(lines))
            for text, final in units:
                answer = client.live_say(session["session_id"], text, final=final)
                if final:
                    said += 1
                    _err(f"segment {answer['segment_index']} → {', '.join(answer['languages'])}")
        except DragomanClientError as exc:
            return _report(_failed(exc))
        except KeyboardInterrupt:
            _err("interrupted")
            _close(client, session["session_id"], keep_open)
            return EXIT_INTERRUPTED
        _close(client, session["session_id"], keep_open)
        segments = "1 segment" if said == 1 else f"{said} segments"
        _err(f"{segments}; the session is {'open' if keep_open else 'closed'}")
    return EXIT_OK


def _plain(lines: TextIO) -> Iterator[str]:
    for line in lines:
        if line.strip():
            yield line.rstrip("\r\n")


def _close(client: Any, session_id: str, keep_open: bool) -> None:
    from dragoman.client import DragomanClientError

    if keep_open:
        return
    try:
        client.live_close(session_id)
    except DragomanClientError as exc:
        _err(f"the session could not be closed: {exc.message}")


def run_watch(
    *, code: str, lang: str, server: str | None, api_key: str | None, sources: bool
) -> int:
    from dragoman.client import DragomanClientError

    terminal = sys.stdout.isatty()
    console = Console(highlight=False, soft_wrap=True)
    shown: dict[int, str] = {}  # what the open segments read now
    said: dict[int, str] = {}
    with _client(server, api_key) as client:
        try:
            # On a terminal the open segments' lines are rewritten in place; piped, only the
            # finals are printed.
            display = Live(Text(""), console=console, auto_refresh=False) if terminal else None
            with display if display is not None else contextlib.nullcontext():
                for event in client.live_events(code, lang):
                    final = _watch_event(event.kind, event.data, shown, said, sources)
                    # The open lines first: a final printed while the live display still holds
                    # its segment's last revision would draw that line once more.
                    if display is not None:
                        display.update(Text("\n".join(shown.values())), refresh=True)
                    if final is not None:
                        _print_final(*final, console if display is not None else None)
        except DragomanClientError as exc:
            return _report(_failed(exc))
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
    return EXIT_OK


def _watch_event(
    kind: str,
    data: dict[str, Any],
    shown: dict[int, str],
    said: dict[int, str],
    sources: bool,
) -> tuple[str, str | None] | None:
    """Takes one event into what the open segments read; a finished segment's (translation,
    source if asked for) is given back to be printed."""
    if kind == "closed":
        _err(f"the session has ended ({data['reason']})")
        return None
    index: int | None = data.get("index")
    if index is None:
        return None
    if kind == "segment":
        said[index] = data["text"]
        shown.setdefault(index, "")
    elif kind == "delta":
        shown[index] = shown.get(index, "") + data["text"]
    elif kind == "revision":
        shown[index] = data["text"]
    elif kind in ("done", "error"):
        text = data["translation"] if kind == "done" else f"[{data['error']['message']}]"
        shown.pop(index, None)
        source = said.pop(index, None)
        return text, source if sources else None
    return None


def _print_final(text: str, source: str | None, console: Console | None) -> None:
    if console is not None:
        if source:
            console.print(Text(source, style="dim"))
        console.print(Text(text))
        return
    if source:
        sys.stdout.write(f"# {source}\n")
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _report(failed: TranslationFailed) -> int:
    _err(f"{failed.code}: {failed.message}")
    return failed.exit_code
