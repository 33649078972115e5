"""Routes of resumable translations and cancel requests.

`POST /v1/translations` with `"resumable": true` is answered by `resumable_response` (called from
the translation route); the events and cancel endpoints are here.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from dragoman.api.deps import StoreDep
from dragoman.api.listen import LogResponse
from dragoman.api.schemas import CancelOut, ErrorOut, TranslationCreate
from dragoman.errors import InvalidRequest, NotFound, NotResumable, ResumeExpired, ShuttingDown
from dragoman.records.store import RecordStore
from dragoman.resumable.log import EventLog, is_resumable_id, resumable_id
from dragoman.resumable.run import ResumableRun
from dragoman.resumable.service import Resumption
from dragoman.service import Translator

router = APIRouter()
_SSE: dict[str, Any] = {"content": {"text/event-stream": {}}}


def resumable_response(state: Any, body: TranslationCreate) -> LogResponse:
    if not body.stream:
        raise InvalidRequest("resumable: only a streamed translation (stream: true) resumes.")
    translator: Translator = state.translator
    if state.registry.stopping:
        raise ShuttingDown()
    translator.check_text(body.text)
    target_tag, source_tag = translator.resolve_languages(body.target_lang, body.source_lang)
    job = translator.start(
        text=body.text,
        target_lang=target_tag,
        source_lang=source_tag,
        script_id=body.script_id,
        record_id=resumable_id(),
    )
    resumption: Resumption = state.resumption
    run = resumption.start_run(job)
    return _listener(resumption, run.id, run.log, after=-1, run=run, wait_first=True)


def _listener(
    resumption: Resumption,
    translation_id: str,
    events_log: EventLog,
    *,
    after: int,
    run: ResumableRun | None,
    wait_first: bool,
) -> LogResponse:
    settings = resumption.settings
    return LogResponse(
        translation_id,
        events_log,
        resumption.logs,
        after=after,
        run=run,
        wait_first=wait_first,
        keepalive_s=settings.keepalive_s,
        grace_s=settings.resume_grace_s,
        send_timeout_s=settings.send_timeout_s,
    )


@router.get(
    "/v1/translations/{translation_id}/events",
    summary="Follow a resumable translation: its events after `Last-Event-ID`, then live",
    responses={200: _SSE, **{s: {"model": ErrorOut} for s in (404, 409, 410, 422)}},
    response_class=Response,
)
async def translation_events(
    translation_id: str,
    request: Request,
    store: StoreDep,
    last_event_id: Annotated[int | None, Query(ge=-1, le=2**31)] = None,
) -> Any:
    after = -1 if last_event_id is None else last_event_id
    header = request.headers.get("last-event-id")
    if header is not None and header.strip():  # the header wins, as EventSource sends it
        try:
            after = int(header)
        except ValueError:
            raise InvalidRequest("Last-Event-ID: not an event id of this stream.") from None
        after = max(after, -1)
    resumption: Resumption = request.app.state.resumption
    events_log = await resumption.logs.open(translation_id) if len(translation_id) <= 64 else None
    if events_log is None:
        record = await store.get(translation_id) if len(translation_id) <= 64 else None
        if record is None:
            raise NotFound()
        if not is_resumable_id(translation_id):
            raise NotResumable()
        raise ResumeExpired()
    run = resumption.runs.get(translation_id)
    return _listener(resumption, translation_id, events_log, after=after, run=run, wait_first=False)


@router.post(
    "/v1/translations/{translation_id}/cancel",
    status_code=202,
    response_model=CancelOut,
    responses={404: {"model": ErrorOut}},
)
async def cancel_translation(translation_id: str, request: Request, store: StoreDep) -> Any:
    resumption: Resumption = request.app.state.resumption
    status = await resumption.cancel_local(translation_id)
    if status is None:
        record = await store.get(translation_id) if len(translation_id) <= 64 else None
        if record is None:
            raise NotFound()
        status = record["status"]
        if status == "streaming" and await resumption.publish_cancel(translation_id):
            # Another process runs it: its answer is the record once stored as stopped.
            status = await _status_once_finished(store, translation_id)
    return JSONResponse({"id": translation_id, "status": status}, status_code=202)


async def _status_once_finished(store: RecordStore, translation_id: str) -> str:
    status = "streaming"
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5.0):
            while True:
                record = await store.get(translation_id)
                status = record["status"] if record else status
                if status != "streaming":
                    break
                await asyncio.sleep(0.05)
    return status
