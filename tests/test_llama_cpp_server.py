"""The openai provider against a real OpenAI-compatible server: llama-cpp-python's own,
serving the bundled model on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator

import httpx
import pytest

from dragoman.providers.local import bundled_model_path
from tests.conftest import ServerThread, free_port
from tests.helpers import v1_events, wait_until_answers

# What it checks does not depend on the database: CI's second pass leaves it out.
pytestmark = pytest.mark.once


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(bundled_model_path()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_threads",
            "2",
            "--n_ctx",
            "1024",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        assert wait_until_answers(f"{base}/models", proc), "llama_cpp.server did not start"
        yield base
    finally:
        proc.terminate()
        proc.wait(30)


def test_streams_through_llama_cpp_server(
    make_server: Callable[..., ServerThread], llama_server: str
) -> None:
    # No model named and no key: the server's first listed model, and a placeholder key.
    server = make_server(openai_base_url=llama_server, first_token_timeout_s=120)
    with httpx.Client(base_url=server.url, timeout=180) as client:
        response, events = v1_events(
            client, {"text": "Thank you very much.", "target_lang": "ko", "source_lang": "en"}
        )
    assert response.status_code == 200
    kinds = [e.event for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "delta" in kinds
    start = json.loads(events[0].data)
    assert start["provider"] == "openai" and start["model"].endswith(".gguf")
    record = json.loads(events[-1].data)
    assert record["status"] == "succeeded" and record["translation"]
    # llama-cpp-python's server ignores stream_options.include_usage: no usage to store here.
