"""Routes of resumable translations and cancel requests.

`POST /v1/translations` with `"resumable": true` is answered by `resumable_response` (called from
the translation route); the events and cancel endpoints are here.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from dragoman.api.deps import OwnerDep, ResumptionDep, StoreDep, runtime_of
from dragoman.api.event_stream import EventStreamResponse, respond
from dragoman.api.schemas import CancelOut, ErrorOut
from dragoman.errors import InvalidRequest, NotFound, NotResumable, ResumeExpired
from dragoman.records.store import ANYONE, Owner, RecordStore
from dragoman.resumable.listener import LogListener
from dragoman.resumable.log import EventLog, is_resumable_id, resumable_id
from dragoman.resumable.run import ResumableRun
from dragoman.resumable.service import Resumption
from dragoman.runtime import Runtime
from dragoman.service import TranslationRequest
from dragoman.wire import V1Wire

router = APIRouter()
_SSE: dict[str, Any] = {"content": {"text/event-stream": {}}}


async def resumable_response(
    request: Request, stream: bool, translation: TranslationRequest
) -> EventStreamResponse:
    """A translation that runs on its own, its events logged for any listener to follow."""
    if not stream:
        raise InvalidRequest("resumable: only a streamed translation (stream: true) resumes.")
    runtime = runtime_of(request.app)
    job = await runtime.translator.submit(replace(translation, record_id=resumable_id()))
    run = runtime.resumption.start_run(job)
    return _listener(runtime, run.id, run.log, after=-1, run=run, wait_first=True)


def _listener(
    runtime: Runtime,
    translation_id: str,
    events_log: EventLog,
    *,
    after: int,
    run: ResumableRun | None,
    wait_first: bool,
) -> EventStreamResponse:
    settings = runtime.settings
    listener = LogListener(
        translation_id,
        events_log,
        runtime.resumption.logs,
        after=after,
        run=run,
        wait_first=wait_first,
        keepalive_s=settings.keepalive_s,
        grace_s=settings.resume_grace_s,
    )
    # The `POST` waits for the first event (a failure before it is a status); a `GET` listener
    # is answered at once, whatever it will follow.
    return respond(
        runtime,
        listener,
        V1Wire(),
        headers={"X-Translation-Id": translation_id},
        gate=wait_first,
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
    owner: OwnerDep,
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
    runtime = runtime_of(request.app)
    resumption = runtime.resumption
    if not await _visible(translation_id, owner, store, resumption):
        raise NotFound()
    events_log = await resumption.logs.open(translation_id) if len(translation_id) <= 64 else None
    if events_log is None:
        record = await store.get(translation_id) if len(translation_id) <= 64 else None
        if record is None:
            raise NotFound()
        if not is_resumable_id(translation_id):
            raise NotResumable()
        raise ResumeExpired()
    run = resumption.runs.get(translation_id)
    return _listener(runtime, translation_id, events_log, after=after, run=run, wait_first=False)


@router.post(
    "/v1/translations/{translation_id}/cancel",
    status_code=202,
    response_model=CancelOut,
    responses={404: {"model": ErrorOut}},
)
async def cancel_translation(
    translation_id: str, store: StoreDep, owner: OwnerDep, resumption: ResumptionDep
) -> Any:
    if not await _visible(translation_id, owner, store, resumption):
        raise NotFound()  # another key's translation is not there for this one
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


async def _visible(
    translation_id: str, owner: Owner, store: RecordStore, resumption: Resumption
) -> bool:
    """Whether the caller's key may see this translation (any, when keys are off)."""
    if owner is ANYONE:
        return True
    running = resumption.runs.get(translation_id) or resumption.registry.running.get(translation_id)
    if running is not None:
        return running.record.key_id == owner
    if len(translation_id) > 64:
        return False
    return await store.get(translation_id, owner=owner) is not None


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
