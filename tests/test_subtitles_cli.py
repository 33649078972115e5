"""`dragoman subtitles` and `dragoman export`: in-process and against a server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import srt
from typer.testing import CliRunner

from dragoman.cli import app
from tests.conftest import ServerThread
from tests.test_cli import cli_env  # noqa: F401 (fixture)
from tests.test_subtitles import SRT

runner = CliRunner()


def cues(content: str) -> list[tuple[int, object, object]]:
    return [(c.index, c.start, c.end) for c in srt.parse(content)]


def test_in_process_subtitles_then_export(
    cli_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    source = tmp_path / "in.srt"
    source.write_text(SRT, encoding="utf-8")
    out = tmp_path / "out.srt"
    result = runner.invoke(
        app, ["subtitles", str(source), "--to", "ko", "--out", str(out), "--script", "film-1"]
    )
    assert result.exit_code == 0, result.output
    translated = out.read_text(encoding="utf-8")
    assert cues(translated) == cues(SRT)
    assert [c.content for c in srt.parse(translated)] == ["T:" + c.content for c in srt.parse(SRT)]
    assert "film-1" in result.stderr

    exported = runner.invoke(app, ["export", "film-1", "--to", "ko", "--format", "srt"])
    assert exported.exit_code == 0, exported.output
    assert [(c.index, c.start, c.end, c.content) for c in srt.parse(exported.stdout)] == [
        (c.index, c.start, c.end, c.content) for c in srt.parse(translated)
    ]
    text = runner.invoke(app, ["export", "film-1", "--to", "ko"])
    assert text.stdout.splitlines()[0] == "T:Hello <i>there</i>,"


def test_bad_files_and_scripts_exit_2(
    cli_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    bad = tmp_path / "bad.srt"
    bad.write_text("not subtitles at all", encoding="utf-8")
    result = runner.invoke(app, ["subtitles", str(bad), "--to", "ko"])
    assert result.exit_code == 2
    assert result.stderr == f"dragoman: {bad}: not a valid SRT file.\n"  # in the CLI's words
    missing = runner.invoke(app, ["subtitles", str(tmp_path / "none.srt"), "--to", "ko"])
    assert missing.exit_code == 2
    unknown = runner.invoke(app, ["export", "no-such-script", "--to", "ko"])
    assert unknown.exit_code == 1
    assert unknown.stderr.endswith(
        "dragoman: no script no-such-script (dragoman scripts lists them).\n"
    )
    wrong = runner.invoke(app, ["export", "x", "--to", "ko", "--format", "docx"])
    assert wrong.exit_code == 2


def test_subprocess_against_server(
    make_server: Callable[..., ServerThread], tmp_path: Path
) -> None:
    server = make_server()
    source = tmp_path / "in.vtt"
    source.write_text("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nGood night.\n", encoding="utf-8")
    # A terminal as far as rich can tell: the progress bar is drawn on standard error.
    env = {**os.environ, "DRAGOMAN_SERVER": server.url, "TTY_COMPATIBLE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "dragoman", "subtitles", str(source), "--to", "de"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nT:Good night.\n"
    assert "subtitles" in done.stderr and "1/1" in done.stderr
    script = done.stderr.split("script ", 1)[1].split()[0]
    exported = subprocess.run(
        [sys.executable, "-m", "dragoman", "export", script, "--to", "de", "--format", "vtt"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout == done.stdout
