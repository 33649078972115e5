"""Request bodies over DRAGOMAN_MAX_BODY_BYTES: 413 `request_too_large`, before they are read
whole."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import httpx

from tests.conftest import ServerThread

LIMIT = 2048


def test_declared_length_over_the_limit_is_refused(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(max_body_bytes=LIMIT)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for path, body in (
            ("/v1/translations", {"text": "x" * LIMIT, "target_lang": "ko", "stream": False}),
            ("/translate", {"lang": "ko", "message": "x" * LIMIT}),
        ):
            response = client.post(path, json=body)
            assert response.status_code == 413, path
            assert response.json()["error"]["code"] == "request_too_large"
        small = client.post(
            "/v1/translations", json={"text": "Hello", "target_lang": "ko", "stream": False}
        )
        assert small.status_code == 200
        assert len(client.get("/v1/translations").json()["items"]) == 1  # refusals not stored


def test_a_chunked_body_is_refused_once_it_passes_the_limit(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(max_body_bytes=LIMIT)
    head = (
        "POST /v1/translations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = json.dumps({"text": "x" * (LIMIT + 100), "target_lang": "ko"}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall(head.encode() + f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        # The body is not finished (no last chunk): the answer comes anyway.
        answer = b""
        while b"\r\n\r\n" not in answer or b"request_too_large" not in answer:
            data = conn.recv(65536)
            if not data:
                break
            answer += data
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b'"request_too_large"' in answer


def test_default_limit_is_one_mebibyte(client: httpx.Client) -> None:
    body = {"text": "x" * 1_048_576, "target_lang": "ko"}
    assert client.post("/v1/translations", json=body).status_code == 413
    # Under it, the text's own limit answers instead (DRAGOMAN_MAX_TEXT_CHARS).
    body = {"text": "x" * 20_000, "target_lang": "ko"}
    response = client.post("/v1/translations", json=body)
    assert response.json()["error"]["code"] == "text_too_long"
