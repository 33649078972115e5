"""`POST /v1/subtitles` over SSE: the run's events as JSON events with ids from 0.

The first event is awaited before the status is sent, so that a failure before it (a bad
language, the key's limit, the first cue's upstream failing before its first piece) is a real
HTTP status; later failures are one in-band `error` event. Starlette's `StreamingResponse`
cancels the body when the client disconnects, which closes the run and cancels the cue in
progress.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import structlog
from fastapi.responses import JSONResponse, Response, StreamingResponse

from dragoman.errors import DragomanError
from dragoman.sse import HEADERS, JsonEventEncoder
from dragoman.subtitles import SubtitleEvent, SubtitleRun

log = structlog.get_logger(__name__)


async def subtitle_response(run: SubtitleRun, *, stream: bool) -> Response:
    await run.admit()
    events = run.events()
    try:
        first = await anext(events)
    except BaseException:
        await events.aclose()
        raise
    if not stream:
        done: dict[str, Any] = first[1]
        try:
            async for name, data in events:
                if name == "done":
                    done = data
        finally:
            await events.aclose()
        return JSONResponse(done)
    return StreamingResponse(
        _sse(first, events), media_type="text/event-stream; charset=utf-8", headers=HEADERS
    )


async def _sse(
    first: SubtitleEvent, events: AsyncGenerator[SubtitleEvent, None]
) -> AsyncIterator[bytes]:
    encoder = JsonEventEncoder()
    try:
        yield encoder.event(*first)
        async for name, data in events:
            yield encoder.event(name, data)
    except DragomanError as exc:
        yield encoder.event("error", exc.body())
    except Exception:
        log.exception("subtitles_failed", script_id=first[1].get("script_id"))
        yield encoder.event("error", DragomanError().body())
    finally:
        await events.aclose()
