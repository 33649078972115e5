"""Reading dragoman's answers the way clients do, and writing its upstreams file."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from httpx_sse import ServerSentEvent, connect_sse


def pieces_directive(pieces: list[str]) -> str:
    return "[[pieces:" + json.dumps(pieces) + "]]"


def raw_events(
    client: httpx.Client, body: dict[str, Any], **kw: Any
) -> tuple[httpx.Response, list[ServerSentEvent]]:
    with connect_sse(client, "POST", "/translate", json=body, **kw) as source:
        return source.response, list(source.iter_sse())


def v1_events(
    client: httpx.Client, body: dict[str, Any]
) -> tuple[httpx.Response, list[ServerSentEvent]]:
    with connect_sse(client, "POST", "/v1/translations", json=body) as source:
        return source.response, list(source.iter_sse())


def raw_text(events: list[ServerSentEvent]) -> str:
    assert events[-1].data == "[DONE]"
    return "".join(e.data for e in events[:-1])


def v1_text(events: list[ServerSentEvent]) -> str:
    return "".join(json.loads(e.data)["text"] for e in events if e.event == "delta")


T = TypeVar("T")


def wait_until(condition: Callable[[], T], seconds: float = 30, interval: float = 0.05) -> T:
    """Poll `condition` until it returns something true, and return that; its last (false)
    value when the time runs out. The time limit only bounds a failing test."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def record_status(base_url: str, record_id: str) -> str | None:
    """The record's status, or None while it is not stored yet."""
    response = httpx.get(f"{base_url}/v1/translations/{record_id}")
    if response.status_code == 404:
        return None
    status: str = response.json()["status"]
    return status


def wait_until_answers(
    url: str, proc: subprocess.Popen[Any] | None = None, seconds: float = 120
) -> bool:
    """Poll `url` until it answers 200. False when `proc` died or the time ran out."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def wait_for_record(
    base_url: str, record_id: str, status: str, seconds: float = 30
) -> dict[str, Any]:
    """The record once it reaches `status` (or as it is when the time runs out). A record not
    stored yet (404: its first write is on its way) is waited for like any other status."""
    deadline = time.monotonic() + seconds
    while True:
        record: dict[str, Any] = httpx.get(f"{base_url}/v1/translations/{record_id}").json()
        if record.get("status") == status or time.monotonic() > deadline:
            return record
        time.sleep(0.05)


def run_sql(db_url: str, *statements: str) -> list[list[Any]]:
    """Run SQL on the test's database (SQLite or PostgreSQL) from outside the service; the rows
    each statement returned."""
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    async def run() -> list[list[Any]]:
        engine = create_async_engine(db_url)
        results: list[list[Any]] = []
        try:
            async with engine.begin() as conn:
                for statement in statements:
                    result = await conn.execute(text(statement))
                    results.append([tuple(row) for row in result] if result.returns_rows else [])
        finally:
            await engine.dispose()
        return results

    # In a thread of its own: the caller may be inside an event loop.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


def upstreams_file(tmp_path: Path, upstreams: list[dict[str, Any]], **settings: Any) -> str:
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    for upstream in upstreams:
        lines.append("[[upstream]]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in upstream.items()]
    path = tmp_path / f"upstreams-{time.monotonic_ns()}.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def openai(name: str, fake: Any, **keys: Any) -> dict[str, Any]:
    base_url = fake if isinstance(fake, str) else fake.base_url
    return {"name": name, "kind": "openai", "base_url": base_url, **keys}
