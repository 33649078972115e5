"""The LibreTranslate 1.x API under `/libretranslate/`, so that its clients (Mastodon, the
`libretranslatepy` package, browser add-ons) work by pointing them at this server.

Same service underneath: each translated `q` item is one translation record, filed under the
caller's key. Its own conventions on top: JSON or form bodies, the key in the `api_key` field
(or a Bearer header), and errors as `{"error": "<message>"}` with 400, 403, 429 or 500.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs

import orjson
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from dragoman.api.deps import runtime_of
from dragoman.errors import DragomanError
from dragoman.events import result
from dragoman.html_text import parse_html
from dragoman.keys import ApiKey
from dragoman.languages import display_name
from dragoman.service import Fields, TranslationRequest, Translator

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/libretranslate", tags=["LibreTranslate-compatible"])

# LibreTranslate's names for the fields, in error messages.
_FIELDS = Fields("q", "target", "source")

# How a contract error reads to a LibreTranslate client: its status family.
_STATUS_BY_CODE = {
    "invalid_request": 400,
    "unsupported_language": 400,
    "text_too_long": 400,
    "request_too_large": 400,
    "unauthorized": 403,
    "rate_limited": 429,
    "upstream_rate_limited": 429,
    "queue_full": 429,
}


class LibreError(BaseModel):
    """LibreTranslate's error shape."""

    error: str


# Every answer LibreTranslate's clients may get besides 200, as LibreTranslate gives them.
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": LibreError} for status in (400, 403, 429, 500)
}


class _Fail(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


def _from_dragoman(error: DragomanError) -> Response:
    status = _STATUS_BY_CODE.get(error.code, 500)
    headers = {k: v for k, v in error.headers.items() if k.lower() == "retry-after"}
    return JSONResponse({"error": error.message}, status_code=status, headers=headers)


async def _fields(request: Request) -> dict[str, Any]:
    """The request's fields from a JSON or form body (URL query parameters as a fallback)."""
    fields: dict[str, Any] = {k: v for k, v in request.query_params.items()}
    body = await request.body()
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type == "application/json" or media_type.endswith("+json"):
        try:
            data = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            raise _Fail(400, "Invalid request: the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise _Fail(400, "Invalid request: the body must be a JSON object")
        fields.update(data)
    elif body:
        try:
            form = parse_qs(body.decode(), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise _Fail(400, "Invalid request: the body is not UTF-8") from None
        for name, values in form.items():
            fields[name] = values[0] if len(values) == 1 else values
    return fields


def _text_field(fields: dict[str, Any], name: str) -> str:
    value = fields.get(name)
    if value is None or value == "":
        raise _Fail(400, f"Invalid request: missing {name} parameter")
    if not isinstance(value, str):
        raise _Fail(400, f"Invalid request: {name} must be a string")
    return value


async def _key(request: Request, fields: dict[str, Any]) -> ApiKey | None:
    """The caller's key when keys are on: `api_key` in the body, else a Bearer header."""
    runtime = runtime_of(request.app)
    if not runtime.keys_required:
        return None
    secret = fields.get("api_key")
    if not secret:
        authorization = request.headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        secret = token.strip() if scheme.lower() == "bearer" else ""
    key = await runtime.keys.authenticate(secret) if isinstance(secret, str) and secret else None
    if key is None:
        raise _Fail(403, "Invalid API key")
    return key


async def _guarded(work: Any) -> Response:
    try:
        result: Response = await work
    except _Fail as exc:
        return _error(exc.status, exc.message)
    except DragomanError as exc:
        return _from_dragoman(exc)
    except Exception:
        log.exception("libretranslate_failed")
        return _error(500, "Cannot translate text: the server failed")
    return result


@router.post(
    "/translate", summary="LibreTranslate: translate `q` (a string or a list)", responses=_ERRORS
)
async def translate(request: Request) -> Response:
    return await _guarded(_translate(request))


async def _translate(request: Request) -> Response:
    fields = await _fields(request)
    translator = runtime_of(request.app).translator
    if "q" not in fields:
        raise _Fail(400, "Invalid request: missing q parameter")
    q = fields["q"]
    many = isinstance(q, list)
    items = q if many else [q]
    if not all(isinstance(item, str) for item in items):
        raise _Fail(400, "Invalid request: q must be a string or a list of strings")
    source = fields.get("source") or "auto"
    target = _text_field(fields, "target")
    text_format = fields.get("format") or "text"
    if not isinstance(source, str) or text_format not in ("text", "html"):
        raise _Fail(400, "Invalid request: format must be text or html")
    html = text_format == "html"
    source_lang = None if source == "auto" else source
    # Languages checked before the key and any work: a bad one is 400 with nothing stored.
    translator.resolve_languages(target, source_lang, _FIELDS)
    key = await _key(request, fields)
    documents = [parse_html(item) if html else None for item in items]
    texts = [document.text() if document is not None else item for document, item in
             zip(documents, items, strict=True)]  # fmt: skip
    # One admission for the list, one record per item with text (an empty one comes back as
    # it was, unrecorded).
    wanted = [n for n, text in enumerate(texts) if text.strip()]
    requests = [
        TranslationRequest(
            text=texts[n], target_lang=target, source_lang=source_lang, key=key, fields=_FIELDS
        )
        for n in wanted
    ]
    translations = list(items)
    async with await translator.batch(requests) as batch:
        for i, n in enumerate(wanted):
            job = await batch.start(i)
            translation = (await result(job.events())).translation
            document = documents[n]
            translations[n] = document.render(translation) if document is not None else translation
    answer: dict[str, Any] = {"translatedText": translations if many else translations[0]}
    if source_lang is None:
        detected = [_detected(translator, text) for text in texts]
        answer["detectedLanguage"] = detected if many else detected[0]
    return JSONResponse(answer)


def _detected(translator: Translator, text: str) -> dict[str, Any]:
    language, probability = translator.detector.guess(text) if text.strip() else (None, 0.0)
    return {"confidence": round(probability * 100, 1), "language": language or "en"}


@router.post("/detect", summary="LibreTranslate: the language of `q`", responses=_ERRORS)
async def detect(request: Request) -> Response:
    return await _guarded(_detect(request))


async def _detect(request: Request) -> Response:
    fields = await _fields(request)
    q = _text_field(fields, "q")
    await _key(request, fields)
    translator = runtime_of(request.app).translator
    language, probability = await asyncio.to_thread(translator.detector.guess, q)
    return JSONResponse([{"confidence": round(probability * 100, 1), "language": language}])


@router.get("/languages", summary="LibreTranslate: the languages offered")
async def languages(request: Request) -> Response:
    translator = runtime_of(request.app).translator
    codes = list(translator.provider.languages.bases)
    return JSONResponse(
        [{"code": code, "name": display_name(code), "targets": codes} for code in codes]
    )


@router.get("/frontend/settings", summary="LibreTranslate: what its web page asks first")
async def frontend_settings(request: Request) -> Response:
    runtime = runtime_of(request.app)
    translator = runtime.translator
    required = runtime.keys_required
    codes = translator.provider.languages.bases
    target = "en" if "en" in codes else codes[0]
    return JSONResponse(
        {
            "charLimit": translator.settings.max_text_chars,
            "frontendTimeout": 500,
            "apiKeys": required,
            "keyRequired": required,
            "suggestions": False,
            "filesTranslation": False,
            "supportedFilesFormat": [],
            "language": {
                "source": {"code": "auto", "name": "Auto Detect"},
                "target": {"code": target, "name": display_name(target)},
            },
        }
    )
