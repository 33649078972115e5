"""Resumable translations: disconnect and resume, several listeners, grace, window, errors.

Each test runs against the in-memory event logs and, when `DRAGOMAN_TEST_REDIS_URL` names a
Redis server, against Redis Streams.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, connect_sse

from tests.conftest import ServerThread
from tests.fake_openai import FakeOpenAI
from tests.helpers import wait_for_record, wait_until

REDIS_URL = os.environ.get("DRAGOMAN_TEST_REDIS_URL")


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "memory":
        return {}
    if not REDIS_URL:
        pytest.skip("DRAGOMAN_TEST_REDIS_URL is not set")
    return {"redis_url": REDIS_URL}


@pytest.fixture
def resumable_server(
    make_server: Callable[..., ServerThread], backend: dict[str, Any]
) -> Callable[..., ServerThread]:
    def make(**overrides: Any) -> ServerThread:
        return make_server(keepalive_s=0.5, **{**backend, **overrides})

    return make


def _slow(tag: str, pieces: int, delay: float = 0.05) -> str:
    return f"x [[slow:{tag}:{pieces}:{delay}]]"


def _upstream_text(pieces: int) -> str:
    return "".join(f"p{i} " for i in range(pieces))


def _deltas(events: list[ServerSentEvent]) -> str:
    return "".join(json.loads(e.data)["text"] for e in events if e.event == "delta")


def _events(source: Any) -> Iterator[ServerSentEvent]:
    """The stream's events; not the keep-alive comments, which httpx-sse reports as empty
    `message` events once an id was seen (the SSE standard dispatches nothing for them)."""
    return (e for e in source.iter_sse() if e.event != "message" or e.data)


def _follow(
    client: httpx.Client, record_id: str, *, after: int | None = None, query: bool = False
) -> list[ServerSentEvent]:
    headers, params = {}, {}
    if after is not None and query:
        params["last_event_id"] = str(after)
    elif after is not None:
        headers["Last-Event-ID"] = str(after)
    url = f"/v1/translations/{record_id}/events"
    with connect_sse(client, "GET", url, headers=headers, params=params) as source:
        assert source.response.status_code == 200
        return list(_events(source))


def _start_and_leave(
    client: httpx.Client, text: str, events_to_read: int
) -> tuple[str, list[ServerSentEvent]]:
    """Start a resumable translation, read some events, then drop the connection."""
    body = {"text": text, "target_lang": "ko", "resumable": True}
    with connect_sse(client, "POST", "/v1/translations", json=body) as source:
        assert source.response.status_code == 200
        record_id = source.response.headers["x-translation-id"]
        events = _events(source)
        seen = [next(events) for _ in range(events_to_read)]
    return record_id, seen


@pytest.mark.parametrize("query", [False, True])
def test_resume_after_a_drop_gets_exactly_the_rest(
    resumable_server: Callable[..., ServerThread], fake: FakeOpenAI, query: bool
) -> None:
    server = resumable_server()
    tag = f"resume-rest-{query}-{uuid.uuid4().hex}"
    with httpx.Client(base_url=server.url, timeout=30) as client:
        record_id, seen = _start_and_leave(client, _slow(tag, 30), 4)
        assert [e.event for e in seen] == ["start", "delta", "delta", "delta"]
        assert json.loads(seen[0].data)["id"] == record_id
        rest = _follow(client, record_id, after=int(seen[-1].id), query=query)
    events = seen + rest
    assert [int(e.id) for e in events] == list(range(len(events)))
    assert events[-1].event == "done"
    assert _deltas(events) == _upstream_text(30)
    assert json.loads(events[-1].data)["translation"] == _upstream_text(30)
    assert not fake.closed_event(tag).is_set(), "the drop stopped the upstream"
    record = wait_for_record(server.url, record_id, "succeeded")
    assert record["translation"] == _upstream_text(30)


def test_a_replay_has_the_original_ids_and_data(
    resumable_server: Callable[..., ServerThread],
) -> None:
    server = resumable_server()
    body = {"text": "one two three", "target_lang": "ko", "resumable": True}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        with connect_sse(client, "POST", "/v1/translations", json=body) as source:
            original = list(_events(source))
            record_id = source.response.headers["x-translation-id"]
        replay = _follow(client, record_id)
        tail = _follow(client, record_id, after=1)
    as_sent = [(e.id, e.event, e.data) for e in original]
    assert [(e.id, e.event, e.data) for e in replay] == as_sent
    assert [(e.id, e.event, e.data) for e in tail] == as_sent[2:]
    assert original[-1].event == "done"


def test_two_listeners_follow_one_translation(
    resumable_server: Callable[..., ServerThread],
) -> None:
    server = resumable_server()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        record_id, _ = _start_and_leave(client, _slow("two-listeners", 20, 0.03), 2)
        url = f"/v1/translations/{record_id}/events"
        first = client.send(client.build_request("GET", url), stream=True)
        second = client.send(
            client.build_request("GET", url, headers={"Last-Event-ID": "1"}), stream=True
        )
        try:
            # Keep-alive comments come whenever each listener idles: not part of the events.
            texts = [r.read().decode().replace(": ping\n\n", "") for r in (first, second)]
        finally:
            first.close()
            second.close()
    assert all(text.rstrip().endswith("}") and "event: done" in text for text in texts)
    assert texts[0].endswith(texts[1])  # the second is the first after event 1
    assert texts[0].count("event: delta") == 20


def test_nobody_listening_for_the_grace_time_cancels(
    resumable_server: Callable[..., ServerThread], fake: FakeOpenAI
) -> None:
    server = resumable_server(resume_grace_s=0.5)
    tag = f"grace-{uuid.uuid4().hex}"
    with httpx.Client(base_url=server.url, timeout=30) as client:
        record_id, seen = _start_and_leave(client, _slow(tag, 400), 2)
        assert fake.closed_event(tag).wait(20), "the upstream ran on without listeners"
        record = wait_for_record(server.url, record_id, "cancelled")
        assert record["status"] == "cancelled"
        assert record["error"]["code"] == "cancelled"
        # Within the window, the replay ends as the run did.
        events = _follow(client, record_id, after=int(seen[-1].id))
    assert events[-1].event == "error"
    assert json.loads(events[-1].data)["error"]["code"] == "cancelled"
    assert _deltas(seen + events) == record["translation"]


def test_cancel_reaches_every_listener(
    resumable_server: Callable[..., ServerThread], fake: FakeOpenAI
) -> None:
    server = resumable_server()
    tag = f"cancel-listeners-{uuid.uuid4().hex}"
    with httpx.Client(base_url=server.url, timeout=30) as client:
        body = {"text": _slow(tag, 400), "target_lang": "ko", "resumable": True}
        with connect_sse(client, "POST", "/v1/translations", json=body) as source:
            record_id = source.response.headers["x-translation-id"]
            events = _events(source)
            next(events)
            url = f"/v1/translations/{record_id}/events"
            with connect_sse(client, "GET", url) as other:
                other_events = _events(other)
                assert next(other_events).event == "start"
                answer = client.post(f"/v1/translations/{record_id}/cancel")
                assert answer.status_code == 202
                assert answer.json() == {"id": record_id, "status": "cancelled"}
                second_rest = list(other_events)
            first_rest = list(events)
    for rest in (first_rest, second_rest):
        assert rest[-1].event == "error"
        assert json.loads(rest[-1].data)["error"]["code"] == "cancelled"
    assert fake.closed_event(tag).wait(10)


def test_after_the_window_resume_is_410_and_the_record_stays(
    resumable_server: Callable[..., ServerThread],
) -> None:
    server = resumable_server(resume_window_s=0.3)
    body = {"text": "short one", "target_lang": "ko", "resumable": True}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        with connect_sse(client, "POST", "/v1/translations", json=body) as source:
            list(source.iter_sse())
            record_id = source.response.headers["x-translation-id"]
        url = f"/v1/translations/{record_id}/events"
        answer = wait_until(lambda: (r := client.get(url)).status_code == 410 and r)
        assert answer and answer.json()["error"]["code"] == "resume_expired"
        assert client.get(f"/v1/translations/{record_id}").json()["status"] == "succeeded"


def test_a_translation_that_was_not_resumable_is_409(client: httpx.Client) -> None:
    done = client.post(
        "/v1/translations", json={"text": "a b", "target_lang": "ko", "stream": False}
    )
    answer = client.get(f"/v1/translations/{done.json()['id']}/events")
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "not_resumable"


@pytest.mark.parametrize("unknown", ["0" * 32, "r" + "0" * 31, "x" * 300])
def test_resume_of_an_unknown_id_is_404(client: httpx.Client, unknown: str) -> None:
    answer = client.get(f"/v1/translations/{unknown}/events")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


def test_resumable_needs_a_stream(client: httpx.Client) -> None:
    body = {"text": "a", "target_lang": "ko", "stream": False, "resumable": True}
    answer = client.post("/v1/translations", json=body)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_request"


def test_a_bad_last_event_id_is_422(client: httpx.Client) -> None:
    with connect_sse(
        client,
        "POST",
        "/v1/translations",
        json={"text": "a", "target_lang": "ko", "resumable": True},
    ) as source:
        list(source.iter_sse())
        record_id = source.response.headers["x-translation-id"]
    url = f"/v1/translations/{record_id}/events"
    assert client.get(url, headers={"Last-Event-ID": "abc"}).status_code == 422
    assert client.get(url, params={"last_event_id": "x"}).status_code == 422


def test_a_failure_before_the_first_event_is_a_real_status(client: httpx.Client) -> None:
    body = {"text": "x [[error:500]]", "target_lang": "ko", "resumable": True}
    answer = client.post("/v1/translations", json=body)
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "upstream_error"
    record_id = answer.headers["x-translation-id"]
    assert client.get(f"/v1/translations/{record_id}").json()["status"] == "failed"
    assert client.get(f"/v1/translations/{record_id}/events").status_code == 410


@pytest.mark.skipif(not REDIS_URL, reason="DRAGOMAN_TEST_REDIS_URL is not set")
def test_another_replica_serves_the_resume_and_the_cancel(
    make_server: Callable[..., ServerThread], fake: FakeOpenAI
) -> None:
    running = make_server(redis_url=REDIS_URL, keepalive_s=0.5)
    other = make_server(redis_url=REDIS_URL, keepalive_s=0.5)
    tag = f"replica-{uuid.uuid4().hex}"
    with httpx.Client(base_url=running.url, timeout=30) as client:
        record_id, seen = _start_and_leave(client, _slow(tag, 400), 3)
    with httpx.Client(base_url=other.url, timeout=30) as client:
        url = f"/v1/translations/{record_id}/events"
        with connect_sse(client, "GET", url, headers={"Last-Event-ID": seen[-1].id}) as source:
            events = _events(source)
            following = [next(events), next(events)]
            assert [e.event for e in following] == ["delta", "delta"]
            assert int(following[0].id) == int(seen[-1].id) + 1
            answer = client.post(f"/v1/translations/{record_id}/cancel")
            assert answer.status_code == 202
            assert answer.json() == {"id": record_id, "status": "cancelled"}
            rest = list(events)
    assert rest[-1].event == "error"
    assert json.loads(rest[-1].data)["error"]["code"] == "cancelled"
    assert fake.closed_event(tag).wait(10)


@pytest.mark.skipif(not REDIS_URL, reason="DRAGOMAN_TEST_REDIS_URL is not set")
def test_a_listener_on_another_replica_keeps_the_translation_running(
    make_server: Callable[..., ServerThread], fake: FakeOpenAI
) -> None:
    running = make_server(redis_url=REDIS_URL, keepalive_s=0.2, resume_grace_s=2)
    other = make_server(redis_url=REDIS_URL, keepalive_s=0.2, resume_grace_s=2)
    tag = f"remote-listener-{uuid.uuid4().hex}"
    with httpx.Client(base_url=running.url, timeout=30) as client:
        record_id, seen = _start_and_leave(client, _slow(tag, 200, 0.05), 2)
    with httpx.Client(base_url=other.url, timeout=30) as client:
        events = _follow(client, record_id, after=int(seen[-1].id))
    # Ten seconds of pieces, five times the grace: it ran to its end for the remote listener.
    assert events[-1].event == "done", events[-1].data
    assert _deltas(seen + events) == _upstream_text(200)
    assert not fake.closed_event(tag).is_set()


def test_a_script_segment_can_be_resumable(server: ServerThread) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        body = {"text": "Hello class.", "target_lang": "ko", "source_lang": "en", "resumable": True}
        with client.stream("POST", "/v1/scripts/lecture-r/segments", json=body) as response:
            assert response.status_code == 200
            translation_id = response.headers["x-translation-id"]
            response.read()
        replay = client.get(f"/v1/translations/{translation_id}/events")
        assert replay.status_code == 200 and "event: done" in replay.text
        record = client.get(f"/v1/translations/{translation_id}").json()
        assert record["segment_index"] == 0 and record["status"] == "succeeded"
