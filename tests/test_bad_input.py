"""Every bad input: its status, its error body, and nothing stored as a success."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fake_openai import FakeOpenAI


def _assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"]["code"] == code
    message = body["error"]["message"]
    assert message and "Traceback" not in message and "object at 0x" not in message


def _nothing_stored(client: httpx.Client) -> None:
    assert client.get("/v1/translations").json()["items"] == []


V1_CASES: list[tuple[Any, int, str]] = [
    ({"target_lang": "ko"}, 422, "invalid_request"),
    ({"text": "hi"}, 422, "invalid_request"),
    ({"text": 5, "target_lang": "ko"}, 422, "invalid_request"),
    ({"text": "hi", "target_lang": ["ko"]}, 422, "invalid_request"),
    ({"text": "hi", "target_lang": "ko", "stream": "maybe"}, 422, "invalid_request"),
    ({"text": "", "target_lang": "ko"}, 422, "invalid_request"),
    ({"text": " \n\t ", "target_lang": "ko"}, 422, "invalid_request"),
    ({"text": "a\u0000b", "target_lang": "ko"}, 422, "invalid_request"),
    ({"text": "hi", "target_lang": "not a tag!"}, 422, "unsupported_language"),
    ({"text": "hi", "target_lang": "tlh"}, 422, "unsupported_language"),
    ({"text": "hi", "target_lang": "ko", "source_lang": "xx-??"}, 422, "unsupported_language"),
    ({"text": "hi", "target_lang": "Korean"}, 422, "unsupported_language"),
    ({"text": "hi", "target_lang": "ko", "script_id": "bad id!"}, 422, "invalid_request"),
    ({"text": "hi", "target_lang": "ko", "script_id": "x" * 129}, 422, "invalid_request"),
    ({"text": "hi", "target_lang": "ko", "script_id": ""}, 422, "invalid_request"),
    ({"text": "x" * 10_001, "target_lang": "ko"}, 413, "text_too_long"),
    ([1, 2], 422, "invalid_request"),
]


@pytest.mark.parametrize(("body", "status", "code"), V1_CASES)
def test_v1_bad_input(client: httpx.Client, body: Any, status: int, code: str) -> None:
    _assert_error(client.post("/v1/translations", json=body), status, code)
    _nothing_stored(client)


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"", b'{"text": "hi", "target_lang": "ko"', "\u00e9".encode("latin-1")],
)
def test_broken_json(client: httpx.Client, raw: bytes) -> None:
    for path in ("/v1/translations", "/translate"):
        response = client.post(path, content=raw, headers={"content-type": "application/json"})
        _assert_error(response, 422, "invalid_request")
    _nothing_stored(client)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_body_that_is_not_declared_json(client: httpx.Client, content_type: str) -> None:
    # A browser sends these cross-origin without a preflight: they must not start anything.
    bodies = {
        "/v1/translations": b'{"text": "hi", "target_lang": "ko"}',
        "/translate": b'{"lang": "ko", "message": "hi"}',
    }
    for path, raw in bodies.items():
        response = client.post(path, content=raw, headers={"content-type": content_type})
        _assert_error(response, 422, "invalid_request")
        assert "JSON" in response.json()["error"]["message"]
    _nothing_stored(client)


def test_body_without_content_type_is_refused(client: httpx.Client) -> None:
    request = client.build_request("POST", "/translate", content=b'{"lang": "ko", "message": "hi"}')
    request.headers.pop("content-type", None)
    _assert_error(client.send(request), 422, "invalid_request")
    _nothing_stored(client)


COMPAT_CASES: list[tuple[Any, dict[str, str], int, str]] = [
    ({"lang": "ko"}, {}, 422, "invalid_request"),
    ({"message": "hi"}, {}, 422, "invalid_request"),
    ({"lang": "ko", "message": ""}, {}, 422, "invalid_request"),
    ({"lang": "Klingonese", "message": "hi"}, {}, 422, "unsupported_language"),
    ({"lang": "ko", "message": "hi"}, {"x-script-id": "has space"}, 422, "invalid_request"),
    ({"lang": "ko", "message": "hi"}, {"x-script-id": "a" * 129}, 422, "invalid_request"),
    ({"lang": "ko", "message": "y" * 10_001}, {}, 413, "text_too_long"),
]


@pytest.mark.parametrize(("body", "headers", "status", "code"), COMPAT_CASES)
def test_compat_bad_input(
    client: httpx.Client, body: Any, headers: dict[str, str], status: int, code: str
) -> None:
    _assert_error(client.post("/translate", json=body, headers=headers), status, code)
    _nothing_stored(client)


def test_language_names_accepted_on_compat_endpoint(client: httpx.Client, fake: FakeOpenAI) -> None:
    for name, tag in [("Korean", "ko"), ("한국어", "ko"), ("French", "fr"), ("ko-kr", "ko-KR")]:
        response = client.post(
            "/translate", json={"lang": name, "message": "hi", "source_lang": "English"}
        )
        assert response.status_code == 200
        record = client.get(f"/v1/translations/{response.headers['x-translation-id']}").json()
        assert (record["target_lang"], record["source_lang"]) == (tag, "en")


@pytest.mark.parametrize(
    "record_id", ["nope", "0" * 32, "../../etc/passwd", "x" * 300, "%00", "1;DROP TABLE", "12"]
)
def test_unknown_record_is_404(client: httpx.Client, record_id: str) -> None:
    _assert_error(client.get(f"/v1/translations/{record_id}"), 404, "not_found")


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "201"},
        {"limit": "ten"},
        {"cursor": "garbage"},
        {"script_id": "a b"},
    ],
)
def test_bad_list_parameters(client: httpx.Client, params: dict[str, str]) -> None:
    _assert_error(client.get("/v1/translations", params=params), 422, "invalid_request")


def test_languages_listing(client: httpx.Client) -> None:
    languages = client.get("/v1/languages").json()["languages"]
    by_tag = {entry["tag"]: entry["name"] for entry in languages}
    assert by_tag["ko"] == "Korean" and by_tag["en"] == "English"


def test_health_and_docs(client: httpx.Client) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/v1/translations" in spec["paths"] and "/translate" in spec["paths"]


def test_docs_work_without_internet(client: httpx.Client) -> None:
    page = client.get("/docs").text
    assert "cdn." not in page and "https://" not in page
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        answer = client.get(f"/docs-assets/{asset}")
        assert answer.status_code == 200 and len(answer.content) > 10_000


def test_original_endpoint_errors_name_its_own_fields(client: httpx.Client) -> None:
    empty = client.post("/translate", json={"lang": "ko", "message": "   "})
    assert empty.status_code == 422 and empty.json()["error"]["message"].startswith("message:")
    unknown = client.post("/translate", json={"lang": "xx", "message": "Hello."})
    assert unknown.status_code == 422
    assert unknown.json()["error"]["message"].startswith("lang:")


def test_language_errors_say_what_is_wrong_and_what_is_offered(client: httpx.Client) -> None:
    unknown = client.post("/v1/translations", json={"text": "Hi.", "target_lang": "xx"})
    error = unknown.json()["error"]
    assert error["code"] == "unsupported_language"
    assert "not offered" in error["message"] and "GET /v1/languages" in error["message"]
    assert "well-formed" not in error["message"]
    broken = client.post("/v1/translations", json={"text": "Hi.", "target_lang": "k!"})
    assert "not a well-formed language tag" in broken.json()["error"]["message"]
