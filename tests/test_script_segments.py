"""Script segments: numbered per script and target language, translated with the previous
segments in the prompt (read from the database), as the fake upstream's requests show."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from httpx_sse import connect_sse

from tests.conftest import ServerThread
from tests.fake_openai import FakeOpenAI
from tests.helpers import pieces_directive, run_sql, v1_text
from tests.test_keys import bearer, create_key


def new_script() -> str:
    return "s-" + uuid.uuid4().hex[:12]


def segment(
    client: httpx.Client, script_id: str, text: str, to: str = "ko", **extra: Any
) -> dict[str, Any]:
    """A segment with `stream: false`: the finished record."""
    response = client.post(
        f"/v1/scripts/{script_id}/segments",
        json={"text": text, "target_lang": to, "stream": False, **extra},
    )
    assert response.status_code == 200, response.text
    record: dict[str, Any] = response.json()
    return record


def upstream_request(fake: FakeOpenAI, marker: str) -> dict[str, Any]:
    """The one upstream request whose last user turn holds `marker`."""
    found = [r for r in fake.requests if marker in r["messages"][-1]["content"]]
    assert len(found) == 1, found
    return found[0]


def turns(request: dict[str, Any]) -> list[tuple[str, str]]:
    """The earlier (user, assistant) turns of a chat request, fences stripped."""
    messages = request["messages"][1:-1]
    pairs = []
    for user, assistant in zip(messages[::2], messages[1::2], strict=True):
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        pairs.append((user["content"].split("\n")[1], assistant["content"]))
    return pairs


def test_segments_are_numbered_and_carry_the_previous_segments(
    client: httpx.Client, fake: FakeOpenAI
) -> None:
    script = new_script()
    texts = [f"Line {i} of {script}." for i in range(5)]
    records = [segment(client, script, text) for text in texts]
    assert [r["segment_index"] for r in records] == [0, 1, 2, 3, 4]
    assert all(r["script_id"] == script and r["status"] == "succeeded" for r in records)
    assert all(r["glossary_misses"] is None for r in records)

    assert turns(upstream_request(fake, texts[0])) == []
    assert turns(upstream_request(fake, texts[1])) == [(texts[0], records[0]["translation"])]
    # Only the last three (DRAGOMAN_CONTEXT_SEGMENTS' default), oldest first.
    last = upstream_request(fake, texts[4])
    expected = zip(texts[1:4], [r["translation"] for r in records[1:4]], strict=True)
    assert turns(last) == list(expected)
    assert "previous parts of the same text" in last["messages"][0]["content"]

    stored = client.get(f"/v1/translations/{records[3]['id']}").json()
    assert stored == records[3]


def test_a_stream_answers_like_v1_with_the_index_in_done(
    client: httpx.Client, fake: FakeOpenAI
) -> None:
    script = new_script()
    segment(client, script, f"First of {script}.")
    body = {"text": f"Second of {script}.", "target_lang": "fr", "resumable": False}
    with connect_sse(client, "POST", f"/v1/scripts/{script}/segments", json=body) as source:
        assert source.response.status_code == 200
        events = list(source.iter_sse())
    names = [e.event for e in events]
    assert (names[0], names[-1]) == ("start", "done")
    assert [int(e.id) for e in events] == list(range(len(events)))
    done = json.loads(events[-1].data)
    assert source.response.headers["x-translation-id"] == done["id"]
    assert done["translation"] == v1_text(events)
    # Another target language: its own numbering and its own context.
    assert done["segment_index"] == 0 and done["target_lang"] == "fr"
    assert turns(upstream_request(fake, f"Second of {script}.")) == []


def test_failed_segments_take_an_index_but_are_not_context(
    client: httpx.Client, fake: FakeOpenAI
) -> None:
    script = new_script()
    ok = segment(client, script, f"Good one {script}.")
    failed = client.post(
        f"/v1/scripts/{script}/segments",
        json={"text": f"[[error:500]] bad {script}", "target_lang": "ko", "stream": False},
    )
    assert failed.status_code == 502
    record = client.get(f"/v1/translations/{failed.headers['x-translation-id']}").json()
    assert (record["status"], record["segment_index"]) == ("failed", 1)
    after = segment(client, script, f"After {script}.")
    assert after["segment_index"] == 2
    assert turns(upstream_request(fake, f"After {script}.")) == [
        (f"Good one {script}.", ok["translation"])
    ]


def test_context_comes_from_the_database_after_a_restart(
    make_server: Callable[..., ServerThread], fake: FakeOpenAI
) -> None:
    script = new_script()
    first = make_server(context_segments=1)
    with httpx.Client(base_url=first.url, timeout=30) as client:
        segment(client, script, f"Before the restart {script}.")
        earlier = segment(client, script, f"Just before {script}.")
    first.stop()
    second = make_server(context_segments=1)
    with httpx.Client(base_url=second.url, timeout=30) as client:
        later = segment(client, script, f"After the restart {script}.")
    assert later["segment_index"] == 2
    assert turns(upstream_request(fake, f"After the restart {script}.")) == [
        (f"Just before {script}.", earlier["translation"])
    ]


def test_concurrent_segments_get_distinct_indexes(server: ServerThread) -> None:
    script = new_script()

    def one(i: int) -> int:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            text = pieces_directive([f"p{i} ", "q"]) + f" {i}"
            return int(segment(client, script, text)["segment_index"])

    with ThreadPoolExecutor(8) as pool:
        indexes = list(pool.map(one, range(16)))
    assert sorted(indexes) == list(range(16))


def test_bad_script_ids_and_bodies_are_refused_and_not_stored(client: httpx.Client) -> None:
    long_id = "x" * 129
    for script_id in (long_id, "bad%20id", "semi;colon"):
        response = client.post(
            f"/v1/scripts/{script_id}/segments", json={"text": "Hi", "target_lang": "ko"}
        )
        assert response.status_code == 422, script_id
        assert response.json()["error"]["code"] == "invalid_request"
    script = new_script()
    for body in ({"text": " ", "target_lang": "ko"}, {"text": "Hi", "target_lang": "xx-bad!"}):
        response = client.post(f"/v1/scripts/{script}/segments", json=body)
        assert response.status_code == 422
    assert client.get("/v1/translations", params={"script_id": script}).json()["items"] == []


def test_a_key_sees_only_its_own_script(
    make_server: Callable[..., ServerThread], db_url: str, fake: FakeOpenAI
) -> None:
    server = make_server(auth="keys")
    _, alice = create_key(db_url, "alice")
    _, bob = create_key(db_url, "bob")
    script = new_script()
    with httpx.Client(base_url=server.url, timeout=30, headers=bearer(alice)) as client:
        mine = segment(client, script, f"Alice speaks {script}.")
    with httpx.Client(base_url=server.url, timeout=30, headers=bearer(bob)) as client:
        theirs = segment(client, script, f"Bob speaks {script}.")
        assert client.get(f"/v1/translations/{mine['id']}").status_code == 404
    assert (mine["segment_index"], theirs["segment_index"]) == (0, 0)
    assert turns(upstream_request(fake, f"Bob speaks {script}.")) == []
    anonymous = httpx.post(
        f"{server.url}/v1/scripts/{script}/segments", json={"text": "Hi", "target_lang": "ko"}
    )
    assert anonymous.status_code == 401


def test_two_replicas_share_the_numbering_and_the_context(
    make_server: Callable[..., ServerThread], fake: FakeOpenAI
) -> None:
    # Two servers on one database, as two replicas behind a load balancer.
    replicas = [make_server(), make_server()]
    script = new_script()

    def one(i: int) -> dict[str, Any]:
        with httpx.Client(base_url=replicas[i % 2].url, timeout=60) as client:
            return segment(client, script, f"Segment {i} of {script}.")

    with ThreadPoolExecutor(6) as pool:
        records = list(pool.map(one, range(12)))
    assert sorted(r["segment_index"] for r in records) == list(range(12))
    with httpx.Client(base_url=replicas[1].url, timeout=30) as client:
        last = segment(client, script, f"The end of {script}.")
    assert last["segment_index"] == 12
    by_index = sorted(records, key=lambda r: r["segment_index"])
    assert turns(upstream_request(fake, f"The end of {script}.")) == [
        (r["text"], r["translation"]) for r in by_index[-3:]
    ]


def test_a_database_outage_is_503_before_any_byte_and_nothing_is_left(
    client: httpx.Client, db_url: str, fake: FakeOpenAI
) -> None:
    script = new_script()
    segment(client, script, "Before the outage.")
    run_sql(db_url, "ALTER TABLE translations RENAME TO translations_away")
    text = f"During the outage {script}."
    for stream in (True, False):
        response = client.post(
            f"/v1/scripts/{script}/segments",
            json={"text": text, "target_lang": "ko", "stream": stream},
        )
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "database_unavailable"
    glossary = client.get(f"/v1/scripts/{script}/glossary")
    assert glossary.status_code == 200  # another table
    assert client.get(f"/v1/scripts/{script}").status_code == 503
    run_sql(db_url, "ALTER TABLE translations_away RENAME TO translations")
    assert not any(text in r["messages"][-1]["content"] for r in fake.requests)
    assert segment(client, script, "After it.")["segment_index"] == 1
