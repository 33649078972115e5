"""Dependencies: the long-lived objects that the lifespan put on `app.state`.

Async on purpose: FastAPI runs plain functions in a thread pool, a hop per request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from dragoman.api.streaming import StreamRegistry
from dragoman.records.store import RecordStore
from dragoman.service import Translator


async def _translator(request: Request) -> Translator:
    translator: Translator = request.app.state.translator
    return translator


async def _store(request: Request) -> RecordStore:
    store: RecordStore = request.app.state.store
    return store


async def _registry(request: Request) -> StreamRegistry:
    registry: StreamRegistry = request.app.state.registry
    return registry


TranslatorDep = Annotated[Translator, Depends(_translator)]
StoreDep = Annotated[RecordStore, Depends(_store)]
RegistryDep = Annotated[StreamRegistry, Depends(_registry)]
