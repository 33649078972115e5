"""A script's glossary: stored whole per script and key, the entries that occur in a segment go
into its prompt, and the record lists the entries the translation missed."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.conftest import ServerThread
from tests.fake_openai import FakeOpenAI
from tests.helpers import pieces_directive
from tests.test_keys import bearer, create_key
from tests.test_script_segments import new_script, segment, upstream_request

ENTRIES = [
    {"source": "dragoman", "target": "통역사", "target_lang": "ko"},
    {"source": "Seoul Station", "target": "서울역", "target_lang": "ko"},
    {"source": "dragoman", "target": "drogman", "target_lang": "fr"},
]


def put(client: httpx.Client, script_id: str, entries: list[dict[str, str]]) -> httpx.Response:
    return client.put(f"/v1/scripts/{script_id}/glossary", json={"entries": entries})


def test_put_replaces_and_get_reads_the_glossary(client: httpx.Client) -> None:
    script = new_script()
    assert client.get(f"/v1/scripts/{script}/glossary").json() == {
        "script_id": script,
        "entries": [],
    }
    response = put(client, script, [{**ENTRIES[0], "target_lang": "ko-kr"}, ENTRIES[2]])
    assert response.status_code == 200
    stored = {"script_id": script, "entries": [{**ENTRIES[0], "target_lang": "ko-KR"}, ENTRIES[2]]}
    assert response.json() == stored
    assert client.get(f"/v1/scripts/{script}/glossary").json() == stored
    assert put(client, script, ENTRIES[1:2]).json()["entries"] == ENTRIES[1:2]
    assert client.get(f"/v1/scripts/{script}/glossary").json()["entries"] == ENTRIES[1:2]
    assert put(client, script, []).json()["entries"] == []
    assert client.get(f"/v1/scripts/{script}/glossary").json()["entries"] == []


@pytest.mark.parametrize(
    ("entries", "code"),
    [
        ([{"source": "", "target": "x", "target_lang": "ko"}], "invalid_request"),
        ([{"source": "   ", "target": "x", "target_lang": "ko"}], "invalid_request"),
        ([{"source": "a" * 101, "target": "x", "target_lang": "ko"}], "invalid_request"),
        ([{"source": "a", "target": "x" * 101, "target_lang": "ko"}], "invalid_request"),
        ([{"source": "a", "target": "x"}], "invalid_request"),
        ([{"source": "a", "target": "x", "target_lang": "ko"}] * 501, "invalid_request"),
        ([{"source": "a", "target": "x", "target_lang": "tlh"}], "unsupported_language"),
        ([{"source": "a", "target": "x", "target_lang": "not a tag"}], "unsupported_language"),
    ],
)
def test_bad_glossaries_are_refused_and_keep_the_old_one(
    client: httpx.Client, entries: list[dict[str, str]], code: str
) -> None:
    script = new_script()
    assert put(client, script, ENTRIES).status_code == 200
    response = put(client, script, entries)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == code
    assert client.get(f"/v1/scripts/{script}/glossary").json()["entries"] == ENTRIES


def test_a_full_glossary_of_500_entries_is_accepted(client: httpx.Client) -> None:
    script = new_script()
    entries = [{"source": f"t{i}", "target": "x" * 100, "target_lang": "ko"} for i in range(500)]
    assert put(client, script, entries).status_code == 200
    assert len(client.get(f"/v1/scripts/{script}/glossary").json()["entries"]) == 500


def test_entries_that_occur_go_into_the_prompt_and_misses_are_recorded(
    client: httpx.Client, fake: FakeOpenAI
) -> None:
    script = new_script()
    put(client, script, ENTRIES)
    # The fake echoes the text: "DRAGOMAN" is kept as it is, so its Korean term is missed.
    text = f"The DRAGOMAN waits at Seoul station ({script})."
    record = segment(client, script, text)
    system = upstream_request(fake, text)["messages"][0]["content"]
    assert "- dragoman → 통역사" in system and "- Seoul Station → 서울역" in system
    assert "drogman" not in system  # French entry, Korean segment
    assert record["glossary_misses"] == ["dragoman", "Seoul Station"]

    both = f" dragoman at Seoul Station {script}"
    kept = pieces_directive(["통역사가 ", "서울역에서 기다립니다."]) + both
    assert segment(client, script, kept)["glossary_misses"] == []
    partly = pieces_directive(["통역사가 기다립니다."]) + both
    assert segment(client, script, partly)["glossary_misses"] == ["Seoul Station"]

    # No entry occurs: no glossary in the prompt, and `null`.
    plain = f"Nothing to look up here ({script})."
    assert segment(client, script, plain)["glossary_misses"] is None
    assert "glossary" not in upstream_request(fake, plain)["messages"][0]["content"]

    french = f"Le dragoman arrive ({script})."
    assert segment(client, script, french, to="fr")["glossary_misses"] == ["dragoman"]
    assert "- dragoman → drogman" in upstream_request(fake, french)["messages"][0]["content"]


def test_a_region_tag_segment_uses_the_base_language_entries(
    client: httpx.Client, fake: FakeOpenAI
) -> None:
    script = new_script()
    put(client, script, ENTRIES)
    text = f"dragoman ({script})"
    segment(client, script, text, to="ko-KR")
    assert "- dragoman → 통역사" in upstream_request(fake, text)["messages"][0]["content"]


def test_glossaries_belong_to_their_key(
    make_server: Callable[..., ServerThread], db_url: str, fake: FakeOpenAI
) -> None:
    server = make_server(auth="keys")
    _, alice = create_key(db_url, "alice")
    _, bob = create_key(db_url, "bob")
    script = new_script()
    with httpx.Client(base_url=server.url, timeout=30, headers=bearer(alice)) as client:
        assert put(client, script, ENTRIES).status_code == 200
    with httpx.Client(base_url=server.url, timeout=30, headers=bearer(bob)) as client:
        assert client.get(f"/v1/scripts/{script}/glossary").json()["entries"] == []
        text = f"Bob's dragoman ({script})"
        assert segment(client, script, text)["glossary_misses"] is None
    assert "통역사" not in upstream_request(fake, text)["messages"][0]["content"]
    assert httpx.get(f"{server.url}/v1/scripts/{script}/glossary").status_code == 401
