"""Live sessions over real HTTP: a speaker, listeners in their languages, each segment
translated once per language whatever the audience, late joiners, resumes, the session's end,
bad input, and two replicas sharing Redis."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServerThread
from tests.fake_openai import FakeOpenAI
from tests.helpers import openai, run_sql, upstreams_file, wait_until
from tests.test_keys import create_key

CODE = re.compile(r"^[2-9A-HJKMNP-TV-Z]{5}-[2-9A-HJKMNP-TV-Z]{5}$")


@dataclass
class Listener:
    """A listener in a thread: every event it got, until `closed` or its stream's end."""

    url: str
    code: str
    lang: str
    after: int | None = None
    events: list[tuple[int | None, str, dict[str, Any]]] = field(default_factory=list)
    status: int | None = None
    ended: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Listener:
        threading.Thread(target=self._run, daemon=True).start()
        wait_until(lambda: self.status is not None or self.ended.is_set())
        return self

    def _run(self) -> None:
        params: dict[str, Any] = {"lang": self.lang}
        if self.after is not None:
            params["last_event_id"] = self.after
        try:
            with httpx.Client(base_url=self.url, timeout=60) as client:
                path = f"/v1/live/{self.code}/events"
                with connect_sse(client, "GET", path, params=params) as source:
                    self.status = source.response.status_code
                    for event in source.iter_sse():
                        if event.event == "message" and not event.data:
                            continue  # a keep-alive comment, as httpx-sse reports it
                        event_id = int(event.id) if event.id and event.id.isdigit() else None
                        self.events.append((event_id, event.event, json.loads(event.data)))
        except httpx.TransportError:
            pass  # the server went away: the stream ends here
        finally:
            self.ended.set()

    def kinds(self) -> list[str]:
        return [kind for _, kind, _ in self.events]

    def done(self) -> dict[int, str]:
        return {
            data["index"]: data["translation"] for _, kind, data in self.events if kind == "done"
        }

    def wait_done(self, count: int) -> None:
        assert wait_until(lambda: len(self.done()) >= count), self.events

    def ids(self) -> list[int]:
        return [event_id for event_id, _, _ in self.events if event_id is not None]


# Sessions opened by a test, closed after it: their listeners end, and the server stops at once.
_opened: list[tuple[str, str, dict[str, str]]] = []


@pytest.fixture(autouse=True)
def _close_sessions(make_server: Callable[..., ServerThread]) -> Iterator[None]:
    # Set up after the servers' factory, so torn down before it: the servers stop at once.
    yield
    while _opened:
        base_url, session_id, headers = _opened.pop()
        try:
            httpx.post(f"{base_url}/v1/live/{session_id}/close", headers=headers, timeout=30)
        except httpx.TransportError:
            pass


def _open(
    client: httpx.Client, headers: dict[str, str] | None = None, **body: Any
) -> dict[str, Any]:
    response = client.post("/v1/live", json=body, headers=headers)
    assert response.status_code == 201, response.text
    session: dict[str, Any] = response.json()
    _opened.append((str(client.base_url), session["session_id"], headers or {}))
    return session


def _say(client: httpx.Client, session: dict[str, Any], text: str, **extra: Any) -> httpx.Response:
    return client.post(f"/v1/live/{session['session_id']}/segments", json={"text": text, **extra})


def _upstream_texts(fake: FakeOpenAI, marker: str) -> list[str]:
    """The user texts of the upstream's requests that carry `marker`."""
    texts = []
    for request in fake.requests:
        user = [m["content"] for m in request["messages"] if m["role"] == "user"][-1]
        if marker in user:
            texts.append(user)
    return texts


def test_a_session_has_a_join_code_and_a_viewer_url(client: httpx.Client) -> None:
    session = _open(client, target_langs=["ko", "ja-JP"], title="Council", source_lang="en")
    assert CODE.match(session["join_code"]), session["join_code"]
    assert session["viewer_url"] == f"/live/{session['join_code']}"
    assert session["status"] == "open" and session["target_langs"] == ["ko", "ja-JP"]
    assert session["script_id"].startswith("live-") and len(session["session_id"]) == 32
    # Codes are compared without case, spaces or dashes.
    loose = session["join_code"].lower().replace("-", " ")
    info = client.get(f"/v1/live/{loose}").json()
    assert info == {
        "title": "Council",
        "source_lang": "en",
        "languages": ["ko", "ja-JP"],
        "status": "open",
        "segments": 0,
        "listeners": {},
    }


