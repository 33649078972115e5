"""`dragoman translate` and `dragoman history`: in-process and against a server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dragoman.cli import app
from tests.conftest import ServerThread
from tests.fake_openai import FakeOpenAI, default_pieces
from tests.helpers import pieces_directive

runner = CliRunner()


@pytest.fixture
def cli_env(fake: FakeOpenAI, db_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "DRAGOMAN_PROVIDER": "openai",
        "OPENAI_BASE_URL": fake.base_url,
        "DRAGOMAN_DATABASE_URL": db_url,
        "DRAGOMAN_SERVER": "",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def test_in_process_translate_keeps_markup_and_stores_records(cli_env: dict[str, str]) -> None:
    pieces = ["[bold]", "not bold", "[/bold] :smile:"]
    result = runner.invoke(
        app, ["translate", pieces_directive(pieces), "--to", "ko", "--script", "c1"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "".join(pieces) + "\n"
    history = runner.invoke(app, ["history", "--script", "c1", "--json"])
    assert history.exit_code == 0
    records = json.loads(history.stdout)
    assert [r["translation"] for r in records] == ["".join(pieces)]
    table = runner.invoke(app, ["history", "--script", "c1"])
    assert "[bold]" in table.stdout and "[/bold]" in table.stdout  # not eaten as markup


def test_file_line_by_line(cli_env: dict[str, str], tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("first line here\n\nsecond one\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    result = runner.invoke(
        app, ["translate", "--file", str(source), "--out", str(out), "--to", "fr", "--script", "f"]
    )
    assert result.exit_code == 0, result.output
    expected = (
        "".join(default_pieces("first line here"))
        + "\n\n"
        + "".join(default_pieces("second one"))
        + "\n"
    )
    assert out.read_text(encoding="utf-8") == expected
    history = json.loads(runner.invoke(app, ["history", "--script", "f", "--json"]).stdout)
    assert len(history) == 2


def test_stdin(cli_env: dict[str, str]) -> None:
    result = runner.invoke(app, ["translate", "--to", "de"], input="alpha beta\ngamma\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == "T:alpha beta\nT:gamma\n"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["translate", "hi", "--to", "not a tag"], 2),
        (["translate", "hi"], 2),
        (["translate", "x [[error:500]]", "--to", "ko"], 1),
        (["translate", "a b c [[drop:2]]", "--to", "ko"], 1),
        (["translate", "hi", "--to", "ko", "--server", "http://127.0.0.1:9"], 3),
        (["history", "--server", "http://127.0.0.1:9"], 3),
    ],
)
def test_exit_codes(cli_env: dict[str, str], args: list[str], code: int) -> None:
    result = runner.invoke(app, args, input="")
    assert result.exit_code == code, result.output


def test_subprocess_against_server(
    make_server: Callable[..., ServerThread], tmp_path: Path
) -> None:
    server = make_server()
    env = {**os.environ, "DRAGOMAN_SERVER": server.url}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dragoman",
            "translate",
            "hello big world",
            "--to",
            "ja",
            "--script",
            "sub",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "T:hello big world\n"
    listed = subprocess.run(
        [sys.executable, "-m", "dragoman", "history", "--script", "sub", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert json.loads(listed.stdout)[0]["translation"] == "T:hello big world"
    failed = subprocess.run(
        [sys.executable, "-m", "dragoman", "translate", "x [[error:429]]", "--to", "ja"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert failed.returncode == 1
    assert "upstream_rate_limited" in failed.stderr and failed.stdout == ""
