"""POST /v1/subtitles: SRT and WebVTT files translated cue by cue as script segments, the file
coming back with the same cues, numbering and timings."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import srt
import webvtt
from httpx_sse import ServerSentEvent, connect_sse

from tests.conftest import ServerThread
from tests.fake_openai import FakeOpenAI
from tests.helpers import pieces_directive, wait_for_record
from tests.test_keys import bearer, create_key
from tests.test_process_lifecycle import ServeProcess, processes, serve_env  # noqa: F401
from tests.test_script_segments import new_script, upstream_request

SRT = """1
00:00:01,000 --> 00:00:02,500
Hello <i>there</i>,
my <b>friend</b>.

2
00:00:03,000 --> 00:00:04,000 X1:100 X2:200
<font color="#ff0000">Red</font> text

3
00:01:03,007 --> 01:00:04,250
The last line
"""

VTT = """WEBVTT

NOTE made by hand

STYLE
::cue { color: yellow }

intro
00:00:01.000 --> 00:00:02.500 align:start position:10%
<v Bob>Hello</v> there,
my friend.

00:03.000 --> 00:04.000
Second cue
"""


def subtitles(client: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    return client.post("/v1/subtitles", json={"target_lang": "ko", "stream": False, **body})


def stream_events(client: httpx.Client, body: dict[str, Any]) -> list[ServerSentEvent]:
    with connect_sse(client, "POST", "/v1/subtitles", json={"target_lang": "ko", **body}) as s:
        assert s.response.status_code == 200
        assert s.response.headers["content-type"].startswith("text/event-stream")
        return list(s.iter_sse())


def test_an_srt_file_keeps_its_cues_numbering_timings_and_tags(client: httpx.Client) -> None:
    response = subtitles(client, {"content": SRT})
    assert response.status_code == 200
    done = response.json()
    assert set(done) == {"script_id", "format", "content"} and done["format"] == "srt"
    before, after = list(srt.parse(SRT)), list(srt.parse(done["content"]))
    assert [(s.index, s.start, s.end, s.proprietary) for s in after] == [
        (s.index, s.start, s.end, s.proprietary) for s in before
    ]
    # The fake echoes the text after "T:": lines and tags come back as they were sent.
    assert [s.content for s in after] == ["T:" + s.content for s in before]
    assert after[0].content == "T:Hello <i>there</i>,\nmy <b>friend</b>."


def test_cues_are_script_segments_with_the_previous_cues_as_context(
    client: httpx.Client, fake: FakeOpenAI
) -> None:
    script = new_script()
    content = SRT.replace("The last line", f"The last line of {script}")
    done = subtitles(client, {"content": content, "script_id": script, "source_lang": "en"}).json()
    assert done["script_id"] == script
    items = client.get("/v1/translations", params={"script_id": script}).json()["items"]
    records = sorted(items, key=lambda r: r["segment_index"])
    assert [r["segment_index"] for r in records] == [0, 1, 2]
    assert [r["text"] for r in records] == [s.content for s in srt.parse(content)]
    assert {r["status"] for r in records} == {"succeeded"}
    last = upstream_request(fake, f"The last line of {script}")
    red = '<font color="#ff0000">Red</font> text'
    assert last["messages"][3]["content"].split("\n")[1] == red
    assert last["messages"][4]["content"] == records[1]["translation"]
    # The first cue has two lines: its turn keeps them.
    first_turn = last["messages"][1]["content"].split("\n")
    assert first_turn[1:3] == ["Hello <i>there</i>,", "my <b>friend</b>."]

    export = client.get(
        f"/v1/scripts/{script}/export", params={"target_lang": "ko", "format": "srt"}
    )
    assert export.status_code == 200
    # Rebuilt from the records: cue numbers, timings and texts (SRT position hints are not kept).
    assert [(c.index, c.start, c.end, c.content) for c in srt.parse(export.text)] == [
        (c.index, c.start, c.end, c.content) for c in srt.parse(done["content"])
    ]
    vtt = client.get(f"/v1/scripts/{script}/export", params={"target_lang": "ko", "format": "vtt"})
    captions = webvtt.from_string(vtt.text).captions
    assert [(c.start, c.end) for c in captions] == [
        ("00:00:01.000", "00:00:02.500"),
        ("00:00:03.000", "00:00:04.000"),
        ("00:01:03.007", "01:00:04.250"),
    ]
    assert [c.raw_text for c in captions] == [s.content for s in srt.parse(done["content"])]


def test_the_stream_sends_deltas_per_cue_then_each_cue_then_the_file(
    client: httpx.Client,
) -> None:
    content = SRT.replace("The last line", pieces_directive(["마지막 ", "줄"]))
    events = stream_events(client, {"content": content})
    assert [int(e.id) for e in events] == list(range(len(events)))
    names = [e.event for e in events]
    assert names[0] == "start" and names[-1] == "done"
    assert names.count("cue") == 3 and "error" not in names
    start = json.loads(events[0].data)
    assert start["script_id"].startswith("sub-") and start["provider"] == "openai"
    data = [json.loads(e.data) for e in events]
    cues = [d for e, d in zip(events, data, strict=True) if e.event == "cue"]
    assert cues[2] == {
        "index": 3,
        "start": "00:01:03,007",
        "end": "01:00:04,250",
        "text": "마지막 줄",
    }
    assert cues[0]["start"] == "00:00:01,000" and cues[0]["text"].startswith("T:Hello")
    # Each cue's deltas come before its `cue` event and add up to its text.
    text_by_cue: dict[int, str] = {}
    order: list[tuple[str, int]] = []
    for event, d in zip(events, data, strict=True):
        if event.event == "delta":
            text_by_cue[d["cue"]] = text_by_cue.get(d["cue"], "") + d["text"]
            order.append(("delta", d["cue"]))
        elif event.event == "cue":
            order.append(("cue", d["index"]))
    assert [text_by_cue[c["index"]] for c in cues] == [c["text"] for c in cues]
    cue_positions = [order.index(("cue", i)) for i in (1, 2, 3)]
    assert all(
        order.index(("delta", i)) < cue_positions[i - 1] for i in (1, 2, 3)
    ) and cue_positions == sorted(cue_positions)
    done = data[-1]
    assert done["script_id"] == start["script_id"] and done["format"] == "srt"
    assert [s.content for s in srt.parse(done["content"])][2] == "마지막 줄"


def test_a_webvtt_file_keeps_identifiers_settings_notes_and_styles(client: httpx.Client) -> None:
    done = subtitles(client, {"content": VTT}).json()
    assert done["format"] == "vtt"
    out = done["content"]
    assert "NOTE made by hand" in out and "::cue { color: yellow }" in out
    assert "intro\n00:00:01.000 --> 00:00:02.500 align:start position:10%\n" in out
    assert "T:<v Bob>Hello</v> there,\nmy friend." in out
    captions = webvtt.from_string(out).captions
    assert [(c.identifier, c.start, c.end) for c in captions] == [
        ("intro", "00:00:01.000", "00:00:02.500"),
        (None, "00:00:03.000", "00:00:04.000"),
    ]
    events = stream_events(client, {"content": VTT, "format": "vtt"})
    cue = json.loads(next(e.data for e in events if e.event == "cue"))
    assert (cue["start"], cue["end"]) == ("00:00:01.000", "00:00:02.500")


def test_files_that_do_not_parse_are_refused_and_nothing_is_stored(
    client: httpx.Client,
) -> None:
    script = new_script()
    for body in (
        {"content": "this is not a subtitle file"},
        {"content": ""},
        {"content": "WEBVTT\n\n"},
        {"content": SRT, "format": "vtt"},
        {"content": VTT, "format": "srt"},
        {"content": SRT, "format": "ass"},
        {"content": SRT, "target_lang": "tlh"},
    ):
        response = subtitles(client, {**body, "script_id": script})
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] in ("invalid_request", "unsupported_language")
    assert client.get("/v1/translations", params={"script_id": script}).json()["items"] == []


def test_a_glossary_set_on_the_script_applies_to_its_cues(
    client: httpx.Client, fake: FakeOpenAI
) -> None:
    script = new_script()
    entries = [{"source": "friend", "target": "친구", "target_lang": "ko"}]
    client.put(f"/v1/scripts/{script}/glossary", json={"entries": entries})
    subtitles(client, {"content": SRT, "script_id": script})
    records = client.get("/v1/translations", params={"script_id": script}).json()["items"]
    by_index = {r["segment_index"]: r for r in records}
    assert by_index[0]["glossary_misses"] == ["friend"]
    assert by_index[1]["glossary_misses"] is None


def test_failures_before_the_first_piece_are_statuses_later_ones_in_band(
    client: httpx.Client,
) -> None:
    first_fails = SRT.replace("The last line", "fine").replace("Hello <i>", "[[error:500]] <i>")
    response = subtitles(client, {"content": first_fails})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"

    script = new_script()
    later_fails = SRT.replace("The last line", "[[error:500]] last")
    events = stream_events(client, {"content": later_fails, "script_id": script})
    names = [e.event for e in events]
    assert names[-1] == "error" and names.count("cue") == 2 and "done" not in names
    assert json.loads(events[-1].data)["error"]["code"] == "upstream_error"
    records = client.get("/v1/translations", params={"script_id": script}).json()["items"]
    assert sorted((r["segment_index"], r["status"]) for r in records) == [
        (0, "succeeded"),
        (1, "succeeded"),
        (2, "failed"),
    ]


def test_a_client_that_leaves_cancels_the_cue_in_progress(
    client: httpx.Client, server: ServerThread, fake: FakeOpenAI
) -> None:
    script = new_script()
    tag = f"sub-{script}"
    content = SRT.replace("<font", f"[[slow:{tag}:50:0.2]] <font")
    body = {"content": content, "script_id": script, "target_lang": "ko"}
    with connect_sse(client, "POST", "/v1/subtitles", json=body) as source:
        for event in source.iter_sse():
            if event.event == "delta" and json.loads(event.data)["cue"] == 2:
                break
    assert fake.closed_event(tag).wait(30)
    items = client.get("/v1/translations", params={"script_id": script}).json()["items"]
    slow = next(r for r in items if r["segment_index"] == 1)
    assert wait_for_record(server.url, slow["id"], "cancelled")["status"] == "cancelled"
    later = client.get("/v1/translations", params={"script_id": script}).json()["items"]
    assert len(later) == 2  # the third cue never started


def test_a_client_that_leaves_a_non_streamed_request_cancels_it(
    server: ServerThread, fake: FakeOpenAI
) -> None:
    script = new_script()
    tag = f"json-{script}"
    content = SRT.replace("<font", f"[[slow:{tag}:400:0.05]] <font")
    body = json.dumps(
        {"content": content, "script_id": script, "target_lang": "ko", "stream": False}
    ).encode()
    # A raw connection, closed once the second cue has reached the upstream.
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall(
            b"POST /v1/subtitles HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        deadline = time.monotonic() + 30
        while not any(tag in r["messages"][-1]["content"] for r in fake.requests):
            assert time.monotonic() < deadline, "the second cue never reached the upstream"
            time.sleep(0.05)
    assert fake.closed_event(tag).wait(30)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        items = client.get("/v1/translations", params={"script_id": script}).json()["items"]
    slow = next(r for r in items if r["segment_index"] == 1)
    assert wait_for_record(server.url, slow["id"], "cancelled")["status"] == "cancelled"


def test_sigterm_ends_a_subtitle_stream_in_band(
    serve_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
    processes: list[ServeProcess],  # noqa: F811
) -> None:
    server = ServeProcess({**serve_env, "DRAGOMAN_SHUTDOWN_GRACE_S": "1"}, tmp_path)
    processes.append(server)
    script = new_script()
    content = SRT.replace("<font", "[[slow:sub-term:400:0.05]] <font")
    body = {"content": content, "script_id": script, "target_lang": "ko"}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        with connect_sse(client, "POST", "/v1/subtitles", json=body) as source:
            events: list[ServerSentEvent] = []
            signalled = False
            for event in source.iter_sse():
                events.append(event)
                second = event.event == "delta" and json.loads(event.data)["cue"] == 2
                if second and not signalled:  # once, at the second cue's first piece
                    server.proc.send_signal(signal.SIGTERM)
                    signalled = True
    assert events[-1].event == "error"
    assert json.loads(events[-1].data)["error"]["code"] == "shutting_down"
    server.proc.wait(15)
    restarted = ServeProcess(serve_env, tmp_path)
    processes.append(restarted)
    with httpx.Client(base_url=restarted.url) as reader:
        items = reader.get("/v1/translations", params={"script_id": script}).json()["items"]
    assert sorted((r["segment_index"], r["status"]) for r in items) == [
        (0, "succeeded"),
        (1, "failed"),
    ]
    assert next(r for r in items if r["segment_index"] == 1)["error"]["code"] == "shutting_down"


def test_a_file_counts_once_against_the_keys_limits(
    make_server: Callable[..., ServerThread], db_url: str
) -> None:
    server = make_server(auth="keys")
    _, one_request = create_key(db_url, "one", rpm=1)
    _, few_chars = create_key(db_url, "few", cpm=20)
    with httpx.Client(base_url=server.url, timeout=30, headers=bearer(one_request)) as client:
        assert subtitles(client, {"content": SRT}).status_code == 200  # three cues, one request
        again = subtitles(client, {"content": SRT})
        assert again.status_code == 429 and again.json()["error"]["code"] == "rate_limited"
    with httpx.Client(base_url=server.url, timeout=30, headers=bearer(few_chars)) as client:
        script = new_script()
        refused = subtitles(client, {"content": SRT, "script_id": script})
        assert refused.status_code == 429 and "retry-after" in refused.headers
        assert client.get("/v1/translations", params={"script_id": script}).json()["items"] == []


def test_a_reader_that_never_reads_is_dropped(
    make_server: Callable[..., ServerThread], fake: FakeOpenAI
) -> None:
    """As for translations: a subtitle stream whose client takes nothing for the send timeout
    is ended like one whose client left, and its cue in progress ends cancelled."""
    server = make_server(send_timeout_s=1, keepalive_s=0.2)
    script = new_script()
    tag = f"sub-never-reads-{script}"
    content = SRT.replace("<font", f"[[big:{tag}:2000:20000]] <font")
    payload = json.dumps({"content": content, "script_id": script, "target_lang": "ko"}).encode()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(
        b"POST /v1/subtitles HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload)
    )
    try:
        assert fake.closed_event(tag).wait(60), "the upstream was read on"
        items = httpx.get(f"{server.url}/v1/translations", params={"script_id": script}).json()[
            "items"
        ]
        big = next(r for r in items if r["segment_index"] == 1)
        assert wait_for_record(server.url, big["id"], "cancelled")["status"] == "cancelled"
    finally:
        sock.close()
