"""The embedded model, for real: a few short translations, the queue, and cancellation."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from dragoman.engine.examples import EXAMPLES, LABELS
from dragoman.providers.local import bundled_model_path
from tests.conftest import ServerThread
from tests.helpers import raw_events, raw_text, v1_events, v1_text, wait_for_record

# What it checks does not depend on the database: CI's second pass leaves it out.
pytestmark = pytest.mark.once

HANGUL = re.compile(r"[\uac00-\ud7a3]")
KANA_KANJI = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
LONG_TEXT = " ".join(f"The cat number {i} sat on the red mat near the window." for i in range(40))


@pytest.fixture
def local(make_server: Callable[..., ServerThread]) -> Callable[..., ServerThread]:
    def make(**overrides: object) -> ServerThread:
        server = make_server(provider="local", local_threads=2, **overrides)
        deadline = time.monotonic() + 120
        while httpx.get(f"{server.url}/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the model did not load"
            time.sleep(0.1)
        return server

    return make


def _clean(text: str) -> None:
    for label in LABELS.values():
        assert f"{label}:" not in text
    for sentences in EXAMPLES.values():
        for sentence in sentences:
            assert sentence not in text


def test_real_translations(local: Callable[..., ServerThread]) -> None:
    server = local()
    with httpx.Client(base_url=server.url, timeout=120) as client:
        response, events = raw_events(client, {"lang": "Korean", "message": "Thank you very much."})
        assert response.status_code == 200
        korean = raw_text(events)
        assert HANGUL.search(korean), korean
        _clean(korean)

        response, events = v1_events(
            client, {"text": "I like green tea.", "target_lang": "ja", "source_lang": "en"}
        )
        japanese = v1_text(events)
        assert KANA_KANJI.search(japanese), japanese
        _clean(japanese)
        done = json.loads(events[-1].data)
        assert done["provider"] == "local" and done["status"] == "succeeded"
        assert done["usage"]["completion_tokens"] > 0

        response, events = v1_events(
            client, {"text": "Good night.\nSee you tomorrow.", "target_lang": "fr"}
        )
        french = v1_text(events)
        assert french.count("\n") == 1 and all(line.strip() for line in french.split("\n")), french
        _clean(french)
        record = client.get(f"/v1/translations/{response.headers['x-translation-id']}").json()
        assert record["source_lang"] == "en"

        languages = {lang["tag"] for lang in client.get("/v1/languages").json()["languages"]}
        assert {"en", "ko", "ja", "zh", "fr", "es", "de"} <= languages
        bad = client.post("/v1/translations", json={"text": "hi", "target_lang": "ar"})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "unsupported_language"


class _Stream:
    """A v1 stream on a raw socket, read in a thread, that the test can drop at any moment."""

    def __init__(self, server: ServerThread, text: str) -> None:
        body = json.dumps({"text": text, "target_lang": "de"}).encode()
        self.sock = socket.create_connection(("127.0.0.1", server.port))
        self.sock.sendall(
            b"POST /v1/translations HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        self.events: list[tuple[str, dict[str, object]]] = []
        self.record_id = ""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        raw = b""
        try:
            while chunk := self.sock.recv(65536):
                raw += chunk
                self._parse(raw)
        except OSError:
            pass

    def _parse(self, raw: bytes) -> None:
        head, _, body = raw.partition(b"\r\n\r\n")
        match = re.search(rb"x-translation-id: (\w+)", head)
        self.record_id = match.group(1).decode() if match else ""
        data = b""
        while body:  # chunked transfer encoding
            size_line, sep, rest = body.partition(b"\r\n")
            if not sep:
                break
            size = int(size_line, 16)
            if size == 0 or len(rest) < size + 2:
                break
            data, body = data + rest[:size], rest[size + 2 :]
        events = []
        for block in data.decode().split("\n\n")[:-1]:
            fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
            events.append((fields.get("event", ""), json.loads(fields.get("data", "null"))))
        self.events = events

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]

    def wait_for(self, predicate: Callable[[], bool], seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while not predicate():
            assert time.monotonic() < deadline, self.events
            time.sleep(0.02)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(10)


@pytest.fixture
def streams() -> Iterator[list[_Stream]]:
    opened: list[_Stream] = []
    yield opened
    for stream in opened:
        stream.close()


def test_queue_positions_full_queue_and_cancellation(
    local: Callable[..., ServerThread], streams: list[_Stream]
) -> None:
    server = local(queue_max=2, local_parallel=1)
    running = _Stream(server, LONG_TEXT)
    streams.append(running)
    running.wait_for(lambda: "delta" in running.kinds())

    waiting_b = _Stream(server, "Hello.")
    streams.append(waiting_b)
    waiting_b.wait_for(lambda: "queued" in waiting_b.kinds())
    assert waiting_b.events[0][0] == "start" and waiting_b.events[1] == ("queued", {"position": 1})

    waiting_c = _Stream(server, "Good evening.")
    streams.append(waiting_c)
    waiting_c.wait_for(lambda: "queued" in waiting_c.kinds())
    assert waiting_c.events[1] == ("queued", {"position": 2})

    # The queue holds two: the next request is refused and not stored.
    full = httpx.post(
        f"{server.url}/translate", json={"lang": "de", "message": "One more."}, timeout=30
    )
    assert full.status_code == 503
    assert full.json()["error"]["code"] == "queue_full" and full.headers["retry-after"]

    # B leaves the queue: C moves up, B's record ends cancelled with nothing produced.
    waiting_b.close()
    waiting_c.wait_for(lambda: ("queued", {"position": 1}) in waiting_c.events[2:])
    record_b = wait_for_record(server.url, waiting_b.record_id, "cancelled")
    assert record_b["status"] == "cancelled" and record_b["translation"] == ""

    # The running client leaves: its generation stops and C is served.
    running.close()
    record_a = wait_for_record(server.url, running.record_id, "cancelled")
    assert record_a["status"] == "cancelled"
    usage = record_a["usage"]
    assert isinstance(usage, dict) and usage["completion_tokens"] < 300
    waiting_c.wait_for(lambda: "done" in waiting_c.kinds())
    done = waiting_c.events[-1][1]
    assert done["status"] == "succeeded" and done["translation"]


def test_time_in_the_queue_is_not_first_token_time(
    local: Callable[..., ServerThread], streams: list[_Stream]
) -> None:
    # Long enough for the running request's own first token on a busy machine.
    timeout_s = 5.0
    server = local(first_token_timeout_s=timeout_s, local_parallel=1)
    # The language pair's examples evaluated once, so the running request starts at once.
    httpx.post(f"{server.url}/translate", json={"lang": "de", "message": "Hi."}, timeout=60)
    # Two dozen sentences: many seconds of decoding, well past the timeout.
    running = _Stream(server, ". ".join(LONG_TEXT.split(". ")[:24]) + ".")
    streams.append(running)
    running.wait_for(lambda: "delta" in running.kinds())
    waiting = _Stream(server, "Good evening.")
    streams.append(waiting)
    waiting.wait_for(lambda: "queued" in waiting.kinds())
    # It waits for its turn while the long translation runs to its end, many seconds.
    waiting.wait_for(lambda: "done" in waiting.kinds() or "error" in waiting.kinds(), 180)
    assert waiting.events[-1][0] == "done", waiting.events[-1]
    assert running.kinds()[-1] == "done"
    # Its first token came long after the first-token timeout, counted from its start: the
    # time in the queue did not count against it.
    assert waiting.events[-1][1]["first_token_ms"] > timeout_s * 1000


def test_health_answers_while_generating(
    local: Callable[..., ServerThread], streams: list[_Stream]
) -> None:
    server = local()
    running = _Stream(server, LONG_TEXT)
    streams.append(running)
    running.wait_for(lambda: "delta" in running.kinds())
    for _ in range(5):
        assert httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200
    assert "done" not in running.kinds()


CHAT_TEMPLATE = (
    "{% for m in messages %}<start_of_turn>"
    "{{ 'model' if m['role'] == 'assistant' else 'user' }}\n{{ m['content'] }}<end_of_turn>\n"
    "{% endfor %}<start_of_turn>model\n"
)


def test_model_path_with_chat_template(local: Callable[..., ServerThread], tmp_path: Path) -> None:
    """A user's own instruct GGUF: here the bundled file given a chat template."""
    copy = tmp_path / "instruct.gguf"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "gguf.scripts.gguf_new_metadata",
            str(bundled_model_path()),
            str(copy),
            "--chat-template",
            CHAT_TEMPLATE,
            "--force",
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    server = local(model_path=str(copy))
    with httpx.Client(base_url=server.url, timeout=120) as client:
        response, events = v1_events(client, {"text": "Good night.", "target_lang": "ko"})
    assert response.status_code == 200
    start, done = json.loads(events[0].data), json.loads(events[-1].data)
    assert start["model"] == "instruct.gguf"
    assert done["status"] == "succeeded" and done["model"] == "instruct.gguf"


def test_unloadable_model_fails_requests(
    make_server: Callable[..., ServerThread], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a model")
    server = make_server(provider="local", model_path=str(broken))
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.get("/readyz").json()["error"]["code"] == "not_ready"
        response = client.post("/translate", json={"lang": "ko", "message": "hello"})
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "upstream_error"
        record = client.get(f"/v1/translations/{response.headers['x-translation-id']}").json()
        assert record["status"] == "failed"
