"""Faults on purpose: a reader that never reads, the database gone during streams, upstream
errors inside the stream. (Process crashes are in test_process_lifecycle.py.)"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import httpx
from httpx_sse import connect_sse

from tests.conftest import ServerThread
from tests.fake_openai import FakeOpenAI
from tests.helpers import run_sql, v1_events, wait_for_record, wait_until


def _never_reading_client(port: int, body: dict[str, object]) -> socket.socket:
    """Sends the request, then reads nothing: its receive window fills and stays full."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    payload = json.dumps(body).encode()
    sock.sendall(
        b"POST /v1/translations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload)
    )
    return sock


def test_a_reader_that_never_reads_is_dropped_and_holds_little(
    make_server: Callable[..., ServerThread], fake: FakeOpenAI
) -> None:
    server = make_server(send_timeout_s=1, keepalive_s=0.2)
    pieces, size = 2000, 20_000  # 40 MB upstream
    sock = _never_reading_client(
        server.port, {"text": f"x [[big:never-reads:{pieces}:{size}]]", "target_lang": "ko"}
    )
    try:
        assert fake.closed_event("never-reads").wait(60), "the upstream was read on"

        def newest() -> dict[str, object] | None:
            items = httpx.get(f"{server.url}/v1/translations").json()["items"]
            return items[0] if items and items[0]["status"] != "streaming" else None

        record = wait_until(newest)
    finally:
        sock.close()
    assert record is not None and record["status"] == "cancelled"
    # What the server took from the upstream is what the socket buffers held, not the 40 MB.
    assert 0 < len(str(record["translation"])) < pieces * size // 4


def test_a_slow_resumable_listener_is_dropped_and_the_translation_runs_on(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(send_timeout_s=1, keepalive_s=0.2)
    body = {"text": "x [[big:slow-listener:300:20000]]", "target_lang": "ko", "resumable": True}
    sock = _never_reading_client(server.port, body)
    try:
        # The run is not held back by its listener: it reaches its end, stored.
        def finished() -> dict[str, object] | None:
            items = httpx.get(f"{server.url}/v1/translations").json()["items"]
            return items[0] if items and items[0]["status"] == "succeeded" else None

        record = wait_until(finished, seconds=60)
    finally:
        sock.close()
    assert record is not None
    assert len(str(record["translation"])) == 300 * 20_000
    with httpx.Client(base_url=server.url, timeout=30) as client:
        url = f"/v1/translations/{record['id']}/events"
        with connect_sse(client, "GET", url, headers={"Last-Event-ID": "299"}) as source:
            tail = [e for e in source.iter_sse() if e.data]
    assert [e.event for e in tail] == ["delta", "done"]


def test_database_gone_during_resumable_streams_then_back(
    client: httpx.Client, db_url: str
) -> None:
    client.post("/v1/translations", json={"text": "warm", "target_lang": "ko", "stream": False})
    run_sql(db_url, "ALTER TABLE translations RENAME TO translations_away")
    body = {"text": "a b", "target_lang": "ko", "resumable": True}
    first = client.post("/v1/translations", json=body)
    # Its first events were out when the write failed: in-band, and in the replay too.
    assert first.status_code == 200
    assert '"code":"database_unavailable"' in first.text
    record_id = first.headers["x-translation-id"]
    replay = client.get(f"/v1/translations/{record_id}/events")
    assert replay.text == first.text
    second = client.post("/v1/translations", json=body)
    assert second.status_code == 503
    assert second.json()["error"]["code"] == "database_unavailable"
    assert "x-translation-id" not in second.headers
    run_sql(db_url, "ALTER TABLE translations_away RENAME TO translations")
    with connect_sse(client, "POST", "/v1/translations", json=body) as source:
        events = list(source.iter_sse())
        third_id = source.response.headers["x-translation-id"]
    assert events[-1].event == "done"
    base = str(client.base_url).rstrip("/")
    assert wait_for_record(base, third_id, "succeeded")["status"] == "succeeded"


def test_an_error_object_inside_the_stream_is_in_band_upstream_error(
    client: httpx.Client,
) -> None:
    response, events = v1_events(client, {"text": "a b c d [[errevent:2]]", "target_lang": "ko"})
    assert response.status_code == 200
    assert [e.event for e in events] == ["start", "delta", "delta", "error"]
    assert json.loads(events[-1].data)["error"]["code"] == "upstream_error"
    record = client.get(f"/v1/translations/{response.headers['x-translation-id']}").json()
    assert record["status"] == "failed" and record["translation"] == "T:a"


def test_an_error_object_before_any_piece_is_502(client: httpx.Client) -> None:
    answer = client.post("/translate", json={"lang": "ko", "message": "a [[errevent:0]]"})
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "upstream_error"
