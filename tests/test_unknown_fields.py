"""A field the API does not know is refused (422) and named, with the field it most likely
meant; nothing is stored and no upstream request is made. LibreTranslate's endpoints keep
taking the extra fields its clients send."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fake_openai import FakeOpenAI
from tests.test_script_segments import new_script


def _refused(response: httpx.Response, message: str) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["message"] == message
    return error


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        (
            "/v1/translations",
            {"text": "hi", "targetLang": "ko"},
            "targetLang: unknown field; did you mean target_lang?",
        ),
        (
            "/v1/translations",
            {"text": "hi", "target_lang": "ko", "sript_id": "a"},
            "sript_id: unknown field; did you mean script_id?",
        ),
        (
            "/v1/translations",
            {"text": "hi", "target_lang": "ko", "colour": "red"},
            "colour: unknown field; the fields are text, target_lang, source_lang, "
            "script_id, stream, resumable",
        ),
        (
            "/translate",
            {"lang": "ko", "message": "hi", "sourceLang": "en"},
            "sourceLang: unknown field; did you mean source_lang?",
        ),
        (
            "/v1/subtitles",
            {"content": "1\n00:00:01,000 --> 00:00:02,000\nHi\n", "target_lang": "ko",
             "fromat": "srt"},
            "fromat: unknown field; did you mean format?",
        ),
    ],
)  # fmt: skip
def test_unknown_fields_are_named(
    client: httpx.Client, fake: FakeOpenAI, path: str, body: dict[str, Any], message: str
) -> None:
    before = len(fake.requests)
    error = _refused(client.post(path, json=body), message)
    # The misspelling is the message; a field it left missing is in the details too.
    assert {"field": message.split(":")[0], "problem": message.split(": ", 1)[1]} in error[
        "details"
    ]
    assert client.get("/v1/translations").json()["items"] == []
    assert len(fake.requests) == before


def test_a_misspelt_field_is_named_before_the_missing_one(client: httpx.Client) -> None:
    error = _refused(
        client.post("/v1/translations", json={"text": "hi", "targetLang": "ko"}),
        "targetLang: unknown field; did you mean target_lang?",
    )
    assert [d["field"] for d in error["details"]] == ["target_lang", "targetLang"]


def test_unknown_fields_in_segments_and_glossaries(client: httpx.Client) -> None:
    script = new_script()
    _refused(
        client.post(
            f"/v1/scripts/{script}/segments",
            json={"text": "hi", "target_lang": "ko", "script_id": script},
        ),
        "script_id: unknown field; the fields are text, target_lang, source_lang, stream, "
        "resumable",
    )
    _refused(
        client.put(
            f"/v1/scripts/{script}/glossary",
            json={"entries": [{"source": "a", "target": "b", "targetLang": "ko"}]},
        ),
        "entries.0.targetLang: unknown field; did you mean target_lang?",
    )
    assert client.get(f"/v1/scripts/{script}/glossary").json()["entries"] == []
    assert client.get(f"/v1/scripts/{script}").status_code == 404


def test_libretranslate_still_takes_its_clients_extra_fields(client: httpx.Client) -> None:
    body = {"q": "Hello", "source": "en", "target": "de", "format": "text",
            "api_key": "", "alternatives": 3, "secret": "x"}  # fmt: skip
    response = client.post("/libretranslate/translate", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"translatedText": "T:Hello"}
