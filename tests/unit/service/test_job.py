"""The job on its own: the events it yields, and the record it leaves, for each way a
translation ends. A provider fed by the test stands for the upstream; the records are a real
SQLite file."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest

from dragoman.errors import ShuttingDown, Stopped, UpstreamError, UpstreamTimeout
from dragoman.events import Delta, Done, Event, Failed, Queued, Started, pieces, result
from dragoman.records.store import RecordStore
from dragoman.service import Job, TranslationRequest, Translator
from tests.unit.fakes import END, FedProvider, FedStream, open_store, translator


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RecordStore]:
    store = await open_store(tmp_path)
    yield store
    await store.aclose()


@pytest.fixture
def provider() -> FedProvider:
    return FedProvider()


@pytest.fixture
def service(store: RecordStore, provider: FedProvider) -> Translator:
    return translator(store, provider, first_token_timeout_s=30, idle_timeout_s=30)


async def _job(service: Translator, provider: FedProvider) -> tuple[Job, FedStream]:
    job = await service.submit(TranslationRequest(text="Good morning", target_lang="fr"))
    return job, provider.streams[-1]


async def _stored(store: RecordStore, job: Job) -> dict[str, Any]:
    await job.ended()
    record = await store.get(job.record.id)
    assert record is not None
    return record


async def _all(events: AsyncGenerator[Event, None]) -> list[Event]:
    async with aclosing(events) as stream:
        return [event async for event in stream]


async def test_pieces_then_the_record_as_the_final_event(
    service: Translator, provider: FedProvider, store: RecordStore
) -> None:
    job, upstream = await _job(service, provider)
    upstream.put(["Bon"], [" matin", "."], END)
    events = await _all(job.events())
    assert events[0] == Started(job.record.id, "fake", "fake-model")
    assert events[1:3] == [Delta(["Bon"]), Delta([" matin", "."])]
    assert isinstance(events[3], Done) and len(events) == 4
    record = await _stored(store, job)
    assert record["status"] == "succeeded"
    assert record["translation"] == "Bon matin."
    assert record["first_token_ms"] is not None and record["total_ms"] is not None
    assert upstream.closed.is_set()


async def test_the_record_is_written_once_the_first_event_is_out(
    service: Translator, provider: FedProvider, store: RecordStore
) -> None:
    job, upstream = await _job(service, provider)
    upstream.put(["Bon"])
    events = job.events()
    assert type(await anext(events)) is Started
    assert type(await anext(events)) is Delta
    assert await store.get(job.record.id) is None  # not before the first event is out
    upstream.put(END)
    assert type(await anext(events)) is Done
    await events.aclose()
    assert (await _stored(store, job))["status"] == "succeeded"


async def test_a_translation_with_no_text_still_starts_before_it_ends(
    service: Translator, provider: FedProvider
) -> None:
    job, upstream = await _job(service, provider)
    upstream.put(END)
    assert [type(e) for e in await _all(job.events())] == [Started, Done]


async def test_an_upstream_failure_before_the_first_piece_is_the_only_event(
    service: Translator, provider: FedProvider, store: RecordStore
) -> None:
    job, upstream = await _job(service, provider)
    upstream.put(UpstreamError("down"))
    events = await _all(job.events())
    assert len(events) == 1 and isinstance(events[0], Failed)
    assert events[0].error.code == "upstream_error" and events[0].recorded
    assert (await _stored(store, job))["status"] == "failed"


async def test_an_upstream_failure_after_a_piece_keeps_the_text_so_far(
    service: Translator, provider: FedProvider, store: RecordStore
) -> None:
    job, upstream = await _job(service, provider)
    upstream.put(["Bon"], UpstreamError("broke"))
    events = await _all(job.events())
    assert [type(e) for e in events] == [Started, Delta, Failed]
    record = await _stored(store, job)
    assert (record["status"], record["translation"]) == ("failed", "Bon")
    assert record["error"]["code"] == "upstream_error"


async def test_queue_updates_come_with_the_start_and_the_wait_does_not_count(
    store: RecordStore, provider: FedProvider
) -> None:
    service = translator(store, provider, first_token_timeout_s=0.2, idle_timeout_s=5)
    job, upstream = await _job(service, provider)
    upstream.put(Queued(2))
    events = job.events()
    assert type(await anext(events)) is Started
    assert await anext(events) == Queued(2)
    await asyncio.sleep(0.4)  # longer than the first-token timeout, waiting in the queue
    upstream.put(Queued(1), Queued(0), ["Bon"], END)
    rest = await _all(events)
    assert [type(e) for e in rest] == [Queued, Delta, Done]


async def test_no_first_piece_in_time_is_an_upstream_timeout(
    store: RecordStore, provider: FedProvider
) -> None:
    service = translator(store, provider, first_token_timeout_s=0.2, idle_timeout_s=5)
    job, upstream = await _job(service, provider)
    events = await _all(job.events())
    assert len(events) == 1 and isinstance(events[0], Failed)
    assert isinstance(events[0].error, UpstreamTimeout)
    assert upstream.closed.is_set()


async def test_abort_while_waiting_for_the_upstream_ends_at_once_with_its_error(
    service: Translator, provider: FedProvider, store: RecordStore
) -> None:
    job, upstream = await _job(service, provider)
    upstream.put(["Bon"])
    events = job.events()
    await anext(events)  # Started
    await anext(events)  # Delta: the job now waits for the upstream's next piece
    waiting = asyncio.ensure_future(anext(events))
    await upstream.waiting.wait()
    job.abort(ShuttingDown())
    final = await asyncio.wait_for(waiting, 5)
    assert isinstance(final, Failed) and final.error.code == "shutting_down"
    assert upstream.closed.is_set()
    record = await _stored(store, job)
    assert (record["status"], record["error"]["code"]) == ("failed", "shutting_down")
    assert record["translation"] == "Bon"


async def test_abort_while_an_event_is_out_loses_no_event(
    service: Translator, provider: FedProvider, store: RecordStore
) -> None:
    """The consumer holds the last event (a slow write, say): the job is not cancelled under
    it; its next event is the failure."""
    job, upstream = await _job(service, provider)
    upstream.put(["Bon"], [" matin"])
    events = job.events()
    await anext(events)  # Started
    assert await anext(events) == Delta(["Bon"])
    job.abort(Stopped())  # while the consumer has the event
    final = await anext(events)
    assert isinstance(final, Failed) and final.error.code == "cancelled"
    with pytest.raises(StopAsyncIteration):
        await anext(events)
    record = await _stored(store, job)
    assert (record["status"], record["translation"]) == ("cancelled", "Bon")


async def test_a_consumer_that_leaves_records_the_job_as_cancelled(
    service: Translator, provider: FedProvider, store: RecordStore
) -> None:
    job, upstream = await _job(service, provider)
    upstream.put(["Bon"])
    events = job.events()
    await anext(events)
    await anext(events)
    await events.aclose()
    assert upstream.closed.is_set()
    record = await _stored(store, job)
    assert (record["status"], record["translation"]) == ("cancelled", "Bon")


async def test_a_consumer_cancelled_while_the_job_waits_records_it_as_cancelled(
    service: Translator, provider: FedProvider, store: RecordStore
) -> None:
    job, upstream = await _job(service, provider)

    async def consume() -> None:
        async for _ in job.events():
            pass

    consumer = asyncio.create_task(consume())
    await upstream.waiting.wait()
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert upstream.closed.is_set()
    assert (await _stored(store, job))["status"] == "cancelled"


async def test_pieces_and_result_read_the_text_and_raise_the_failure(
    service: Translator, provider: FedProvider
) -> None:
    job, upstream = await _job(service, provider)
    upstream.put(["Bon", " matin"], END)
    assert [p async for p in pieces(job.events())] == ["Bon", " matin"]
    job, upstream = await _job(service, provider)
    upstream.put(["x"], END)
    assert (await result(job.events())).translation == "x"
    job, upstream = await _job(service, provider)
    upstream.put(UpstreamError("down"))
    with pytest.raises(UpstreamError):
        await result(job.events())
