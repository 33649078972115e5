"""Reading dragoman's answers the way clients do."""

from __future__ import annotations

import json
from typing import Any

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
