"""Live sessions: the speaker's routes (a key when keys are on), the listeners' (public: the
join code is the ticket), the listeners' page and its QR code."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated, Any

import segno
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from dragoman.api.deps import KeyDep, runtime_of
from dragoman.api.deps import read_body as _read_body
from dragoman.api.event_stream import respond
from dragoman.api.schemas import (
    ErrorOut,
    LiveCreate,
    LiveInfoOut,
    LiveSegmentIn,
    LiveSegmentOut,
    LiveSessionOut,
)
from dragoman.errors import InvalidRequest, NotFound
from dragoman.live.service import Live, public
from dragoman.live.store import Session
from dragoman.wire import V1Wire

router = APIRouter(tags=["Live sessions"])
_SSE: dict[str, Any] = {"content": {"text/event-stream": {}}}
_WEB = Path(__file__).resolve().parent.parent / "web"
_PAGE = _WEB / "live.html"


def _live(request: Request) -> Live:
    return runtime_of(request.app).live


def _address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _base_url(request: Request) -> str:
    """Where listeners reach this service: DRAGOMAN_PUBLIC_URL, else this request's address."""
    configured = runtime_of(request.app).settings.public_url
    return (configured or str(request.base_url)).rstrip("/")


def _json_body(model: type[Any]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": model.model_json_schema()}},
    }


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorOut} for status in statuses}


@router.post(
    "/v1/live",
    status_code=201,
    summary="Open a live session: a join code for listeners, segments from the speaker",
    response_model=LiveSessionOut,
    responses=_errors(401, 422, 503),
    openapi_extra={"requestBody": _json_body(LiveCreate)},
)
async def open_session(request: Request, key: KeyDep) -> Any:
    body = await _read_body(request, LiveCreate)
    session = await _live(request).open(
        key,
        script_id=body.script_id,
        source_lang=body.source_lang,
        target_langs=body.target_langs,
        title=body.title,
    )
    return JSONResponse(public(session), status_code=201)


@router.post(
    "/v1/live/{session_id}/segments",
    status_code=202,
    summary="The speaker's next segment (or, `final: false`, a guess of the one being spoken)",
    response_model=LiveSegmentOut,
    responses=_errors(401, 404, 409, 413, 422, 429, 503),
    openapi_extra={"requestBody": _json_body(LiveSegmentIn)},
)
async def add_segment(request: Request, session_id: str, key: KeyDep) -> Any:
    body = await _read_body(request, LiveSegmentIn)
    index, languages = await _live(request).add_segment(
        session_id, key, body.text, final=body.final
    )
    return JSONResponse({"segment_index": index, "languages": languages}, status_code=202)


@router.post(
    "/v1/live/{session_id}/close",
    summary="Close a live session: its listeners get `closed`",
    response_model=LiveSessionOut,
    responses=_errors(401, 404),
)
async def close_session(request: Request, session_id: str, key: KeyDep) -> Any:
    session = await _live(request).close(session_id, key)
    return JSONResponse(public(session))


async def _session(request: Request, join_code: str) -> Session:
    return await _live(request).find(join_code, _address(request))


@router.get(
    "/v1/live/{join_code}",
    summary="A live session as its listeners see it (no key: the join code is the ticket)",
    response_model=LiveInfoOut,
    responses=_errors(404, 429),
)
async def session_info(request: Request, join_code: str) -> Any:
    session = await _session(request, join_code)
    return JSONResponse(await _live(request).info(session))


@router.get(
    "/v1/live/{join_code}/events",
    summary="Follow a live session in one language: `segment`, `delta`, `revision`, `done`, "
    "`error`, `closed` (resume with `Last-Event-ID`)",
    response_class=Response,
    responses={200: _SSE, **_errors(404, 409, 422, 429)},
)
async def session_events(
    request: Request,
    join_code: str,
    lang: Annotated[str, Query(max_length=64)],
    last_event_id: Annotated[int | None, Query(ge=-1, le=2**31)] = None,
) -> Response:
    after = last_event_id
    header = request.headers.get("last-event-id")
    if header is not None and header.strip():  # the header wins, as EventSource sends it
        try:
            after = max(int(header), -1)
        except ValueError:
            raise InvalidRequest("Last-Event-ID: not an event id of this stream.") from None
    live = _live(request)
    session = await _session(request, join_code)
    listener = await live.listen(session, lang, after)
    return respond(runtime_of(request.app), listener, V1Wire(), gate=False)


@router.get("/present", include_in_schema=False)
async def present_page() -> Response:
    """The speaker's page: open a session, show its code, URL and QR code, send lines."""
    return FileResponse(_WEB / "present.html", media_type="text/html; charset=utf-8")


@router.get("/live/{join_code}", include_in_schema=False)
async def listener_page(request: Request, join_code: str) -> Response:
    try:
        await _session(request, join_code)
    except NotFound:
        return Response(_NOT_FOUND_PAGE, status_code=404, media_type="text/html; charset=utf-8")
    return FileResponse(_PAGE, media_type="text/html; charset=utf-8")


@router.get("/live/{join_code}/qr.svg", include_in_schema=False)
async def listener_qr(request: Request, join_code: str) -> Response:
    session = await _session(request, join_code)
    url = _base_url(request) + public(session)["viewer_url"]
    svg = io.BytesIO()
    segno.make(url, error="m").save(svg, kind="svg", scale=8, border=2, xmldecl=False)
    return Response(
        svg.getvalue(), media_type="image/svg+xml", headers={"Cache-Control": "max-age=3600"}
    )


_NOT_FOUND_PAGE = """<!doctype html>
<html lang="en"><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>No such session · dragoman</title>
<body style="font: 1.25rem/1.5 system-ui, sans-serif; margin: 2rem; max-width: 40rem">
<h1>No live session has this code</h1>
<p>Check the code on the speaker's screen, or scan its QR code again.</p>
</body></html>
"""
