"""Browsers on other origins may call the API only when configured to."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.conftest import ServerThread

PREFLIGHT = {
    "Origin": "https://app.example",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type,x-script-id",
}


def test_preflight_allowed_origin(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(cors_origins="https://app.example, https://other.example")
    with httpx.Client(base_url=server.url) as client:
        response = client.options("/v1/translations", headers=PREFLIGHT)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-script-id" in response.headers["access-control-allow-headers"].lower()
        streamed = client.post(
            "/v1/translations",
            json={"text": "hi", "target_lang": "ko"},
            headers={"Origin": "https://app.example"},
        )
        assert streamed.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-translation-id" in streamed.headers["access-control-expose-headers"].lower()


def test_preflight_other_origin_refused(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(cors_origins="https://app.example")
    with httpx.Client(base_url=server.url) as client:
        response = client.options(
            "/v1/translations", headers={**PREFLIGHT, "Origin": "https://evil.example"}
        )
        assert response.status_code == 400
        assert "access-control-allow-origin" not in response.headers


def test_no_cors_by_default(client: httpx.Client) -> None:
    response = client.options("/v1/translations", headers=PREFLIGHT)
    assert "access-control-allow-origin" not in response.headers


def test_cross_origin_requests_answered_alike(make_server: Callable[..., ServerThread]) -> None:
    # With CORS on, requests with an Origin go through the CORS middleware; the others are served
    # directly. Both ways must give the same answers.
    server = make_server(cors_origins="https://app.example")
    cases: list[tuple[str, bytes, dict[str, str]]] = [
        ("/translate", b'{"lang": "ko"}', {}),
        ("/translate", b'{"lang": "ko", "message": "hi"}', {"x-script-id": "bad id"}),
        ("/translate", b'{"lang": "Klingonese", "message": "hi"}', {}),
        ("/v1/translations", b"{not json", {}),
        ("/v1/translations", b'{"text": "hi", "target_lang": "ko", "stream": "x"}', {}),
        ("/v1/translations", b'{"text": "hi", "target_lang": "ko"}', {"content-type": "text/x"}),
    ]
    with httpx.Client(base_url=server.url) as client:
        for path, body, headers in cases:
            headers = {"content-type": "application/json", **headers}
            direct = client.post(path, content=body, headers=headers)
            cross = client.post(
                path, content=body, headers={**headers, "Origin": "https://app.example"}
            )
            assert direct.status_code == cross.status_code == 422, (path, body, direct.text)
            assert direct.json() == cross.json()
            assert "access-control-allow-origin" not in direct.headers
            assert cross.headers["access-control-allow-origin"] == "https://app.example"
        assert client.get("/v1/translations").json()["items"] == []


def test_preflight_allows_putting_a_glossary(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(cors_origins="https://app.example")
    headers = {**PREFLIGHT, "Access-Control-Request-Method": "PUT"}
    with httpx.Client(base_url=server.url) as client:
        response = client.options("/v1/scripts/s1/glossary", headers=headers)
        assert response.status_code == 200
        assert "PUT" in response.headers["access-control-allow-methods"]
