"""`POST /v1/translations/{id}/cancel`: a stop asked for, apart from a client that left."""

from __future__ import annotations

import json

import httpx
from httpx_sse import connect_sse

from tests.conftest import ServerThread
from tests.fake_openai import FakeOpenAI
from tests.helpers import wait_for_record, wait_until


def test_cancel_stops_a_running_stream_in_band(
    server: ServerThread, client: httpx.Client, fake: FakeOpenAI
) -> None:
    body = {"text": "x [[slow:cancel-v1:400:0.05]]", "target_lang": "ko"}
    with connect_sse(client, "POST", "/v1/translations", json=body) as source:
        record_id = source.response.headers["x-translation-id"]
        events = source.iter_sse()
        seen = [next(events), next(events)]
        assert [e.event for e in seen] == ["start", "delta"]
        with httpx.Client(base_url=server.url, timeout=30) as other:
            answer = other.post(f"/v1/translations/{record_id}/cancel")
        assert answer.status_code == 202
        assert answer.json() == {"id": record_id, "status": "cancelled"}
        rest = list(events)
    assert rest[-1].event == "error"
    assert json.loads(rest[-1].data)["error"]["code"] == "cancelled"
    assert [int(e.id) for e in seen + rest] == list(range(len(seen) + len(rest)))
    assert len(rest) < 100  # stopped, not run to its end
    assert fake.closed_event("cancel-v1").wait(10), "the upstream connection stayed open"
    record = client.get(f"/v1/translations/{record_id}").json()
    assert record["status"] == "cancelled"
    assert record["error"]["code"] == "cancelled"
    streamed = "".join(json.loads(e.data)["text"] for e in seen + rest if e.event == "delta")
    assert record["translation"] == streamed and streamed.startswith("p0 ")


def test_cancel_ends_the_compatible_stream_in_band(
    server: ServerThread, client: httpx.Client, fake: FakeOpenAI
) -> None:
    body = {"lang": "ko", "message": "x [[slow:cancel-raw:400:0.05]]"}
    with connect_sse(client, "POST", "/translate", json=body) as source:
        record_id = source.response.headers["x-translation-id"]
        events = source.iter_sse()
        assert next(events).data == "p0 "
        answer = httpx.post(f"{server.url}/v1/translations/{record_id}/cancel")
        rest = list(events)
    assert answer.status_code == 202 and answer.json()["status"] == "cancelled"
    assert rest[-1].event == "error"
    assert json.loads(rest[-1].data)["error"]["code"] == "cancelled"
    assert fake.closed_event("cancel-raw").wait(10)


def test_cancel_leaves_a_finished_translation_as_it_is(client: httpx.Client) -> None:
    done = client.post(
        "/v1/translations", json={"text": "a b", "target_lang": "ko", "stream": False}
    )
    record_id = done.json()["id"]
    answer = client.post(f"/v1/translations/{record_id}/cancel")
    assert answer.status_code == 202
    assert answer.json() == {"id": record_id, "status": "succeeded"}
    assert client.get(f"/v1/translations/{record_id}").json()["status"] == "succeeded"


def test_cancel_of_an_unknown_id_is_404(client: httpx.Client) -> None:
    for unknown in ("0" * 32, "nope", "x" * 300):
        answer = client.post(f"/v1/translations/{unknown}/cancel")
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "not_found"


def test_a_client_that_leaves_is_not_a_cancel_request(
    server: ServerThread, client: httpx.Client, fake: FakeOpenAI
) -> None:
    body = {"text": "x [[slow:leave-not-cancel:400:0.05]]", "target_lang": "ko"}
    request = client.build_request("POST", "/v1/translations", json=body)
    response = client.send(request, stream=True)
    next(response.iter_lines())
    record_id = response.headers["x-translation-id"]
    response.close()
    assert fake.closed_event("leave-not-cancel").wait(10)
    record = wait_for_record(server.url, record_id, "cancelled")
    assert record["status"] == "cancelled"
    assert record["error"] is None  # the client left; nobody asked to stop


def test_cancel_during_stream_false_answers_409_cancelled(
    server: ServerThread, client: httpx.Client, fake: FakeOpenAI
) -> None:
    import threading

    body = {"text": "x [[slow:cancel-json:400:0.05]]", "target_lang": "ko", "stream": False}
    answers: list[httpx.Response] = []
    waiting = threading.Thread(
        target=lambda: answers.append(httpx.post(f"{server.url}/v1/translations", json=body))
    )
    waiting.start()

    def running_id() -> str | None:
        items = client.get("/v1/translations").json()["items"]
        return items[0]["id"] if items and items[0]["status"] == "streaming" else None

    record_id = wait_until(running_id)
    assert record_id is not None
    stopped = client.post(f"/v1/translations/{record_id}/cancel")
    waiting.join(30)
    assert stopped.status_code == 202 and stopped.json()["status"] == "cancelled"
    assert answers[0].status_code == 409
    assert answers[0].json()["error"]["code"] == "cancelled"
    assert fake.closed_event("cancel-json").wait(10)
