"""The translator on its own: what it refuses before anything is stored, in the caller's words,
and batches admitted once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dragoman.config import Settings
from dragoman.errors import (
    InvalidRequest,
    RateLimited,
    ShuttingDown,
    TextTooLong,
    UnsupportedLanguage,
)
from dragoman.events import result
from dragoman.keys import ApiKey
from dragoman.quotas import Quotas
from dragoman.records.store import RecordStore
from dragoman.registry import StreamRegistry
from dragoman.service import COMPAT_FIELDS, Fields, TranslationRequest
from tests.unit.fakes import END, FedProvider, open_store, translator


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RecordStore]:
    store = await open_store(tmp_path)
    yield store
    await store.aclose()


def _key(rpm: int) -> ApiKey:
    return ApiKey("key1", "test", rpm, None, None, "2026-01-01T00:00:00.000Z", None)


async def test_refusals_name_the_fields_as_the_caller_named_them(store: RecordStore) -> None:
    service = translator(store, FedProvider(), max_text_chars=20)
    with pytest.raises(InvalidRequest, match=r"^message: "):
        await service.submit(TranslationRequest(" ", "ko", fields=COMPAT_FIELDS))
    with pytest.raises(UnsupportedLanguage, match="lang"):
        await service.submit(TranslationRequest("hi", "xx-notalang", fields=COMPAT_FIELDS))
    cli = Fields("text", "--to", "--from", names=True)
    with pytest.raises(UnsupportedLanguage, match="--from"):
        await service.submit(TranslationRequest("hi", "ko", "zzz", fields=cli))
    with pytest.raises(TextTooLong, match=r"^text: 21 characters"):
        await service.submit(TranslationRequest("x" * 21, "ko"))
    # Language names only where the caller accepts them.
    job = await service.submit(TranslationRequest("hi", "Korean", fields=COMPAT_FIELDS))
    assert job.record.target_lang == "ko"
    with pytest.raises(UnsupportedLanguage):
        await service.submit(TranslationRequest("hi", "Korean"))


async def test_a_stopping_server_starts_nothing(store: RecordStore) -> None:
    registry = StreamRegistry()
    provider = FedProvider()
    service = translator(store, provider, registry=registry)
    registry.stopping = True
    with pytest.raises(ShuttingDown):
        await service.submit(TranslationRequest("hi", "ko"))
    with pytest.raises(ShuttingDown):
        await service.batch([TranslationRequest("hi", "ko")])
    assert provider.streams == []


async def test_a_batch_is_checked_whole_and_admitted_once(store: RecordStore) -> None:
    settings = Settings(_env_file=None, database_url="sqlite+aiosqlite://")  # type: ignore[call-arg]
    quotas = Quotas(settings)
    provider = FedProvider()
    service = translator(store, provider, quotas=quotas)
    key = _key(rpm=1)
    requests = [TranslationRequest(text, "fr", key=key) for text in ("one", "two", "three")]
    # One bad item: the whole batch is refused, nothing started.
    with pytest.raises(InvalidRequest, match="text"):
        await service.batch([*requests, TranslationRequest("", "fr", key=key)])
    assert provider.streams == []
    async with await service.batch(requests) as batch:
        for i in range(3):
            job = await batch.start(i)
            provider.streams[-1].put([f"t{i}"], END)
            assert (await result(job.events())).translation == f"t{i}"
    # The batch counted as one request of the key's one a minute.
    with pytest.raises(RateLimited):
        await service.submit(TranslationRequest("four", "fr", key=key))
    await quotas.aclose()
