"""`dragoman live start` fed by a pipe and `dragoman live watch` printing the session, as
processes against a real server; and the Python client's live methods."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import threading
from collections.abc import Callable

import pytest

from dragoman.client import Client, NotFound
from dragoman.live_cli import partial_lines, vosk_lines
from tests.conftest import ServerThread
from tests.helpers import wait_until


def _dragoman(*args: str, **kw: object) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRAGOMAN_")}
    return subprocess.Popen(
        [sys.executable, "-m", "dragoman", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,  # type: ignore[call-overload]
    )


def test_a_piped_speaker_and_a_watcher(make_server: Callable[..., ServerThread]) -> None:
    server = make_server()
    speaker = _dragoman(
        "live", "start", "--to", "ko", "--title", "Lecture", "--server", server.url, "--no-qr",
        stdin=subprocess.PIPE,
    )  # fmt: skip
    assert speaker.stdin is not None and speaker.stdout is not None
    code_line = speaker.stdout.readline()
    url_line = speaker.stdout.readline()
    assert code_line.startswith("join code: ")
    code = code_line.split(": ", 1)[1].strip()
    assert url_line.strip() == f"listeners: {server.url}/live/{code}"
    watcher = _dragoman("live", "watch", code, "--lang", "ko", "--server", server.url)
    with Client(server.url) as client:
        assert wait_until(lambda: client.live_info(code)["listeners"] == {"ko": 1})
    said = "Good morning, everyone.\n\nThe council is in session.\n"
    _, speaker_err = speaker.communicate(said, timeout=60)
    assert speaker.returncode == 0, speaker_err
    out, err = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, err
    assert out.splitlines() == ["T:Good morning, everyone.", "T:The council is in session."]
    assert "the session has ended (closed)" in err
    assert "2 segments; the session is closed" in speaker_err


def test_watching_an_unknown_code_says_so(server: ServerThread) -> None:
    watcher = _dragoman("live", "watch", "ZZZZZ-ZZZZZ", "--lang", "ko", "--server", server.url)
    _, err = watcher.communicate(timeout=60)
    assert watcher.returncode != 0
    assert "not_found" in err and "code" in err


def test_recogniser_lines() -> None:
    lines = iter(["~ the city\n", "~ the city council\n", "= the city council met\n", "\n",
                  "plain line\n", "~ \n"])  # fmt: skip
    assert list(partial_lines(lines)) == [
        ("the city", False),
        ("the city council", False),
        ("the city council met", True),
        ("plain line", True),
    ]


def test_vosk_results() -> None:
    # As Vosk's recogniser prints them (PartialResult, then Result with word timings).
    lines = iter([
        '{\n', '  "partial" : "the city"\n', '}\n',
        '{"partial" : "the city council"}\n',
        '{"result" : [{"conf" : 1.0, "end" : 1.02, "start" : 0.51, "word" : "the"}], '
        '"text" : "the city council met"}\n',
        '{"partial" : ""}\n', '{"text" : ""}\n', 'LOG (VoskAPI:ReadDataFiles():model.cc:213)\n',
    ])  # fmt: skip
    assert list(vosk_lines(lines)) == [
        ("the city", False),
        ("the city council", False),
        ("the city council met", True),
    ]


def test_a_piped_recogniser_with_partial_text(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(live_mask_words=0, live_retranslate_ms=0)
    speaker = _dragoman(
        "live", "start", "--to", "ko", "--partial", "--server", server.url, "--no-qr",
        stdin=subprocess.PIPE,
    )  # fmt: skip
    assert speaker.stdout is not None
    code = speaker.stdout.readline().split(": ", 1)[1].strip()
    watcher = _dragoman("live", "watch", code, "--lang", "ko", "--server", server.url)
    with Client(server.url) as client:
        assert wait_until(lambda: client.live_info(code)["listeners"] == {"ko": 1})
    said = "~ the council\n~ the council met\n= The council met today.\n"
    _, speaker_err = speaker.communicate(said, timeout=60)
    assert speaker.returncode == 0, speaker_err
    out, err = watcher.communicate(timeout=60)
    assert out.splitlines() == ["T:The council met today."], err
    assert "1 segment; the session is closed" in speaker_err


def test_a_watcher_on_a_terminal_rewrites_the_open_line_then_keeps_the_final(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(live_mask_words=0, live_retranslate_ms=0, live_agreement=False)
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRAGOMAN_")}
    with Client(server.url) as client:
        session = client.live_start(["ko"])
        watcher = subprocess.Popen(
            [sys.executable, "-m", "dragoman", "live", "watch", session["join_code"], "--lang",
             "ko", "--server", server.url],
            env={**env, "TERM": "xterm", "COLUMNS": "80"}, stdout=follower,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(follower)
        screen = bytearray()

        def read() -> str:
            while select.select([leader], [], [], 0.05)[0]:
                try:
                    screen.extend(os.read(leader, 4096))
                except OSError:  # the watcher has gone
                    break
            return screen.decode(errors="replace")

        try:
            assert wait_until(lambda: client.live_info(session["join_code"])["listeners"])
            client.live_say(session["session_id"], "the council", final=False)
            assert wait_until(lambda: "T:the council" in read())
            client.live_say(session["session_id"], "The council met today.")
            assert wait_until(lambda: "T:The council met today." in read())
            client.live_close(session["session_id"])
            assert watcher.wait(30) == 0
            out = read()
        finally:
            watcher.kill()
            os.close(leader)
    # The guess's line became the final; it is not drawn again below it.
    after = out.split("T:The council met today.", 1)[1]
    assert "T:the council" not in after, repr(out)


def test_the_client_speaks_and_listens(server: ServerThread) -> None:
    with Client(server.url) as client:
        session = client.live_start(["ko"], title="Client")
        heard: list[tuple[str, dict[str, object]]] = []

        def listen() -> None:
            for event in client.live_events(session["join_code"], "ko"):
                heard.append((event.kind, event.data))

        thread = threading.Thread(target=listen)
        thread.start()
        assert wait_until(lambda: client.live_info(session["join_code"])["listeners"])
        assert client.live_say(session["session_id"], "One.")["segment_index"] == 0
        assert wait_until(lambda: any(kind == "done" for kind, _ in heard))
        assert client.live_close(session["session_id"])["status"] == "closed"
        thread.join(30)
        assert [kind for kind, _ in heard] == ["segment", "delta", "delta", "done", "closed"]
        with pytest.raises(NotFound):
            client.live_info("ZZZZZ-ZZZZZ")