def test_each_segment_is_translated_once_per_language_for_every_listener(
    server: ServerThread, client: httpx.Client, fake: FakeOpenAI
) -> None:
    session = _open(client, target_langs=["fr"])
    code = session["join_code"]
    korean = [Listener(server.url, code, "ko").start() for _ in range(3)]
    french = Listener(server.url, code, "fr").start()
    wait_until(lambda: client.get(f"/v1/live/{code}").json()["listeners"] == {"ko": 3, "fr": 1})
    marker = f"council-{code}"
    for n in range(3):
        answer = _say(client, session, f"Segment {n} of the {marker}.")
        assert answer.status_code == 202
        assert answer.json() == {"segment_index": n, "languages": ["fr", "ko"]}
    for listener in [*korean, french]:
        listener.wait_done(3)
    # Once per segment and language, however many listen.
    assert len(_upstream_texts(fake, marker)) == 3 * 2
    for listener in [*korean, french]:
        assert listener.ids() == list(range(len(listener.ids())))
        assert listener.done() == {n: f"T:Segment {n} of the {marker}." for n in range(3)}
        assert listener.events[0][1:] == (
            "segment",
            {"index": 0, "text": f"Segment 0 of the {marker}.", "final": True},
        )
    assert korean[0].events == korean[1].events == korean[2].events
    # Each translation is a record of the script, numbered like the session's segments.
    record_id = next(d["id"] for _, k, d in french.events if k == "done" and d["index"] == 2)
    record = client.get(f"/v1/translations/{record_id}").json()
    assert record["script_id"] == session["script_id"] and record["segment_index"] == 2
    assert record["target_lang"] == "fr" and record["revisions"] == 0


def test_a_late_listener_gets_the_recent_segments_then_follows(
    make_server: Callable[..., ServerThread], fake: FakeOpenAI
) -> None:
    server = make_server(live_replay=2)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        session = _open(client, target_langs=["ko"])
        first = Listener(server.url, session["join_code"], "ko").start()
        for n in range(4):
            _say(client, session, f"Part {n}.")
        first.wait_done(4)
        late = Listener(server.url, session["join_code"], "ko").start()
        wait_until(lambda: len(late.events) >= 4)
        # The last two segments, each as its segment and its done, with their own ids.
        assert [(k, d["index"]) for _, k, d in late.events[:4]] == [
            ("segment", 2), ("done", 2), ("segment", 3), ("done", 3)
        ]  # fmt: skip
        by_id = {event_id: (kind, data) for event_id, kind, data in first.events}
        assert all(by_id[i] == (k, d) for i, k, d in late.events[:4])
        _say(client, session, "Part 4.")
        late.wait_done(3)
        assert late.done()[4] == "T:Part 4."
        assert "delta" in late.kinds()[4:]


def test_a_listener_who_drops_resumes_and_misses_nothing(
    server: ServerThread, client: httpx.Client
) -> None:
    session = _open(client, target_langs=["ko"])
    code = session["join_code"]
    steady = Listener(server.url, code, "ko").start()
    for n in range(2):
        _say(client, session, f"Before {n}.")
    steady.wait_done(2)
    last_seen = steady.ids()[3]  # dropped in the middle of the second segment
    for n in range(2):
        _say(client, session, f"After {n}.")
    steady.wait_done(4)
    resumed = Listener(server.url, code, "ko", after=last_seen).start()
    wait_until(lambda: len(resumed.events) >= len(steady.events) - last_seen - 1)
    assert resumed.events == steady.events[last_seen + 1 :]
    # EventSource sends the header itself.
    with httpx.Client(base_url=server.url, timeout=30) as client2:
        headers = {"Last-Event-ID": str(steady.ids()[-2])}
        path = f"/v1/live/{code}/events"
        with connect_sse(client2, "GET", path, params={"lang": "ko"}, headers=headers) as src:
            first = next(iter(src.iter_sse()))
            assert int(first.id) == steady.ids()[-1]


