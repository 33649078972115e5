"""Upstream failures: real statuses before the first byte, in-band errors after it, and the
record each one leaves."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import ServerThread
from tests.fake_openai import FakeOpenAI
from tests.helpers import raw_events, v1_events, wait_for_record, wait_until


def _record(client: httpx.Client, response: httpx.Response) -> dict[str, object]:
    record: dict[str, object] = client.get(
        f"/v1/translations/{response.headers['x-translation-id']}"
    ).json()
    return record


@pytest.mark.parametrize("path", ["/translate", "/v1/translations", "stream-false"])
def test_upstream_500_is_502(client: httpx.Client, path: str) -> None:
    text = "hello [[error:500]]"
    if path == "/translate":
        response = client.post(path, json={"lang": "ko", "message": text})
    else:
        response = client.post(
            "/v1/translations",
            json={"text": text, "target_lang": "ko", "stream": path != "stream-false"},
        )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"
    assert "fake 500" not in response.text  # the upstream's own words stay in the log
    record = _record(client, response)
    assert record["status"] == "failed"
    assert record["error"] == {
        "code": "upstream_error",
        "message": response.json()["error"]["message"],
    }


def test_upstream_429_passes_retry_after(client: httpx.Client) -> None:
    response = client.post("/translate", json={"lang": "ko", "message": "x [[error:429]]"})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["code"] == "upstream_rate_limited"
    assert _record(client, response)["status"] == "failed"


def test_upstream_unreachable_is_502(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(openai_base_url="http://127.0.0.1:9/v1", model="m")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post("/v1/translations", json={"text": "hi", "target_lang": "ko"})
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "upstream_error"
        assert client.get("/readyz").status_code == 503


@pytest.mark.parametrize("endpoint", ["raw", "v1"])
def test_dropped_mid_stream_is_in_band_error(client: httpx.Client, endpoint: str) -> None:
    text = "one two three four [[drop:3]]"
    if endpoint == "raw":
        response, events = raw_events(client, {"lang": "ko", "message": text})
        assert [e.data for e in events[:3]] == ["T:", "one", " two"]
    else:
        response, events = v1_events(client, {"text": text, "target_lang": "ko"})
        assert [e.event for e in events] == ["start", "delta", "delta", "delta", "error"]
    assert response.status_code == 200
    assert events[-1].event == "error"
    assert json.loads(events[-1].data)["error"]["code"] == "upstream_error"
    assert all(e.data != "[DONE]" for e in events)
    record = _record(client, response)
    assert record["status"] == "failed"
    assert record["translation"] == "T:one two"
    assert record["error"]["code"] == "upstream_error"  # type: ignore[index]


def test_first_token_timeout_is_504(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(first_token_timeout_s=0.5)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        # The upstream never answers: only the first-token timeout (0.5 s, far below the
        # client's 30 s) can give this 504.
        response = client.post("/translate", json={"lang": "ko", "message": "x [[hang]]"})
        assert response.status_code == 504
        assert response.json()["error"]["code"] == "upstream_timeout"
        assert _record(client, response)["status"] == "failed"


def test_idle_timeout_is_in_band(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(idle_timeout_s=0.5)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response, events = v1_events(client, {"text": "a b c [[stall:2]]", "target_lang": "ko"})
        assert response.status_code == 200
        assert events[-1].event == "error"
        assert json.loads(events[-1].data)["error"]["code"] == "upstream_timeout"
        record = _record(client, response)
        assert record["status"] == "failed" and record["translation"] == "T:a"


@pytest.mark.parametrize("path", ["/translate", "/v1/translations", "stream-false"])
def test_disconnect_mid_stream_closes_upstream(
    client: httpx.Client, fake: FakeOpenAI, path: str
) -> None:
    tag = f"disc-{path.strip('/').replace('/', '-')}"
    text = f"x [[slow:{tag}:200:0.05]]"
    body = {"text": text, "target_lang": "ko", "stream": path != "stream-false"}
    if path == "/translate":
        request = client.build_request("POST", path, json={"lang": "ko", "message": text})
    else:
        request = client.build_request("POST", "/v1/translations", json=body)
    if path == "stream-false":
        with pytest.raises(httpx.ReadTimeout):
            client.post("/v1/translations", json=body, timeout=httpx.Timeout(30, read=0.5))
        record_id = client.get("/v1/translations").json()["items"][0]["id"]
    else:
        response = client.send(request, stream=True)
        lines = response.iter_lines()
        next(lines)
        record_id = response.headers["x-translation-id"]
        response.close()
    assert fake.closed_event(tag).wait(5), "the upstream connection stayed open"
    record = wait_for_record(str(client.base_url).rstrip("/"), record_id, "cancelled")
    assert record["status"] == "cancelled"


def test_disconnect_before_first_byte_closes_upstream(
    make_server: Callable[..., ServerThread], fake: FakeOpenAI
) -> None:
    server = make_server()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.post(
                "/translate",
                json={"lang": "ko", "message": "x [[hang]]"},
                timeout=httpx.Timeout(30, read=0.5),
            )

        def newest_status() -> object:
            items = client.get("/v1/translations").json()["items"]
            return items[0]["status"] if items else None

        assert wait_until(lambda: newest_status() == "cancelled")


def test_body_left_open_after_done_still_succeeds(client: httpx.Client) -> None:
    response, events = v1_events(client, {"text": "one two [[linger]]", "target_lang": "ko"})
    assert [e.event for e in events][-1] == "done"
    assert json.loads(events[-1].data)["translation"] == "T:one two"
    assert _record(client, response)["status"] == "succeeded"


def test_connection_closed_without_answer_is_502(client: httpx.Client) -> None:
    response = client.post("/translate", json={"lang": "ko", "message": "x [[close]]"})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"


def test_malformed_chunk_is_in_band_error(client: httpx.Client) -> None:
    # Written in one go, so the bad line shares a network read with good ones.
    response, events = v1_events(
        client, {"text": "one two three four [[garbage:2]]", "target_lang": "ko"}
    )
    names = [e.event for e in events]
    assert names[0] == "start" and "delta" in names and names[-1] == "error", names
    assert json.loads(events[-1].data)["error"]["code"] == "upstream_error"
    record = _record(client, response)
    assert record["status"] == "failed" and record["error"]["code"] == "upstream_error"
    assert "three" not in record["translation"]


def test_compressed_answer_is_decoded(client: httpx.Client) -> None:
    plain = client.post("/translate", json={"lang": "ko", "message": "one two"})
    packed = client.post("/translate", json={"lang": "ko", "message": "one two [[gzip]]"})
    assert packed.status_code == 200
    assert packed.text == plain.text and "two" in plain.text


def test_upstream_reached_through_proxy_from_environment(
    make_server: Callable[..., ServerThread], fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fake answers absolute-form requests too, so it can stand in for an HTTP proxy; the
    # upstream's host does not resolve, so only the proxy can reach it.
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{fake.port}")
    server = make_server(openai_base_url="http://upstream.invalid:9/v1", model="fake-model")
    with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
        response = client.post("/translate", json={"lang": "ko", "message": "one two"})
    assert response.status_code == 200, response.text
    assert "two" in response.text and response.text.endswith("data: [DONE]\n\n")
