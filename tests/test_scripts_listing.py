"""`GET /v1/scripts`: the caller's scripts, the last active first, paged without skipping or
repeating; the Python client's `scripts()`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from dragoman.client import AsyncClient, Client
from tests.conftest import ServerThread
from tests.test_keys import bearer, create_key


def _translate(client: httpx.Client, script: str, lang: str = "ko", **headers: str) -> None:
    response = client.post(
        "/v1/translations",
        json={"text": f"text of {script}", "target_lang": lang, "script_id": script,
              "stream": False},
        headers=headers,
    )  # fmt: skip
    assert response.status_code == 200, response.text


def _segment(client: httpx.Client, script: str, lang: str = "ko") -> None:
    response = client.post(
        f"/v1/scripts/{script}/segments",
        json={"text": f"segment of {script}", "target_lang": lang, "stream": False},
    )
    assert response.status_code == 200, response.text


def test_scripts_newest_activity_first_with_their_summary(client: httpx.Client) -> None:
    assert client.get("/v1/scripts").json() == {"items": [], "next_cursor": None}
    _translate(client, "alpha")
    _segment(client, "beta", "fr")
    _segment(client, "beta", "de")
    _translate(client, "gamma")
    client.post("/v1/translations", json={"text": "no script", "target_lang": "ko",
                                          "stream": False})  # fmt: skip
    _translate(client, "alpha", "ja")  # alpha is active again: first

    page = client.get("/v1/scripts").json()
    assert page["next_cursor"] is None
    assert [item["script_id"] for item in page["items"]] == ["alpha", "gamma", "beta"]
    alpha, _, beta = page["items"]
    assert (alpha["segments"], alpha["target_langs"]) == (2, ["ja", "ko"])
    assert (beta["segments"], beta["target_langs"]) == (2, ["de", "fr"])
    assert alpha["created_at"] < alpha["updated_at"]
    # Each item is what GET /v1/scripts/{id} answers.
    for item in page["items"]:
        assert client.get(f"/v1/scripts/{item['script_id']}").json() == item


def test_pages_neither_skip_nor_repeat(client: httpx.Client) -> None:
    names = [f"p{i:02d}" for i in range(7)]
    for name in names:
        _translate(client, name)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/scripts", params=params).json()
        seen += [item["script_id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(names)) and pages == 3


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "0"}, "query.limit: "),
        ({"limit": "201"}, "query.limit: "),
        ({"limit": "many"}, "query.limit: "),
        ({"cursor": "not-a-cursor"}, "cursor: not a cursor this server gave out."),
    ],
)
def test_bad_parameters(client: httpx.Client, params: dict[str, str], message: str) -> None:
    response = client.get("/v1/scripts", params=params)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and error["message"].startswith(message)
    assert client.get("/v1/translations").json()["items"] == []


def test_each_key_sees_its_own_scripts(
    make_server: Callable[..., ServerThread], db_url: str
) -> None:
    server = make_server(auth="keys")
    _, alice = create_key(db_url, "alice")
    _, bob = create_key(db_url, "bob")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/v1/scripts").status_code == 401
        _translate(client, "mine", **bearer(alice))
        _translate(client, "shared-name", **bearer(alice))
        _translate(client, "shared-name", **bearer(bob))
        listed = client.get("/v1/scripts", headers=bearer(bob)).json()["items"]
        assert [(s["script_id"], s["segments"]) for s in listed] == [("shared-name", 1)]
        listed = client.get("/v1/scripts", headers=bearer(alice)).json()["items"]
        assert [s["script_id"] for s in listed] == ["shared-name", "mine"]
    with Client(server.url, api_key=bob) as python_client:
        assert [s["script_id"] for s in python_client.scripts()] == ["shared-name"]


def test_python_clients_page_through_every_script(server: ServerThread) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for i in range(5):
            _translate(client, f"c{i}")
    with Client(server.url) as client:
        assert [s["script_id"] for s in client.scripts()] == ["c4", "c3", "c2", "c1", "c0"]
        assert [s["script_id"] for s in client.scripts(limit=2)] == ["c4", "c3"]

    async def listed() -> list[str]:
        async with AsyncClient(server.url) as client:
            return [s["script_id"] for s in await client.scripts(limit=4)]

    assert asyncio.run(listed()) == ["c4", "c3", "c2", "c1"]
