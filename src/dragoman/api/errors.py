"""Every error leaves as `{"error": {"code", "message"}}`, never with a traceback."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from dragoman.errors import DragomanError, InvalidRequest, NotFound

log = structlog.get_logger(__name__)


def error_response(error: DragomanError, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(
        error.body(), status_code=error.status, headers={**error.headers, **(headers or {})}
    )


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    details = []
    for item in exc.errors():
        loc = [str(part) for part in item.get("loc", ()) if part != "body"]
        details.append({"field": ".".join(loc) or "body", "problem": str(item.get("msg", ""))})
    return details


def _validation_message(details: list[dict[str, Any]], exc: RequestValidationError) -> str:
    if any(item.get("type") == "json_invalid" for item in exc.errors()):
        return "The request body is not valid JSON."
    # A misspelt field also makes the real one "missing": the misspelling is the news.
    unknown = [
        detail
        for detail, item in zip(details, exc.errors(), strict=True)
        if item.get("type") == "extra_forbidden"
    ]
    first = (unknown or details or [{"field": "body", "problem": "invalid"}])[0]
    return f"{first['field']}: {first['problem']}"


def validation_error_response(exc: RequestValidationError) -> Response:
    details = _validation_details(exc)
    return error_response(InvalidRequest(_validation_message(details, exc), details=details))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DragomanError)
    async def _dragoman_error(_request: Request, exc: DragomanError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> Response:
        return validation_error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return error_response(NotFound("No such resource."))
        if exc.status_code == 400:  # a body that is not even text: malformed JSON to the contract
            return error_response(InvalidRequest("The request body is not valid JSON."))
        error = DragomanError(str(exc.detail) if exc.detail else None)
        error.status = exc.status_code
        error.code = "invalid_request" if 400 <= exc.status_code < 500 else "internal_error"
        return error_response(error, dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> Response:
        log.exception("unhandled_error", error=type(exc).__name__)
        return error_response(DragomanError())
