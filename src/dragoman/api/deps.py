"""Dependencies: the process's `Runtime` (built by the lifespan, kept on `app.state.runtime`)
and what routes use of it, typed; and the request readers of the translation endpoints.

Async on purpose: FastAPI runs plain functions in a thread pool, a hop per request.
"""

from __future__ import annotations

import difflib
import typing
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.types import ASGIApp

from dragoman.api.schemas import ScriptId
from dragoman.errors import InvalidRequest
from dragoman.keys import ApiKey
from dragoman.records.store import ANYONE, Owner, RecordStore
from dragoman.resumable.service import Resumption
from dragoman.runtime import Runtime
from dragoman.scripts.catalog import Scripts
from dragoman.service import Translator


def runtime_of(app: ASGIApp) -> Runtime:
    """The runtime of the application (also for middleware, which has no `Request`)."""
    runtime: Runtime = app.state.runtime  # type: ignore[attr-defined]
    return runtime


async def _runtime(request: Request) -> Runtime:
    return runtime_of(request.app)


async def _translator(request: Request) -> Translator:
    return runtime_of(request.app).translator


async def _store(request: Request) -> RecordStore:
    return runtime_of(request.app).store


async def _scripts(request: Request) -> Scripts:
    return runtime_of(request.app).scripts


async def _resumption(request: Request) -> Resumption:
    return runtime_of(request.app).resumption


async def _owner(request: Request) -> Owner:
    key: ApiKey | None = request.state.api_key
    return ANYONE if key is None else key.id


async def _key(request: Request) -> ApiKey | None:
    key: ApiKey | None = request.state.api_key
    return key


RuntimeDep = Annotated[Runtime, Depends(_runtime)]
TranslatorDep = Annotated[Translator, Depends(_translator)]
StoreDep = Annotated[RecordStore, Depends(_store)]
ScriptsDep = Annotated[Scripts, Depends(_scripts)]
ResumptionDep = Annotated[Resumption, Depends(_resumption)]
# Whose records a request may see: its key's only, or all of them when keys are off.
OwnerDep = Annotated[Owner, Depends(_owner)]
# The request's API key (None when keys are off).
KeyDep = Annotated[ApiKey | None, Depends(_key)]


ModelT = TypeVar("ModelT", bound=BaseModel)
_script_id: TypeAdapter[str] = TypeAdapter(ScriptId)


def _located(
    exc: ValidationError, *loc: str, model: type[BaseModel] | None = None
) -> RequestValidationError:
    # The shape FastAPI gives its own validation errors, for the same handler and messages.
    errors: list[Any] = []
    for error in exc.errors():
        if error["type"] == "extra_forbidden" and model is not None:
            error = {**error, "msg": _unknown_field(model, error["loc"])}
        errors.append({**error, "loc": (*loc, *error["loc"])})
    return RequestValidationError(errors)


def _unknown_field(model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """What to say of a field the body's model does not have: the field it most likely
    meant (`targetLang` -> `target_lang`), when one is close."""
    known = list(_model_at(model, loc[:-1]).model_fields)
    given = str(loc[-1])
    squashed = {name.replace("_", "").lower(): name for name in known}
    guess = squashed.get(given.replace("_", "").replace("-", "").lower())
    if guess is None:
        close = difflib.get_close_matches(given.lower(), known, n=1, cutoff=0.7)
        guess = close[0] if close else None
    if guess is not None:
        return f"unknown field; did you mean {guess}?"
    return f"unknown field; the fields are {', '.join(known)}"


def _model_at(model: type[BaseModel], path: tuple[int | str, ...]) -> type[BaseModel]:
    """The model that validates the object at `path` inside a body of `model`."""
    for part in path:
        if isinstance(part, int):  # an item of a list: the list's model is already found
            continue
        field = model.model_fields.get(part)
        inner = _inner_model(field.annotation) if field is not None else None
        if inner is None:
            break
        model = inner
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):  # list[X], X | None, Annotated[X, ...]
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


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
        raise _located(exc, "body", model=model) from None


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
