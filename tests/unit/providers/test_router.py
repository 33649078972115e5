"""The router over upstreams the test feeds item by item: which upstream a request goes to,
when it moves on, and what the stream's state says."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from dragoman.errors import DragomanError, UpstreamError, UpstreamTimeout
from dragoman.events import Queued
from dragoman.prompts import TranslationTask
from dragoman.providers.base import StreamState
from dragoman.providers.upstreams.breaker import Breaker
from dragoman.providers.upstreams.budget import RetryBudget
from dragoman.providers.upstreams.router import RoutedProvider, Upstream
from dragoman.records.record import Record
from tests.unit.fakes import END, FedProvider, FedStream


class Named(FedProvider):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


def _router(
    *pools: list[tuple[str, int]],
    deadline_s: float = 5.0,
    failures: int = 2,
    budget: RetryBudget | None = None,
) -> tuple[RoutedProvider, dict[str, Named]]:
    providers: dict[str, Named] = {}
    built = []
    for pool in pools:
        members = []
        for name, weight in pool:
            providers[name] = Named(name)
            members.append(
                Upstream(name, providers[name], f"pool-{len(built)}", weight, Breaker(failures, 60))
            )
        built.append(members)
    router = RoutedProvider(
        built,
        first_token_timeout_s=deadline_s,
        budget=budget or RetryBudget(1.0, 10),
        health_check_s=60,
    )
    return router, providers


def _record() -> Record:
    return Record(
        text="hello", target_lang="ko", source_lang="en", script_id=None, provider="a", model="m"
    )


def _task() -> TranslationTask:
    return TranslationTask(text="hello", target_lang="ko", source_lang="en")


async def _first(stream: AsyncIterator[Any]) -> Any:
    return await asyncio.wait_for(anext(stream), 10)


async def _opened(provider: Named) -> FedStream:
    """The upstream request the router opened next on `provider`."""
    await asyncio.wait_for(provider.started.wait(), 10)
    provider.started.clear()
    return provider.streams[-1]


async def _complete(router: RoutedProvider, providers: dict[str, Named], state: StreamState) -> str:
    """One request answered by whichever upstream it went to: that upstream's name."""
    stream = router.stream(_task(), state)
    reading = asyncio.ensure_future(_first(stream))
    while not reading.done():
        for provider in providers.values():
            for fed in provider.streams:
                if fed.waiting.is_set() and fed.items.empty():
                    fed.put(["x"], END)
        await asyncio.sleep(0)
    assert reading.result() == ["x"]
    async for _ in stream:
        pass
    assert state.upstream is not None
    return state.upstream


async def test_idle_upstreams_share_the_requests_by_weight() -> None:
    router, providers = _router([("a", 2), ("b", 1)])
    counts = {"a": 0, "b": 0}
    for _ in range(30):
        counts[await _complete(router, providers, StreamState())] += 1
    assert counts == {"a": 20, "b": 10}


async def test_the_least_busy_upstream_by_weight_is_chosen() -> None:
    router, providers = _router([("a", 2), ("b", 1)])
    open_streams = []
    chosen = []
    for _ in range(3):  # each one kept open, under way
        stream = router.stream(_task(), StreamState())
        reading = asyncio.ensure_future(_first(stream))
        waits = [asyncio.ensure_future(p.started.wait()) for p in providers.values()]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for wait in waits:
            wait.cancel()
        name = next(n for n, p in providers.items() if p.started.is_set())
        providers[name].started.clear()
        providers[name].streams[-1].put([name])
        assert await reading == [name]
        chosen.append(name)
        open_streams.append(stream)
    # Idle: a (by weight); then b (a has 1 of 2 under way, b 0 of 1); then a (1/2 < 1/1).
    assert chosen == ["a", "b", "a"]
    for stream in open_streams:
        await stream.aclose()
    assert [u.in_flight for u in router.upstreams] == [0, 0]


async def test_a_failure_before_the_first_piece_moves_on_and_is_recorded() -> None:
    router, providers = _router([("a", 1)], [("b", 1)])
    state = StreamState()
    stream = router.stream(_task(), state)
    reading = asyncio.ensure_future(_first(stream))
    (await _opened(providers["a"])).put(UpstreamError("The translation model failed."))
    (await _opened(providers["b"])).put(["hi"], END)
    assert await reading == ["hi"]
    assert providers["a"].streams[-1].closed.is_set()
    assert state.upstream == "b" and state.provider == "b"
    [attempt] = state.attempts
    assert attempt["upstream"] == "a"
    assert attempt["error"] == {
        "code": "upstream_error",
        "message": "The translation model failed.",
    }
    assert isinstance(attempt["ms"], int)
    await stream.aclose()


async def test_no_first_piece_in_time_moves_on() -> None:
    router, providers = _router([("a", 1)], [("b", 1)], deadline_s=0.05)
    state = StreamState()
    stream = router.stream(_task(), state)
    reading = asyncio.ensure_future(_first(stream))
    await _opened(providers["a"])  # it sends nothing: its attempt is given up
    (await _opened(providers["b"])).put(["hi"], END)
    assert await reading == ["hi"]
    assert providers["a"].streams[-1].closed.is_set()
    assert [a["error"]["code"] for a in state.attempts] == [UpstreamTimeout.code]
    await stream.aclose()


async def test_after_the_first_piece_a_failure_stays_in_the_stream() -> None:
    router, providers = _router([("a", 1)], [("b", 1)])
    state = StreamState()
    stream = router.stream(_task(), state)
    reading = asyncio.ensure_future(_first(stream))
    (await _opened(providers["a"])).put(["one"], UpstreamError("broke off"))
    assert await reading == ["one"]
    with pytest.raises(UpstreamError):
        await anext(stream)
    assert providers["b"].streams == []
    assert state.upstream == "a" and state.attempts == []


