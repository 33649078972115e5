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
from dragoman.records.store import RecordStore
from dragoman.service import Translator


async def _translator(request: Request) -> Translator:
    translator: Translator = request.app.state.translator
    return translator


async def _store(request: Request) -> RecordStore:
    store: RecordStore = request.app.state.store
    return store


TranslatorDep = Annotated[Translator, Depends(_translator)]
StoreDep = Annotated[RecordStore, Depends(_store)]


ModelT = TypeVar("ModelT", bound=BaseModel)
_script_id: TypeAdapter[str] = TypeAdapter(ScriptId)


def _located(exc: ValidationError, *loc: str) -> RequestValidationError:
    # The shape FastAPI gives its own validation errors, for the same handler and messages.
    errors: list[Any] = [{**error, "loc": (*loc, *error["loc"])} for error in exc.errors()]
    return RequestValidationError(errors)


async def read_body(request: Request, model: type[ModelT]) -> ModelT:
    """The JSON body, parsed and validated in one pass (whatever its content type says)."""
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        raise _located(exc, "body") from None


def validate_script_id_header(value: str) -> str:
    try:
        return _script_id.validate_python(value)
    except ValidationError as exc:
        raise _located(exc, "header", "x-script-id") from None
