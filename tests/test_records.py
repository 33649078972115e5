"""Records: one per accepted request, its final state readable right after the response."""

from __future__ import annotations

import httpx

from tests.helpers import raw_events, run_sql, v1_events


def test_success_record(client: httpx.Client) -> None:
    response, _ = v1_events(
        client,
        {"text": "The weather is nice today.", "target_lang": "ko-kr", "script_id": "lec-1"},
    )
    record_id = response.headers["x-translation-id"]
    record = client.get(f"/v1/translations/{record_id}").json()
    assert record["id"] == record_id
    assert record["status"] == "succeeded"
    assert record["target_lang"] == "ko-KR"
    assert record["source_lang"] == "en"  # detected
    assert record["script_id"] == "lec-1"
    assert record["translation"] == "T:The weather is nice today."
    assert record["provider"] == "openai" and record["model"] == "fake-model"
    assert record["usage"] == {"prompt_tokens": 7, "completion_tokens": 6}
    assert record["error"] is None
    assert isinstance(record["first_token_ms"], int) and isinstance(record["total_ms"], int)
    assert record["created_at"].endswith("Z") and len(record["created_at"]) == 24


def test_compat_script_header_is_stored(client: httpx.Client) -> None:
    response, _ = raw_events(
        client, {"lang": "ja", "message": "hi"}, headers={"x-script-id": "chat:42.a-b_c"}
    )
    record = client.get(f"/v1/translations/{response.headers['x-translation-id']}").json()
    assert record["script_id"] == "chat:42.a-b_c"


def test_stream_false_returns_the_record(client: httpx.Client) -> None:
    response = client.post(
        "/v1/translations", json={"text": "a b", "target_lang": "fr", "stream": False}
    )
    assert response.status_code == 200
    body = response.json()
    assert body == client.get(f"/v1/translations/{body['id']}").json()
    assert response.headers["x-translation-id"] == body["id"]


def test_pagination_newest_first_without_gaps(client: httpx.Client) -> None:
    ids = []
    for i in range(7):
        body = {"text": f"n{i}", "target_lang": "de", "script_id": "pg", "stream": False}
        ids.append(client.post("/v1/translations", json=body).json()["id"])
    client.post("/v1/translations", json={"text": "other", "target_lang": "de", "stream": False})
    seen: list[str] = []
    cursor = None
    while True:
        params = {"script_id": "pg", "limit": "3", **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/translations", params=params).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert len(client.get("/v1/translations").json()["items"]) == 8


def test_database_outage_is_503_then_recovers(client: httpx.Client, db_url: str) -> None:
    client.post("/v1/translations", json={"text": "warm", "target_lang": "ko", "stream": False})
    # The table goes away under the running service.
    run_sql(db_url, "ALTER TABLE translations RENAME TO translations_away")
    first = client.post("/v1/translations", json={"text": "a b", "target_lang": "ko"})
    # Its pieces were already out when the write failed: the failure is in-band.
    assert first.status_code == 200 and "event: error" in first.text
    assert "database_unavailable" in first.text
    second = client.post("/translate", json={"lang": "ko", "message": "c d"})
    assert second.status_code == 503
    assert second.json()["error"]["code"] == "database_unavailable"
    run_sql(db_url, "ALTER TABLE translations_away RENAME TO translations")
    third = client.post(
        "/v1/translations", json={"text": "e f", "target_lang": "ko", "stream": False}
    )
    assert third.status_code == 200
    assert client.get(f"/v1/translations/{third.json()['id']}").json()["status"] == "succeeded"
