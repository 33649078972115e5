"""A script's summary and its export as text or JSON lines (subtitle exports: test_subtitles)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx

from tests.conftest import ServerThread
from tests.helpers import pieces_directive
from tests.test_keys import bearer, create_key
from tests.test_script_segments import new_script, segment


def test_script_summary_counts_its_records(client: httpx.Client) -> None:
    script = new_script()
    assert client.get(f"/v1/scripts/{script}").status_code == 404
    first = segment(client, script, "One.", to="ko")
    segment(client, script, "Two.", to="fr")
    last = segment(client, script, "Three.", to="ko-KR")
    info = client.get(f"/v1/scripts/{script}").json()
    assert info == {
        "script_id": script,
        "segments": 3,
        "target_langs": ["fr", "ko", "ko-KR"],
        "created_at": first["created_at"],
        "updated_at": last["created_at"],
    }
    assert client.get("/v1/scripts/bad%20id").status_code == 422


def test_export_as_text_and_json_lines_keeps_succeeded_segments_in_order(
    client: httpx.Client,
) -> None:
    script = new_script()
    texts = [pieces_directive(["첫째 ", "줄"]), "[[error:500]]", pieces_directive(["둘째\n줄"])]
    records = [
        client.post(
            f"/v1/scripts/{script}/segments",
            json={"text": text, "target_lang": "ko", "stream": False},
        )
        for text in texts
    ]
    assert [r.status_code for r in records] == [200, 502, 200]
    segment(client, script, "Elsewhere.", to="fr")

    txt = client.get(f"/v1/scripts/{script}/export", params={"target_lang": "ko"})
    assert txt.status_code == 200
    assert txt.headers["content-type"].startswith("text/plain")
    assert txt.text == "첫째 줄\n둘째\n줄\n"
    default = client.get(f"/v1/scripts/{script}/export", params={"target_lang": "ko"})
    assert default.text == txt.text

    jsonl = client.get(
        f"/v1/scripts/{script}/export", params={"target_lang": "ko", "format": "jsonl"}
    )
    lines = [json.loads(line) for line in jsonl.text.splitlines()]
    assert lines == [records[0].json(), records[2].json()]
    assert [line["segment_index"] for line in lines] == [0, 2]


def test_export_refusals(client: httpx.Client) -> None:
    script = new_script()
    missing = client.get(f"/v1/scripts/{script}/export", params={"target_lang": "ko"})
    assert missing.status_code == 404
    segment(client, script, "Only text.")
    for params, code in (
        ({"target_lang": "ko", "format": "srt"}, "invalid_request"),
        ({"target_lang": "ko", "format": "vtt"}, "invalid_request"),
        ({"target_lang": "ko", "format": "docx"}, "invalid_request"),
        ({}, "invalid_request"),
        ({"target_lang": "tlh"}, "unsupported_language"),
    ):
        response = client.get(f"/v1/scripts/{script}/export", params=params)
        assert response.status_code == 422, params
        assert response.json()["error"]["code"] == code
    # A language with no segment yet: an empty export.
    empty = client.get(f"/v1/scripts/{script}/export", params={"target_lang": "de"})
    assert (empty.status_code, empty.text) == (200, "")


def test_another_keys_script_is_not_found(
    make_server: Callable[..., ServerThread], db_url: str
) -> None:
    server = make_server(auth="keys")
    _, alice = create_key(db_url, "alice")
    _, bob = create_key(db_url, "bob")
    script = new_script()
    with httpx.Client(base_url=server.url, timeout=30, headers=bearer(alice)) as client:
        segment(client, script, "Alice's words.")
        assert client.get(f"/v1/scripts/{script}").json()["segments"] == 1
    with httpx.Client(base_url=server.url, timeout=30, headers=bearer(bob)) as client:
        assert client.get(f"/v1/scripts/{script}").status_code == 404
        export = client.get(f"/v1/scripts/{script}/export", params={"target_lang": "ko"})
        assert export.status_code == 404
