"""Routes: parse, validate, hand the job to a streaming response. No work happens here."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel

from dragoman import metrics
from dragoman.api.deps import (
    OwnerDep,
    RuntimeDep,
    ScriptsDep,
    StoreDep,
    TranslatorDep,
    read_body,
    runtime_of,
    validate_script_id,
    validate_script_id_header,
)
from dragoman.api.errors import error_response
from dragoman.api.event_stream import job_response, respond
from dragoman.api.require_key import bearer_token
from dragoman.api.resume_routes import resumable_response
from dragoman.api.schemas import (
    SCRIPT_ID_PATTERN,
    ErrorOut,
    GlossaryIn,
    GlossaryOut,
    LanguagesOut,
    ScriptOut,
    ScriptPage,
    SegmentCreate,
    SubtitlesCreate,
    SubtitlesDone,
    TranslateCompatIn,
    TranslationCreate,
    TranslationPage,
    TranslationPublic,
)
from dragoman.errors import NotFound, NotReady, Unauthorized
from dragoman.scripts.catalog import EXPORT_MEDIA_TYPES
from dragoman.service import COMPAT_FIELDS, TranslationRequest
from dragoman.subtitles import SubtitleRun, SubtitlesRequest
from dragoman.wire import CompatWire, JsonAnswer, V1Wire, Wire

router = APIRouter()

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut} for status in (413, 422, 429, 502, 503, 504)
}
_SSE: dict[str, Any] = {"content": {"text/event-stream": {}}}
_SCRIPT_ID_HEADER: dict[str, Any] = {
    "name": "x-script-id",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": SCRIPT_ID_PATTERN, "maxLength": 128},
}


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": model.model_json_schema()}},
    }


def _wire(stream: bool) -> Wire:
    return V1Wire() if stream else JsonAnswer()


# The two translation endpoints read their request themselves: FastAPI's parameter and
# dependency machinery cost about 0.15 ms per request in front of the first token. The bodies are
# still validated by the same pydantic models (one `model_validate_json` call), errors still go
# through the RequestValidationError handler, and the schemas are still in /openapi.json.


@router.post(
    "/translate",
    summary="Translate (compatible with the original API): raw text pieces over SSE",
    responses={200: _SSE, **_ERRORS},
    response_class=Response,
    openapi_extra={
        "parameters": [_SCRIPT_ID_HEADER],
        "requestBody": _json_body(TranslateCompatIn),
    },
)
async def translate_compat(request: Request) -> Any:
    body = await read_body(request, TranslateCompatIn)
    script_id = request.headers.get("x-script-id")
    if script_id is not None:
        script_id = validate_script_id_header(script_id)
    return await job_response(
        runtime_of(request.app),
        TranslationRequest(
            text=body.message,
            target_lang=body.lang,
            source_lang=body.source_lang,
            script_id=script_id,
            key=request.state.api_key,
            fields=COMPAT_FIELDS,
        ),
        CompatWire(),
    )


@router.post(
    "/v1/translations",
    summary="Translate: JSON events over SSE (`stream: true`) or the finished record",
    responses={200: {"model": TranslationPublic, **_SSE}, **_ERRORS},
    response_class=Response,
    openapi_extra={"requestBody": _json_body(TranslationCreate)},
)
async def create_translation(request: Request) -> Any:
    body = await read_body(request, TranslationCreate)
    translation = TranslationRequest(
        text=body.text,
        target_lang=body.target_lang,
        source_lang=body.source_lang,
        script_id=body.script_id,
        key=request.state.api_key,
    )
    if body.resumable:
        return await resumable_response(request, body.stream, translation)
    return await job_response(runtime_of(request.app), translation, _wire(body.stream))


@router.post(
    "/v1/scripts/{script_id}/segments",
    summary="Translate a script's next segment, with its previous segments and glossary",
    responses={200: {"model": TranslationPublic, **_SSE}, **_ERRORS},
    response_class=Response,
    openapi_extra={"requestBody": _json_body(SegmentCreate)},
)
async def create_segment(request: Request, script_id: str) -> Any:
    script_id = validate_script_id(script_id, "path", "script_id")
    body = await read_body(request, SegmentCreate)
    translation = TranslationRequest(
        text=body.text,
        target_lang=body.target_lang,
        source_lang=body.source_lang,
        script_id=script_id,
        key=request.state.api_key,
        segment=True,
    )
    if body.resumable:
        return await resumable_response(request, body.stream, translation)
    return await job_response(runtime_of(request.app), translation, _wire(body.stream))


ScriptIdPath = Annotated[str, PathParam(pattern=SCRIPT_ID_PATTERN, max_length=128)]


@router.put(
    "/v1/scripts/{script_id}/glossary",
    response_model=GlossaryOut,
    responses={422: {"model": ErrorOut}, 503: {"model": ErrorOut}},
    openapi_extra={"requestBody": _json_body(GlossaryIn)},
)
async def put_glossary(
    request: Request, script_id: ScriptIdPath, scripts: ScriptsDep, owner: OwnerDep
) -> Any:
    body = await read_body(request, GlossaryIn)
    entries = [entry.model_dump() for entry in body.entries]
    return JSONResponse(await scripts.put_glossary(script_id, owner, entries))


@router.get(
    "/v1/scripts/{script_id}/glossary",
    response_model=GlossaryOut,
    responses={422: {"model": ErrorOut}, 503: {"model": ErrorOut}},
)
async def get_glossary(script_id: ScriptIdPath, scripts: ScriptsDep, owner: OwnerDep) -> Any:
    return JSONResponse(await scripts.glossary(script_id, owner))


@router.get(
    "/v1/scripts",
    summary="The caller's scripts, the last active first",
    response_model=ScriptPage,
    responses={422: {"model": ErrorOut}, 503: {"model": ErrorOut}},
)
async def list_scripts(
    scripts: ScriptsDep,
    owner: OwnerDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Any:
    items, next_cursor = await scripts.list(owner, limit, cursor)
    return JSONResponse({"items": items, "next_cursor": next_cursor})


@router.get(
    "/v1/scripts/{script_id}",
    response_model=ScriptOut,
    responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}, 503: {"model": ErrorOut}},
)
async def get_script(script_id: ScriptIdPath, scripts: ScriptsDep, owner: OwnerDep) -> Any:
    return JSONResponse(await scripts.info(script_id, owner))


@router.get(
    "/v1/scripts/{script_id}/export",
    summary="The succeeded segments in order: plain text, JSON lines (records), SRT or WebVTT",
    response_class=Response,
    responses={
        200: {"content": {media: {} for media in EXPORT_MEDIA_TYPES.values()}},
        404: {"model": ErrorOut},
        422: {"model": ErrorOut},
        503: {"model": ErrorOut},
    },
)
async def export_script(
    script_id: ScriptIdPath,
    scripts: ScriptsDep,
    owner: OwnerDep,
    target_lang: Annotated[str, Query(max_length=64)],
    format: Annotated[Literal["txt", "jsonl", "srt", "vtt"], Query()] = "txt",
) -> Response:
    content = await scripts.export(script_id, owner, target_lang, format)
    return Response(content, media_type=EXPORT_MEDIA_TYPES[format])


@router.post(
    "/v1/subtitles",
    summary="Translate an SRT or WebVTT file cue by cue as a script (`stream: true`: SSE)",
    responses={200: {"model": SubtitlesDone, **_SSE}, **_ERRORS},
    response_class=Response,
    openapi_extra={"requestBody": _json_body(SubtitlesCreate)},
)
async def translate_subtitles(request: Request) -> Any:
    body = await read_body(request, SubtitlesCreate)
    runtime = runtime_of(request.app)
    run = SubtitleRun(
        runtime.translator,
        SubtitlesRequest(
            content=body.content,
            target_lang=body.target_lang,
            source_lang=body.source_lang,
            script_id=body.script_id,
            format=body.format,
            key=request.state.api_key,
        ),
    )
    await run.admit()
    return respond(runtime, run, _wire(body.stream))


@router.get(
    "/v1/translations/{translation_id}",
    response_model=TranslationPublic,
    responses={404: {"model": ErrorOut}},
)
async def get_translation(translation_id: str, store: StoreDep, owner: OwnerDep) -> Any:
    record = await store.get(translation_id, owner=owner) if len(translation_id) <= 64 else None
    if record is None:
        raise NotFound()
    return JSONResponse(record)


@router.get(
    "/v1/translations",
    response_model=TranslationPage,
    responses={422: {"model": ErrorOut}},
)
async def list_translations(
    store: StoreDep,
    owner: OwnerDep,
    script_id: Annotated[str | None, Query(pattern=SCRIPT_ID_PATTERN, max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Any:
    items, next_cursor = await store.list(
        script_id=script_id, limit=limit, cursor=cursor, owner=owner
    )
    return JSONResponse({"items": items, "next_cursor": next_cursor})


@router.get("/v1/languages", response_model=LanguagesOut)
async def list_languages(translator: TranslatorDep) -> Any:
    return {"languages": translator.provider.languages.listing()}


_PLAYGROUND = Path(__file__).resolve().parent.parent / "web" / "index.html"


@router.get("/", include_in_schema=False)
async def playground() -> Response:
    return FileResponse(_PLAYGROUND, media_type="text/html; charset=utf-8")


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request, runtime: RuntimeDep) -> Response:
    settings = runtime.settings
    if settings.metrics_token is not None:
        expected = settings.metrics_token.get_secret_value().encode()
        given = (bearer_token(request.scope) or "").encode()
        if not hmac.compare_digest(given, expected):
            raise Unauthorized("/metrics needs Authorization: Bearer <DRAGOMAN_METRICS_TOKEN>.")
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"model": ErrorOut}})
async def readyz(runtime: RuntimeDep, translator: TranslatorDep, store: StoreDep) -> Any:
    if runtime.registry.stopping:
        return error_response(NotReady("The server is shutting down."))
    if not translator.provider.is_ready():
        reason = translator.provider.not_ready_reason()
        return error_response(NotReady(reason or "The translation model is not ready yet."))
    if not await translator.provider.check_ready():
        return error_response(NotReady("The translation model cannot be reached."))
    if not await store.ping():
        return error_response(NotReady("The database cannot be reached."))
    ready: dict[str, Any] = {
        "status": "ready",
        "provider": translator.provider.name,
        "model": translator.provider.model,
    }
    upstream_states = getattr(translator.provider, "upstream_states", None)
    states = upstream_states() if upstream_states is not None else None
    if states is not None:  # several upstreams: each one's breaker state
        ready["upstreams"] = states
    engine_status = getattr(translator.provider, "engine_status", None)
    if engine_status is not None:  # the embedded engine's process: pid and restarts so far
        status = engine_status()
        ready["engine"] = {"pid": status.get("pid"), "restarts": status.get("restarts", 0)}
    return ready
