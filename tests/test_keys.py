"""API keys: the `dragoman keys` commands, Bearer checks, public paths, each key's own records."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from dragoman.cli import app
from dragoman.keys import KeyStore
from dragoman.records.store import RecordStore
from tests.conftest import ServerThread, free_port
from tests.fake_openai import FakeOpenAI
from tests.helpers import run_sql, wait_until_answers

runner = CliRunner()


def create_key(db_url: str, name: str = "test", **limits: int) -> tuple[str, str]:
    """A new key in this database: (id, secret)."""

    async def create() -> tuple[str, str]:
        store = RecordStore(db_url)
        try:
            await store.migrate()
            key, secret = await KeyStore(store.engine).create(name, **limits)
            return key.id, secret
        finally:
            await store.engine.dispose()

    # In a thread of its own: the caller may be inside an event loop (Playwright's).
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, create()).result()


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def keyed(make_server: Callable[..., ServerThread]) -> ServerThread:
    return make_server(auth="keys")


def test_keys_commands_show_the_secret_once_and_keep_only_its_hash(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRAGOMAN_DATABASE_URL", db_url)
    created = runner.invoke(
        app, ["keys", "create", "--name", "alice", "--rpm", "5", "--concurrency", "2"]
    )
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("dgm_") and " " not in secret
    key_id = created.stdout.split("id: ", 1)[1].split()[0]

    listed = runner.invoke(app, ["keys", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    [key] = json.loads(listed.stdout)
    assert key["id"] == key_id and key["name"] == "alice"
    assert (key["rpm"], key["cpm"], key["concurrency"], key["revoked_at"]) == (5, None, 2, None)
    assert secret not in listed.stdout
    assert secret not in runner.invoke(app, ["keys", "list"]).stdout
    [rows] = run_sql(db_url, "SELECT * FROM api_keys")
    assert rows and not any(secret in str(value) for row in rows for value in row)

    assert runner.invoke(app, ["keys", "revoke", key_id]).exit_code == 0
    [key] = json.loads(runner.invoke(app, ["keys", "list", "--json"]).stdout)
    assert key["revoked_at"] is not None
    missing = runner.invoke(app, ["keys", "revoke", "key_nope"])
    assert missing.exit_code == 1


def test_requests_without_a_live_key_are_401(keyed: ServerThread, db_url: str) -> None:
    _, secret = create_key(db_url)
    with httpx.Client(base_url=keyed.url, timeout=30) as client:
        for headers in ({}, bearer("dgm_wrong"), {"Authorization": secret}):
            for method, path, body in (
                ("POST", "/v1/translations", {"text": "Hi", "target_lang": "ko"}),
                ("POST", "/translate", {"lang": "ko", "message": "Hi"}),
                ("GET", "/v1/translations", None),
                ("GET", "/v1/translations/abc", None),
            ):
                response = client.request(method, path, json=body, headers=headers)
                assert response.status_code == 401, (method, path, headers)
                assert response.json()["error"]["code"] == "unauthorized"
                assert response.headers["www-authenticate"] == "Bearer"
                assert secret not in response.text
        ok = client.post(
            "/v1/translations",
            json={"text": "Hi", "target_lang": "ko", "stream": False},
            headers=bearer(secret),
        )
        assert ok.status_code == 200, ok.text


def test_public_paths_need_no_key(keyed: ServerThread) -> None:
    with httpx.Client(base_url=keyed.url, timeout=30) as client:
        for path in ("/healthz", "/readyz", "/", "/docs", "/openapi.json", "/v1/languages"):
            assert client.get(path).status_code == 200, path
        assert client.get("/metrics").status_code == 200


def test_a_key_sees_only_its_own_records(keyed: ServerThread, db_url: str) -> None:
    alice_id, alice = create_key(db_url, "alice")
    bob_id, bob = create_key(db_url, "bob")
    body = {"text": "Hi", "target_lang": "ko", "stream": False, "script_id": "shared"}
    with httpx.Client(base_url=keyed.url, timeout=30) as client:
        mine = client.post("/v1/translations", json=body, headers=bearer(alice)).json()
        theirs = client.post("/v1/translations", json=body, headers=bearer(bob)).json()
        assert (mine["key_id"], theirs["key_id"]) == (alice_id, bob_id)

        assert client.get(f"/v1/translations/{mine['id']}", headers=bearer(alice)).json() == mine
        other = client.get(f"/v1/translations/{theirs['id']}", headers=bearer(alice))
        assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"
        for query in ("", "?script_id=shared"):
            page = client.get(f"/v1/translations{query}", headers=bearer(alice)).json()
            assert [item["id"] for item in page["items"]] == [mine["id"]]


def test_a_revoked_key_stops_working(keyed: ServerThread, db_url: str) -> None:
    key_id, secret = create_key(db_url)
    with httpx.Client(base_url=keyed.url, timeout=30) as client:
        assert client.get("/v1/translations", headers=bearer(secret)).status_code == 200

        async def revoke() -> None:
            store = RecordStore(db_url)
            try:
                assert await KeyStore(store.engine).revoke(key_id)
            finally:
                await store.engine.dispose()

        asyncio.run(revoke())
        # Lookups are cached for a few seconds per process: wait for the refusal.
        deadline = time.monotonic() + 30
        status = 200
        while status != 401 and time.monotonic() < deadline:
            status = client.get("/v1/translations", headers=bearer(secret)).status_code
            time.sleep(0.1)
        assert status == 401


def test_records_have_a_null_key_id_when_keys_are_off(client: httpx.Client) -> None:
    record = client.post(
        "/v1/translations", json={"text": "Hi", "target_lang": "ko", "stream": False}
    ).json()
    assert record["key_id"] is None


def test_keys_are_required_when_serve_says_the_address_is_not_loopback(
    make_server: Callable[..., ServerThread], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRAGOMAN_BOUND_LOOPBACK", "0")
    server = make_server()  # DRAGOMAN_AUTH unset
    response = httpx.get(f"{server.url}/v1/translations", timeout=30)
    assert response.status_code == 401


def test_serve_refuses_a_public_address_until_auth_is_chosen(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DRAGOMAN_AUTH"}
    result = subprocess.run(
        [sys.executable, "-m", "dragoman", "serve", "--host", "0.0.0.0"],
        cwd=tmp_path,
        env={**env, "DRAGOMAN_PROVIDER": "openai", "OPENAI_BASE_URL": "http://127.0.0.1:9"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "DRAGOMAN_AUTH" in line


def test_serve_refuses_several_workers_with_keys_and_no_redis(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DRAGOMAN_REDIS_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "dragoman", "serve", "--workers", "2"],
        cwd=tmp_path,
        env={
            **env,
            "DRAGOMAN_AUTH": "keys",
            "DRAGOMAN_PROVIDER": "openai",
            "OPENAI_BASE_URL": "http://127.0.0.1:9",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "DRAGOMAN_REDIS_URL" in line


def test_the_python_client_sends_its_key(keyed: ServerThread, db_url: str) -> None:
    from dragoman.client import Client, Unauthorized

    key_id, secret = create_key(db_url)
    with Client(keyed.url, api_key=secret) as client:
        assert "".join(client.stream("Hi", "ko"))
        assert client.last_record is not None and client.last_record["key_id"] == key_id
    with Client(keyed.url) as client, pytest.raises(Unauthorized):
        client.translate("Hi", "ko")


def test_keys_commands_say_in_one_line_when_the_database_is_unusable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    # The database's directory cannot be made: a file is in the way.
    monkeypatch.setenv("DRAGOMAN_DATABASE_URL", f"sqlite+aiosqlite:///{blocker}/sub/d.db")
    result = runner.invoke(app, ["keys", "list"])
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("dragoman: the database cannot be used")


def test_auth_off_serves_any_address_without_keys(
    tmp_path: Path, db_url: str, fake: FakeOpenAI
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRAGOMAN_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dragoman", "serve", "--host", "0.0.0.0", "--port", str(port)],
        cwd=tmp_path,
        env={
            **env,
            "DRAGOMAN_AUTH": "off",
            "DRAGOMAN_PROVIDER": "openai",
            "OPENAI_BASE_URL": fake.base_url,
            "DRAGOMAN_DATABASE_URL": db_url,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_until_answers(f"http://127.0.0.1:{port}/healthz", proc, 60)
        answer = httpx.post(
            f"http://127.0.0.1:{port}/v1/translations",
            json={"text": "Hi", "target_lang": "ko", "stream": False},
            timeout=30,
        )
        assert answer.status_code == 200 and answer.json()["key_id"] is None
    finally:
        proc.terminate()
        proc.wait(30)


def test_the_cli_sends_dragoman_api_key_to_a_server(
    keyed: ServerThread, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_id, secret = create_key(db_url)
    monkeypatch.delenv("DRAGOMAN_API_KEY", raising=False)
    refused = runner.invoke(app, ["translate", "Hello", "--to", "ko", "--server", keyed.url])
    assert refused.exit_code == 1 and "unauthorized" in refused.stderr
    monkeypatch.setenv("DRAGOMAN_API_KEY", secret)
    result = runner.invoke(app, ["translate", "Hello", "--to", "ko", "--server", keyed.url])
    assert result.exit_code == 0, result.output
    assert result.stdout == "T:Hello\n"
    history = runner.invoke(app, ["history", "--json", "--server", keyed.url])
    assert [r["key_id"] for r in json.loads(history.stdout)] == [key_id]


def test_openapi_documents_the_bearer_key(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    paths = schema["paths"]
    assert paths["/v1/translations"]["post"]["security"] == [{"apiKey": []}]
    assert paths["/v1/translations/{translation_id}"]["get"]["security"] == [{"apiKey": []}]
    assert paths["/healthz"]["get"]["security"] == []
    assert paths["/v1/languages"]["get"]["security"] == []
    # The translation endpoints keep their documented bodies.
    assert "requestBody" in paths["/translate"]["post"]


def test_cancel_and_resume_are_per_key(keyed: ServerThread, db_url: str) -> None:
    _, mine = create_key(db_url, "mine")
    _, other = create_key(db_url, "other")
    body = {
        "text": "[[slow:perkey:50:0.05]]",
        "target_lang": "ko",
        "source_lang": "en",
        "resumable": True,
    }
    with httpx.Client(base_url=keyed.url, timeout=30) as client:
        with client.stream("POST", "/v1/translations", json=body, headers=bearer(mine)) as response:
            assert response.status_code == 200
            translation_id = response.headers["x-translation-id"]
            # Another key sees nothing there: not its events, and it cannot stop it.
            stranger = client.post(
                f"/v1/translations/{translation_id}/cancel", headers=bearer(other)
            )
            assert stranger.status_code == 404
            events = client.get(f"/v1/translations/{translation_id}/events", headers=bearer(other))
            assert events.status_code == 404
            # Its own key can.
            own = client.post(f"/v1/translations/{translation_id}/cancel", headers=bearer(mine))
            assert own.status_code == 202