def test_a_new_language_gets_the_last_segments_translated_on_demand(
    make_server: Callable[..., ServerThread], fake: FakeOpenAI
) -> None:
    server = make_server(live_catch_up=2)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        session = _open(client, target_langs=["ko"])
        code = session["join_code"]
        korean = Listener(server.url, code, "ko").start()
        marker = f"catch-{code}"
        for n in range(3):
            _say(client, session, f"Earlier {n} {marker}.")
        korean.wait_done(3)
        german = Listener(server.url, code, "de").start()
        german.wait_done(2)
        assert german.done() == {1: f"T:Earlier 1 {marker}.", 2: f"T:Earlier 2 {marker}."}
        _say(client, session, f"Later {marker}.")
        german.wait_done(3)
        # Korean: 4 segments; German: the 2 caught up and the new one.
        assert len(_upstream_texts(fake, marker)) == 4 + 3


def test_closing_ends_every_listener_and_refuses_more_segments(
    server: ServerThread, client: httpx.Client
) -> None:
    session = _open(client, target_langs=["ko"])
    listener = Listener(server.url, session["join_code"], "ko").start()
    _say(client, session, "The last words.")
    listener.wait_done(1)
    closed = client.post(f"/v1/live/{session['session_id']}/close")
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    assert listener.ended.wait(10)
    assert listener.events[-1][1:] == ("closed", {"reason": "closed"})
    refused = _say(client, session, "Too late.")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "session_closed"
    assert client.get(f"/v1/live/{session['join_code']}").json()["status"] == "closed"
    # A listener who comes after the end reads the transcript, then the end.
    after = Listener(server.url, session["join_code"], "ko").start()
    assert after.ended.wait(10)
    assert after.kinds() == ["segment", "done", "closed"]


