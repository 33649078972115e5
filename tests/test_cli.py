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


def test_version() -> None:
    from dragoman import __version__

    result = runner.invoke(app, ["--version"])
    assert (result.exit_code, result.stdout) == (0, f"dragoman {__version__}\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["translate", "Hi", "--to", "xx-bad!"],
         '--to: "xx-bad!" is not a well-formed language tag.'),
        (["translate", "Hi", "--to", "Klingon"],
         '--to: "Klingon" is not offered by the embedded model (offered: en, ko, ja, zh, fr, '
         "es, de)."),
        (["translate", "Hi", "--to", "ko", "--from", "12"],
         '--from: "12" is not a well-formed language tag.'),
        (["translate", "Hi", "--to", "ko", "--script", "bad id"],
         "--script: must be 1 to 128 letters, digits or . _ : - (no spaces)."),
        (["translate", "Too long a text", "--to", "ko"],
         "the text: 15 characters; at most 5 (DRAGOMAN_MAX_TEXT_CHARS)."),
        (["translate", "", "--to", "ko"], "nothing to translate (the text is empty)."),
        (["subtitles", "SRT", "--to", "tlh"],
         '--to: "tlh" is not offered by the embedded model (offered: en, ko, ja, zh, fr, es, '
         "de)."),
        (["export", "lecture-42", "--to", "Elvish"],
         '--to: "Elvish" is not a well-formed language tag.'),
        (["history", "--script", "a b"],
         "--script: must be 1 to 128 letters, digits or . _ : - (no spaces)."),
    ],
)  # fmt: skip
def test_arguments_are_checked_before_anything_is_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    # The embedded model with a model file that does not exist, and a database nobody made:
    # a command that opened either would fail differently, or leave the database behind.
    database = tmp_path / "data" / "d.db"
    monkeypatch.setenv("DRAGOMAN_PROVIDER", "local")
    monkeypatch.setenv("DRAGOMAN_MODEL_PATH", str(tmp_path / "no-such-model.gguf"))
    monkeypatch.setenv("DRAGOMAN_DATABASE_URL", f"sqlite+aiosqlite:///{database}")
    monkeypatch.setenv("DRAGOMAN_MAX_TEXT_CHARS", "5")
    monkeypatch.setenv("DRAGOMAN_SERVER", "")
    subtitles = tmp_path / "talk.srt"
    subtitles.write_text("1\n00:00:01,000 --> 00:00:02,000\nHi\n", encoding="utf-8")
    args = [str(subtitles) if arg == "SRT" else arg for arg in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert (result.stdout, result.stderr) == ("", f"dragoman: {message}\n")
    assert not database.parent.exists()


def test_language_names_and_the_server_s_languages(
    cli_env: dict[str, str], make_server: Callable[..., ServerThread]
) -> None:
    result = runner.invoke(app, ["translate", "Good day", "--to", "Korean", "--script", "names"])
    assert result.exit_code == 0, result.output
    [record] = json.loads(runner.invoke(app, ["history", "--json"]).stdout)
    assert (record["target_lang"], record["translation"]) == ("ko", "T:Good day")
    server = make_server()  # on the same database
    refused = runner.invoke(app, ["translate", "Hi", "--to", "tlh", "--server", server.url])
    assert refused.exit_code == 2
    assert refused.stderr == 'dragoman: --to: "tlh" is not offered by the server.\n'
    assert len(httpx_items(server.url)) == 1  # nothing more stored


def httpx_items(url: str) -> list[dict[str, object]]:
    import httpx

    items: list[dict[str, object]] = httpx.get(f"{url}/v1/translations").json()["items"]
    return items


def test_a_file_with_a_script_is_stored_as_its_segments_and_exported(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    lecture = tmp_path / "lecture.txt"
    lecture.write_text("Good morning.\nThe lecture starts.\n\nQuestions later.\n", "utf-8")
    result = runner.invoke(
        app, ["translate", "--file", str(lecture), "--to", "fr", "--script", "lecture-42"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "T:Good morning.\nT:The lecture starts.\n\nT:Questions later.\n"
    exported = runner.invoke(app, ["export", "lecture-42", "--to", "fr"])
    assert exported.exit_code == 0, exported.output
    assert exported.stdout == "T:Good morning.\nT:The lecture starts.\nT:Questions later.\n"
    records = json.loads(runner.invoke(app, ["history", "--json"]).stdout)
    assert [(r["script_id"], r["segment_index"]) for r in records] == [
        ("lecture-42", 2),
        ("lecture-42", 1),
        ("lecture-42", 0),
    ]
    [script] = json.loads(runner.invoke(app, ["scripts", "--json"]).stdout)
    assert (script["script_id"], script["segments"], script["target_langs"]) == (
        "lecture-42",
        3,
        ["fr"],
    )
    table = runner.invoke(app, ["scripts"], env={"COLUMNS": "100"})
    assert "lecture-42" in table.stdout and "│ 3 " in table.stdout
    history = runner.invoke(app, ["history"], env={"COLUMNS": "120"})
    assert "lecture-42 #2" in history.stdout  # the script column
    missing = runner.invoke(app, ["export", "lecture-42", "--to", "ko"])
    assert missing.exit_code == 1
    assert missing.stderr.endswith(
        "dragoman: script lecture-42 has no translated segment in ko (its languages: fr).\n"
    )


def test_a_file_with_a_script_through_a_server(
    make_server: Callable[..., ServerThread], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = make_server()
    monkeypatch.setenv("DRAGOMAN_SERVER", server.url)
    lecture = tmp_path / "lecture.txt"
    lecture.write_text("One.\nTwo.\n", "utf-8")
    result = runner.invoke(
        app, ["translate", "--file", str(lecture), "--to", "de", "--script", "remote-1"]
    )
    assert result.exit_code == 0, result.output
    assert [(r["segment_index"], r["text"]) for r in httpx_items(server.url)] == [
        (1, "Two."),
        (0, "One."),
    ]
    exported = runner.invoke(app, ["export", "remote-1", "--to", "de"])
    assert exported.stdout == "T:One.\nT:Two.\n"
    scripts = runner.invoke(app, ["scripts", "--json"])
    assert [s["script_id"] for s in json.loads(scripts.stdout)] == ["remote-1"]


def test_the_api_key_option(
    make_server: Callable[..., ServerThread], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_keys import create_key

    server = make_server(auth="keys")
    key_id, secret = create_key(db_url)
    monkeypatch.delenv("DRAGOMAN_API_KEY", raising=False)
    monkeypatch.setenv("DRAGOMAN_SERVER", server.url)
    refused = runner.invoke(app, ["scripts"])
    assert refused.exit_code == 1 and refused.stderr.startswith("dragoman: unauthorized: ")
    for command in (
        ["translate", "Hello", "--to", "ko", "--script", "keyed"],
        ["history", "--json"],
        ["scripts", "--json"],
        ["export", "keyed", "--to", "ko"],
    ):
        result = runner.invoke(app, [*command, "--api-key", secret])
        assert result.exit_code == 0, (command, result.output)
    [record] = json.loads(runner.invoke(app, ["history", "--json", "--api-key", secret]).stdout)
    assert record["key_id"] == key_id


def test_empty_lists_say_so(cli_env: dict[str, str]) -> None:
    history = runner.invoke(app, ["history"])
    assert (history.exit_code, history.stdout) == (0, "No translations yet.\n")
    scripts = runner.invoke(app, ["scripts"])
    assert scripts.stdout == "No scripts yet: translate with --script ID to start one.\n"
    assert runner.invoke(app, ["scripts", "--json"]).stdout == "[]\n"


def test_reading_commands_describe_themselves(cli_env: dict[str, str]) -> None:
    def help_text(command: str) -> str:
        return " ".join(runner.invoke(app, [command, "--help"]).stdout.replace("│", "").split())

    for command in ("history", "scripts", "export"):
        text = help_text(command)
        assert "records are read from the database" in text, command
        assert "provider runs in this process" not in text, command
    text = help_text("translate")
    assert "provider runs in this process" in text and "--api-key" in text


def test_one_database_wherever_a_command_runs(fake: FakeOpenAI, tmp_path: Path) -> None:
    data_home = tmp_path / "xdg"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRAGOMAN_")}
    env.update(
        {"XDG_DATA_HOME": str(data_home), "DRAGOMAN_PROVIDER": "openai",
         "OPENAI_BASE_URL": fake.base_url}
    )  # fmt: skip
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()

    def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dragoman", *args],
            env=env, cwd=cwd, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    translated = run(first, "translate", "Where is it kept", "--to", "fr")
    assert translated.returncode == 0, translated.stderr
    database = data_home / "dragoman" / "dragoman.db"
    assert translated.stderr == f"dragoman: database {database}\n"
    assert database.is_file() and list(first.iterdir()) == []
    listed = run(second, "history", "--json")
    assert [r["text"] for r in json.loads(listed.stdout)] == ["Where is it kept"]
    assert listed.stderr == f"dragoman: database {database}\n"


def test_the_database_is_named_without_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    from dragoman.config import describe_database

    url = "postgresql+asyncpg://dragoman:s3cret@127.0.0.1:9/dragoman"
    assert describe_database(url) == "postgresql+asyncpg://dragoman:***@127.0.0.1:9/dragoman"
    monkeypatch.setenv("DRAGOMAN_DATABASE_URL", url)
    result = runner.invoke(app, ["history"])
    assert result.exit_code == 1
    assert "s3cret" not in result.output
    assert result.stderr == (
        "dragoman: database_unavailable: the database cannot be used (ConnectionRefusedError): "
        "postgresql+asyncpg://dragoman:***@127.0.0.1:9/dragoman\n"
    )


def test_serve_says_which_database_it_uses(fake: FakeOpenAI, tmp_path: Path) -> None:
    from tests.conftest import free_port
    from tests.helpers import wait_until_answers

    env = {k: v for k, v in os.environ.items() if not k.startswith("DRAGOMAN_")}
    env.update(
        {"XDG_DATA_HOME": str(tmp_path / "xdg"), "DRAGOMAN_PROVIDER": "openai",
         "OPENAI_BASE_URL": fake.base_url, "DRAGOMAN_LOG_LEVEL": "warning"}
    )  # fmt: skip
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dragoman", "serve", "--port", str(port)],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        database = tmp_path / "xdg" / "dragoman" / "dragoman.db"
        assert proc.stderr.readline() == f"dragoman: database {database}\n"
        assert wait_until_answers(f"http://127.0.0.1:{port}/readyz", proc, 60)
    finally:
        proc.terminate()
        proc.wait(30)
        if proc.stderr is not None:
            proc.stderr.close()
    # One line, without the password, when the database cannot be used.
    env["DRAGOMAN_DATABASE_URL"] = "postgresql+asyncpg://dragoman:s3cret@127.0.0.1:9/dragoman"
    refused = subprocess.run(
        [sys.executable, "-m", "dragoman", "serve", "--port", str(port)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr == (
        "dragoman: the database cannot be used (ConnectionRefusedError): "
        "postgresql+asyncpg://dragoman:***@127.0.0.1:9/dragoman\n"
    )