async def test_a_queue_position_commits_like_a_first_piece() -> None:
    router, providers = _router([("a", 1)], [("b", 1)], deadline_s=0.05)
    state = StreamState()
    stream = router.stream(_task(), state)
    reading = asyncio.ensure_future(_first(stream))
    (await _opened(providers["a"])).put(Queued(0), Queued(3))
    first = await reading
    assert first == Queued(0)
    assert await _first(stream) == Queued(3)  # shown to the client: the request is a's
    await asyncio.sleep(0.1)  # longer than the deadline: a's own pace from now on
    providers["a"].streams[-1].put(["late"], END)
    assert await _first(stream) == ["late"]
    assert providers["b"].streams == [] and state.upstream == "a"
    await stream.aclose()


async def test_avoided_upstreams_are_passed_over_while_another_can_take_it() -> None:
    router, providers = _router([("a", 1), ("b", 1)])
    for _ in range(4):
        assert await _complete(router, providers, StreamState(frozenset({"a"}))) == "b"
    # b is open: a takes it after all.
    for _ in range(2):
        router.upstreams[1].breaker.failed(False)
    assert await _complete(router, providers, StreamState(frozenset({"a"}))) == "a"


async def test_open_upstreams_get_nothing_and_all_open_is_a_fast_error() -> None:
    router, providers = _router([("a", 1)], [("b", 1)])
    for upstream in router.upstreams:
        upstream.breaker.failed(False)
        upstream.breaker.failed(False)
    state = StreamState()
    with pytest.raises(UpstreamError) as caught:
        await _first(router.stream(_task(), state))
    assert caught.value.message == (
        "No upstream can take the request now (a: open, b: open); try again in 60 s."
    )
    assert caught.value.headers == {"Retry-After": "60"}
    assert providers["a"].streams == [] and providers["b"].streams == []
    assert state.attempts == []
    assert [u["state"] for u in router.upstream_states() or []] == ["open", "open"]


async def test_the_retry_budget_ends_requests_after_their_first_attempt() -> None:
    router, providers = _router([("a", 1)], [("b", 1)], failures=1000, budget=RetryBudget(0.0, 0.1))
    outcomes = []
    for _ in range(3):
        state = StreamState()
        stream = router.stream(_task(), state)
        reading = asyncio.ensure_future(_first(stream))
        try:
            while not reading.done():
                for provider in providers.values():
                    for fed in provider.streams:
                        if fed.waiting.is_set() and fed.items.empty():
                            fed.put(UpstreamError(f"{provider.name} failed"))
                await asyncio.sleep(0)
            reading.result()
        except DragomanError as exc:
            outcomes.append((exc.message, len(state.attempts)))
    # The first request was retried (the budget's one), the others ended with a's error.
    assert outcomes == [("b failed", 2), ("a failed", 1), ("a failed", 1)]
    assert len(providers["a"].streams) == 3 and len(providers["b"].streams) == 1


async def test_a_request_ended_from_outside_leaves_no_verdict_and_frees_its_place() -> None:
    router, providers = _router([("a", 1)], [("b", 1)])
    state = StreamState()
    stream = router.stream(_task(), state)
    reading = asyncio.ensure_future(_first(stream))
    await _opened(providers["a"])
    reading.cancel()  # the job's deadline, or its client leaving
    with pytest.raises(asyncio.CancelledError):
        await reading
    await stream.aclose()
    upstream = router.upstreams[0]
    assert upstream.in_flight == 0 and upstream.breaker.state == "healthy"
    assert providers["a"].streams[-1].closed.is_set()
    record = _record()
    state.settle(record, UpstreamTimeout())
    assert [(a["upstream"], a["error"]["code"]) for a in record.attempts] == [
        ("a", "upstream_timeout")
    ]
    assert record.upstream is None


async def test_the_verdict_on_the_answering_upstream_comes_at_the_job_s_end() -> None:
    router, providers = _router([("a", 1)], [("b", 1)], failures=2)
    breaker = router.upstreams[0].breaker

    async def answered_by_a(end: object, error: DragomanError | None) -> None:
        state = StreamState()
        stream = router.stream(_task(), state)
        reading = asyncio.ensure_future(_first(stream))
        (await _opened(providers["a"])).put(["one"], end)
        assert await reading == ["one"]
        if end is END:
            with pytest.raises(StopAsyncIteration):
                await anext(stream)
        await stream.aclose()
        state.settle(_record(), error)  # as the job does: closed, then its record filled

    # Broke off after the first piece, twice: that is two failures in a row, and it opens.
    await answered_by_a(UpstreamError("broke off"), UpstreamError("broke off"))
    # A client that left mid-stream (no error, the stream not at its end): no verdict.
    await answered_by_a(Queued(0), None)
    assert breaker.state == "healthy"
    await answered_by_a(UpstreamError("broke off"), UpstreamError("broke off"))
    assert breaker.state == "open"


async def test_a_stream_that_ends_well_starts_the_count_again() -> None:
    router, providers = _router([("a", 1)], [("b", 1)], failures=2)
    breaker = router.upstreams[0].breaker
    breaker.failed(False)
    state = StreamState()
    assert await _complete(router, providers, state) == "a"
    state.settle(_record(), None)
    breaker.failed(False)  # one failure again, not two in a row
    assert breaker.state == "healthy"