def test_a_silent_session_closes_by_itself(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(live_idle_s=0.5)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        session = _open(client, target_langs=["ko"])
        listener = Listener(server.url, session["join_code"], "ko").start()
        assert listener.ended.wait(30)
        assert listener.events[-1][1:] == ("closed", {"reason": "idle"})
        refused = _say(client, session, "Hello?")
        assert refused.json()["error"]["code"] == "session_closed"


def test_bad_input_gets_clear_statuses_and_nothing_is_stored(
    make_server: Callable[..., ServerThread], db_url: str
) -> None:
    server = make_server(max_text_chars=50, live_max_langs=2)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        bad_lang = client.post("/v1/live", json={"target_langs": ["xx-nope"]})
        assert bad_lang.status_code == 422
        assert bad_lang.json()["error"]["code"] == "unsupported_language"
        assert "target_langs.0" in bad_lang.json()["error"]["message"]
        session = _open(client, target_langs=["ko"])
        code = session["join_code"]
        unknown = client.post(
            "/v1/live/0123456789abcdef0123456789abcdef/segments", json={"text": "a"}
        )
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
        empty = _say(client, session, "   ")
        assert empty.status_code == 422 and empty.json()["error"]["code"] == "invalid_request"
        long = _say(client, session, "x" * 51)
        assert long.status_code == 413 and long.json()["error"]["code"] == "text_too_long"
        listen = client.get(f"/v1/live/{code}/events", params={"lang": "xx-nope"})
        assert listen.status_code == 422
        assert listen.json()["error"]["code"] == "unsupported_language"
        assert client.get("/v1/live/ZZZZZ-ZZZZZ").status_code == 404
        assert client.get("/v1/live/ZZZZZ-ZZZZZ/events", params={"lang": "ko"}).status_code == 404
        assert client.get("/live/ZZZZZ-ZZZZZ").status_code == 404
        # Two languages at most: ko (the speaker's) and one a listener picks.
        french = Listener(server.url, code, "fr").start()
        wait_until(lambda: client.get(f"/v1/live/{code}").json()["listeners"].get("fr") == 1)
        third = client.get(f"/v1/live/{code}/events", params={"lang": "de"})
        assert third.status_code == 409 and third.json()["error"]["code"] == "too_many_languages"
        client.post(f"/v1/live/{session['session_id']}/close")
        assert french.ended.wait(10)
    assert run_sql(db_url, "SELECT count(*) FROM translations")[0] == [(0,)]


def test_an_address_that_guesses_codes_is_refused_for_a_while(
    server: ServerThread, client: httpx.Client
) -> None:
    session = _open(client)
    # More than 20 unknown codes within a minute: the 21st is still answered, then refused.
    for n in range(21):
        assert client.get(f"/v1/live/WRONG-{n:05d}".replace("0", "2")).status_code == 404
    refused = client.get("/v1/live/WRONG-99999")
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1
    # Every live route, the right code too, while it lasts.
    assert client.get(f"/v1/live/{session['join_code']}").status_code == 429
    assert client.get(f"/live/{session['join_code']}").status_code == 429


def test_keys_guard_the_speaker_and_listening_needs_none(
    make_server: Callable[..., ServerThread], db_url: str
) -> None:
    server = make_server(auth="keys")
    _, secret = create_key(db_url, "speaker")
    _, other = create_key(db_url, "other")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.post("/v1/live", json={}).status_code == 401
        auth = {"Authorization": f"Bearer {secret}"}
        session = _open(client, auth, target_langs=["ko"])
        path = f"/v1/live/{session['session_id']}/segments"
        stranger = client.post(
            path, json={"text": "Hi."}, headers={"Authorization": f"Bearer {other}"}
        )
        assert stranger.status_code == 404
        listener = Listener(server.url, session["join_code"], "ko").start()
        assert listener.status == 200
        assert client.post(path, json={"text": "Hi."}, headers=auth).status_code == 202
        listener.wait_done(1)
        assert client.get(f"/v1/live/{session['join_code']}").status_code == 200
        assert client.get(f"/live/{session['join_code']}").status_code == 200


def test_a_listener_that_falls_behind_is_told_to_resume(
    make_server: Callable[..., ServerThread], fake: FakeOpenAI
) -> None:
    # A send timeout longer than the test: the listener is to be told, not cut off.
    server = make_server(live_listener_buffer=10, send_timeout_s=600)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        session = _open(client, target_langs=["ko"])
        code = session["join_code"]
        # A listener that reads nothing while megabytes of translation go by.
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(f"GET /v1/live/{code}/events?lang=ko HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        wait_until(lambda: client.get(f"/v1/live/{code}").json()["listeners"] == {"ko": 1})
        tag = f"behind-{code}"
        _say(client, session, f"[[big:{tag}:30:20000]]")

        def finished() -> bool:
            records = client.get("/v1/translations", params={"script_id": session["script_id"]})
            items = records.json()["items"]
            return bool(items) and items[0]["status"] == "succeeded"

        assert wait_until(finished, 60)
        # Now read fast: megabytes through a 4 KB window would take minutes.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        raw = b""
        sock.settimeout(5)
        deadline = time.monotonic() + 120
        with sock:
            try:
                while time.monotonic() < deadline and (chunk := sock.recv(1 << 20)):
                    raw += chunk
            except TimeoutError:
                pass
        tail = raw.decode(errors="replace")
        assert "event: error" in tail and "listener_too_slow" in tail


def test_metrics_count_listeners_translations_and_delivery(
    server: ServerThread, client: httpx.Client
) -> None:
    session = _open(client, target_langs=["ko"])
    listener = Listener(server.url, session["join_code"], "ja").start()
    _say(client, session, "Counted.")
    listener.wait_done(1)
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    listeners = {s.labels["lang"]: s.value for s in families["dragoman_live_listeners"].samples}
    assert listeners["ja"] == 1
    translated = families["dragoman_live_translations"].samples
    assert sum(s.value for s in translated if s.labels.get("outcome") == "succeeded") >= 2
    delivery = [
        s for s in families["dragoman_live_delivery_seconds"].samples if s.name.endswith("_count")
    ]
    assert delivery[0].value >= 1


def test_two_replicas_share_a_session_through_redis(
    make_server: Callable[..., ServerThread], fake: FakeOpenAI, redis_url: str
) -> None:
    one = make_server(redis_url=redis_url)
    two = make_server(redis_url=redis_url)
    with httpx.Client(base_url=one.url, timeout=30) as speaker:
        session = _open(speaker, target_langs=["ko"])
        code = session["join_code"]
        here = Listener(one.url, code, "ko").start()
        there = [Listener(two.url, code, lang).start() for lang in ("ko", "fr")]
        wait_until(
            lambda: speaker.get(f"/v1/live/{code}").json()["listeners"] == {"ko": 2, "fr": 1}
        )
        marker = f"replicas-{code}"
        for n in range(3):
            answer = _say(speaker, session, f"Shared {n} {marker}.")
            assert answer.json()["languages"] == ["ko", "fr"]
        for listener in (here, *there):
            listener.wait_done(3)
        assert here.events == there[0].events
        assert there[1].done() == {n: f"T:Shared {n} {marker}." for n in range(3)}
        assert len(_upstream_texts(fake, marker)) == 3 * 2
        # A listener of the other replica resumes on this one.
        resumed = Listener(one.url, code, "fr", after=there[1].ids()[2]).start()
        wait_until(lambda: len(resumed.events) >= len(there[1].events) - 3)
        assert resumed.events == there[1].events[3:]
        speaker.post(f"/v1/live/{session['session_id']}/close")
        for listener in (here, *there):
            assert listener.ended.wait(10)
            assert listener.kinds()[-1] == "closed"


def test_the_listener_page_and_its_qr_code(server: ServerThread, client: httpx.Client) -> None:
    session = _open(client, target_langs=["ko"])
    page = client.get(session["viewer_url"])
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    qr = client.get(session["viewer_url"] + "/qr.svg")
    assert qr.status_code == 200 and qr.headers["content-type"] == "image/svg+xml"
    assert qr.text.startswith("<svg") and 'xmlns="http://www.w3.org/2000/svg"' in qr.text


def test_a_failed_segment_is_an_error_event_and_the_stream_goes_on(
    server: ServerThread, client: httpx.Client
) -> None:
    session = _open(client, target_langs=["ko"])
    listener = Listener(server.url, session["join_code"], "ko").start()
    _say(client, session, "[[error:500]]")
    _say(client, session, "Fine again.")
    listener.wait_done(1)
    errors = [d for _, k, d in listener.events if k == "error"]
    assert errors == [
        {"index": 0, "error": {"code": "upstream_error", "message": errors[0]["error"]["message"]}}
    ]
    assert listener.done() == {1: "T:Fine again."}


def test_an_upstream_that_breaks_off_mid_segment_is_replaced_by_the_next(
    make_server: Callable[..., ServerThread], tmp_path: Path
) -> None:
    """Failover happens before a stream's first piece; after it, a live segment is translated
    again on the next upstream, and listeners get that translation as a revision."""
    breaking, healthy = FakeOpenAI().start(), FakeOpenAI().start()
    breaking.fail = "drop"  # two pieces, then the connection is gone
    try:
        upstreams = [openai("first", breaking), openai("second", healthy)]
        server = make_server(upstreams=upstreams_file(tmp_path, upstreams))
        with httpx.Client(base_url=server.url, timeout=30) as client:
            session = _open(client, target_langs=["ko"])
            listener = Listener(server.url, session["join_code"], "ko").start()
            assert _say(client, session, "one two three four").status_code == 202
            listener.wait_done(1)
            kinds = listener.kinds()
            assert kinds[0] == "segment" and kinds[-1] == "done", kinds
            # The broken attempt's pieces, then the revision that replaces them, then the rest.
            revision = kinds.index("revision")
            assert "delta" in kinds[1:revision] and "error" not in kinds
            texts = [data["text"] for _, kind, data in listener.events if kind == "revision"]
            assert texts == ["T:"]
            assert listener.done() == {0: "T:one two three four"}
            records = client.get("/v1/translations", params={"script_id": session["script_id"]})
            items = records.json()["items"]
            by_status = {item["status"]: item for item in items}
            assert sorted(by_status) == ["failed", "succeeded"]
            good, bad = by_status["succeeded"], by_status["failed"]
            assert (good["upstream"], good["segment_index"]) == ("second", 0)
            assert good["translation"] == "T:one two three four"
            # The failed attempt stays a record of the script, out of its order.
            assert (bad["upstream"], bad["segment_index"]) == ("first", None)
            assert bad["error"]["code"] == "upstream_error"
            export = client.get(f"/v1/scripts/{session['script_id']}/export?target_lang=ko")
            assert export.status_code == 200 and "T:one two three four" in export.text
    finally:
        breaking.stop()
        healthy.stop()
