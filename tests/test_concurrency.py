"""Many streams at once: all complete, exact, and recorded."""

from __future__ import annotations

import asyncio
import json

import httpx
from httpx_sse import aconnect_sse

from tests.conftest import ServerThread
from tests.fake_openai import default_pieces

STREAMS = 200


async def _one(client: httpx.AsyncClient, i: int) -> tuple[str, str]:
    text = f"stream {i} says hello to everyone"
    got = []
    async with aconnect_sse(
        client,
        "POST",
        "/v1/translations",
        json={"text": text, "target_lang": "ko", "script_id": "load"},
    ) as source:
        async for event in source.aiter_sse():
            if event.event == "delta":
                got.append(json.loads(event.data)["text"])
            elif event.event != "start":
                assert event.event == "done", event.data
    return "".join(got), "".join(default_pieces(text))


def test_200_concurrent_streams(server: ServerThread) -> None:
    async def run() -> None:
        limits = httpx.Limits(max_connections=STREAMS)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as client:
            results = await asyncio.gather(*(_one(client, i) for i in range(STREAMS)))
            assert all(got == want for got, want in results)
            page = (
                await client.get("/v1/translations", params={"script_id": "load", "limit": 200})
            ).json()
            assert len(page["items"]) == STREAMS
            assert {item["status"] for item in page["items"]} == {"succeeded"}

    asyncio.run(run())
