"""Dependencies: the long-lived objects that the lifespan put on `app.state`, and the request
readers of the translation endpoints.

Async on purpose: FastAPI runs plain functions in a thread pool, a hop per request.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter, ValidationError

from dragoman.api.schemas import ScriptId
from dragoman.errors import InvalidRequest
from dragoman.keys import ApiKey
from dragoman.records.store import ANYONE, Owner, RecordStore
from dragoman.scripts import Scripts
from dragoman.service import Translator


async def _translator(request: Request) -> Translator:
    translator: Translator = request.app.state.translator
    return translator


async def _store(request: Request) -> RecordStore:
    store: RecordStore = request.app.state.store
    return store


async def _scripts(request: Request) -> Scripts:
    scripts: Scripts = request.app.state.scripts
    return scripts


async def _owner(request: Request) -> Owner:
    key: ApiKey | None = request.state.api_key
    return ANYONE if key is None else key.id


TranslatorDep = Annotated[Translator, Depends(_translator)]
StoreDep = Annotated[RecordStore, Depends(_store)]
ScriptsDep = Annotated[Scripts, Depends(_scripts)]
# Whose records a request may see: its key's only, or all of them when keys are off.
OwnerDep = Annotated[Owner, Depends(_owner)]


ModelT = TypeVar("ModelT", bound=BaseModel)
_script_id: TypeAdapter[str] = TypeAdapter(ScriptId)


def _located(exc: ValidationError, *loc: str) -> RequestValidationError:
    # The shape FastAPI gives its own validation errors, for the same handler and messages.
    errors: list[Any] = [{**error, "loc": (*loc, *error["loc"])} for error in exc.errors()]
    return RequestValidationError(errors)


async def read_body(request: Request, model: type[ModelT]) -> ModelT:
    """The JSON body, parsed and validated in one pass.

    As FastAPI does, a body not declared as JSON is refused: a browser may send a cross-origin
    POST with any other content type (or none) without asking first, and that must not start
    a translation.
    """
    content_type = request.headers.get("content-type")
    if content_type is None or not _is_json(content_type):
        raise InvalidRequest("The request body must be JSON (Content-Type: application/json).")
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        raise _located(exc, "body") from None


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def validate_script_id_header(value: str) -> str:
    return validate_script_id(value, "header", "x-script-id")


def validate_script_id(value: str, *loc: str) -> str:
    try:
        return _script_id.validate_python(value)
    except ValidationError as exc:
        raise _located(exc, *loc) from None
