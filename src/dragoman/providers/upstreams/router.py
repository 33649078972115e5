"""`RoutedProvider`: one provider over several upstreams (or one).

**Pools.** Upstreams are grouped in pools, tried in the order they first appear in the
configuration. A request goes to the first pool with an upstream that can take it: not tried
yet for this request, its breaker letting requests through, offering the request's languages.
Within the pool, the least busy such upstream (requests in flight per unit of weight) is
chosen; a tie (say, every upstream idle) goes by smooth weighted round robin, so that shares
follow the weights at any load. An upstream whose breaker is half-open is chosen first, so
that its one trial request comes soon.

**Failover before the first piece.** An attempt that fails before its first piece (an error
answer, a refusal: 5xx, 429, 401, 403, 404, a connection that fails or ends early, an error
inside the stream, a full local queue) or sends no first piece within `first_token_timeout_s`
is closed and the request moves on to the next upstream, before anything has reached the
client. An upstream's 400, 413 or 422 is the request's own fault: it ends the request at once
(the same request would be refused anywhere) and is no failure of the upstream. Once the first
piece has come the request belongs to that upstream: a later failure is the stream's in-band
error, as without upstreams (the caller may ask again, passing over that upstream:
`StreamState.avoid`). A local upstream's queue position (`Queued` with a position) reaches the
client at once, so it commits the request like a first piece.

**Deadlines.** `first_token_timeout_s` bounds each attempt; `DRAGOMAN_FIRST_TOKEN_TIMEOUT_S`
(the job's) still bounds the whole wait for the first piece, all attempts together. With the
defaults (10 s per attempt, 30 s in all) a request can spend two full attempts hanging and
still get its answer from a third upstream; an attempt cut by the job's deadline is recorded
with the job's error (`upstream_timeout`).

**Retry budget.** Every attempt after a request's first is a retry, taken from the budget
(`budget.py`); when it is spent, the request ends with its last attempt's error.

**Health.** With more than one upstream every upstream's readiness probe (its model list, the
engine's state) runs every `health_check_s` in the background (not on every `/readyz`, which
reads the last answers) and feeds its breaker (`breaker.py`). With a single upstream there is
nowhere else to send a request: its breaker never opens, no deadline of its own applies, and
`/readyz` probes it as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import openai
import structlog

from dragoman import metrics
from dragoman.config import Settings
from dragoman.errors import (
    DragomanError,
    QueueFull,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
)
from dragoman.events import Queued
from dragoman.languages import LanguageCatalog, base_language
from dragoman.prompts import TranslationTask
from dragoman.providers.base import Provider, StreamState
from dragoman.providers.upstreams.breaker import Breaker
from dragoman.providers.upstreams.budget import RetryBudget
from dragoman.providers.upstreams.config import UpstreamsConfig, UpstreamSpec

log = structlog.get_logger(__name__)

# An upstream's status that says the request itself is at fault: not retried, not counted.
_REQUEST_FAULTS = frozenset({400, 413, 422})


class Upstream:
    """One upstream: its provider, breaker, weight and load."""

    __slots__ = (
        "_current",
        "answered",
        "bases",
        "breaker",
        "in_flight",
        "name",
        "pool",
        "provider",
        "ready",
        "weight",
    )

    def __init__(
        self, name: str, provider: Provider, pool: str, weight: int, breaker: Breaker
    ) -> None:
        self.name = name
        self.provider = provider
        self.pool = pool
        self.weight = weight
        self.breaker = breaker
        self.bases = frozenset(provider.languages.bases)
        self.in_flight = 0
        self._current = 0  # smooth weighted round robin
        self.answered = metrics.upstream_answered(name)
        # Its provider's readiness at the last probe (a local engine still loading, a server
        # whose model is not discovered yet): passed over while another is ready.
        self.ready = provider.is_ready()

    def offers(self, target: str, source: str | None) -> bool:
        return target in self.bases and (source is None or source in self.bases)


class RoutedProvider:
    """The `Provider` protocol over pools of upstreams (see the module's description)."""

    def __init__(
        self,
        pools: list[list[Upstream]],
        *,
        first_token_timeout_s: float | None,
        budget: RetryBudget,
        health_check_s: float,
        job_first_token_s: float | None = None,
    ) -> None:
        self._pools = pools
        self.upstreams = [upstream for pool in pools for upstream in pool]
        first = self.upstreams[0]
        self.name = first.provider.name
        self.needs_source_lang = any(u.provider.needs_source_lang for u in self.upstreams)
        self.languages = LanguageCatalog(
            base for u in self.upstreams for base in u.provider.languages.bases
        )
        # Languages need checking per request only when the upstreams differ in them.
        self._uniform = len({u.bases for u in self.upstreams}) == 1
        self._single = len(self.upstreams) == 1
        self._deadline_s = None if self._single else first_token_timeout_s
        self._budget = budget
        self._health_s = health_check_s
        self._health: asyncio.Task[None] | None = None
        # The embedded engine's status for /readyz, when one upstream is local.
        self.engine_status: Callable[[], dict[str, object]] | None = next(
            (
                getattr(u.provider, "engine_status", None)
                for u in self.upstreams
                if getattr(u.provider, "engine_status", None) is not None
            ),
            None,
        )
        if (
            not self._single
            and first_token_timeout_s is not None
            and job_first_token_s is not None
            and first_token_timeout_s >= job_first_token_s
        ):
            log.warning(
                "upstream_deadline_not_below_job_deadline",
                first_token_timeout_s=first_token_timeout_s,
                job_first_token_timeout_s=job_first_token_s,
                effect="a hanging upstream ends the request instead of passing it on",
            )

    # Building.

    @classmethod
    def single(cls, provider: Provider) -> RoutedProvider:
        """Today's one provider (`DRAGOMAN_PROVIDER`), as the only upstream, named after it."""
        upstream = Upstream(
            provider.name, provider, provider.name, 1, Breaker(1, 0.0, enabled=False)
        )
        return cls(
            [[upstream]],
            first_token_timeout_s=None,
            budget=RetryBudget(0.0, 0.0),
            health_check_s=0.0,
        )

    @classmethod
    def from_config(
        cls,
        config: UpstreamsConfig,
        settings: Settings,
        make: Callable[[UpstreamSpec, Settings], Provider] | None = None,
    ) -> RoutedProvider:
        make = make or provider_for
        several = len(config.upstreams) > 1
        pools = []
        for pool_name, specs in config.pools():
            pool = []
            for spec in specs:

                def on_change(is_open: bool, name: str = spec.name) -> None:
                    metrics.upstream_breaker(name, is_open)
                    log.warning("upstream_breaker", upstream=name, open=is_open)

                breaker = Breaker(
                    config.breaker_failures,
                    config.breaker_cooldown_s,
                    enabled=several,
                    on_change=on_change,
                )
                metrics.upstream_breaker(spec.name, False)
                pool.append(
                    Upstream(spec.name, make(spec, settings), pool_name, spec.weight, breaker)
                )
            pools.append(pool)
        return cls(
            pools,
            first_token_timeout_s=config.first_token_timeout_s,
            budget=RetryBudget(config.retry_budget, config.retry_budget_min_per_s),
            health_check_s=config.health_check_s,
            job_first_token_s=settings.first_token_timeout_s,
        )

    # The Provider protocol.

    @property
    def model(self) -> str:
        return self.upstreams[0].provider.model

    async def start(self) -> None:
        if self._single:
            await self.upstreams[0].provider.start()
            return
        if self._health is None:
            self._health = asyncio.create_task(self._health_loop(), name="dragoman-upstreams")
        # Each upstream is probed once started: a quick one is used while a slow one (an
        # engine loading its model) gets ready.
        await asyncio.gather(*(self._start_one(u) for u in self.upstreams))

    async def _start_one(self, upstream: Upstream) -> None:
        try:
            await upstream.provider.start()
        except Exception as exc:
            log.error("upstream_start_failed", upstream=upstream.name, error=type(exc).__name__)
        await self._probe(upstream)

    def is_ready(self) -> bool:
        return any(u.provider.is_ready() and u.breaker.state != "open" for u in self.upstreams)

    def not_ready_reason(self) -> str | None:
        if self.is_ready():
            return None
        if self._single:
            return self.upstreams[0].provider.not_ready_reason()
        reasons = []
        for u in self.upstreams:
            reason = (
                "its breaker is open"
                if u.breaker.state == "open"
                else (u.provider.not_ready_reason() or "not ready")
            )
            reasons.append(f"{u.name}: {reason.rstrip('.')}")
        return "No upstream is ready (" + "; ".join(reasons) + ")."

    async def check_ready(self) -> bool:
        """With one upstream, a fresh probe of it. With several, their last probes (every
        `health_check_s`): a load balancer polling /readyz must not multiply the requests to
        every upstream (a hosted API's among them). Ready when one that can take requests
        answered."""
        if self._single:
            return await self.upstreams[0].provider.check_ready()
        return any(u.ready and u.breaker.state != "open" for u in self.upstreams)

    def upstream_states(self) -> list[dict[str, object]] | None:
        """For /readyz, when there is more than one upstream: each one's breaker state, and
        whether it was ready at its last probe."""
        if self._single:
            return None
        return [
            {"name": u.name, "state": u.breaker.state, "ready": u.ready} for u in self.upstreams
        ]

    async def aclose(self) -> None:
        if self._health is not None:
            self._health.cancel()
            await asyncio.gather(self._health, return_exceptions=True)
        await asyncio.gather(*(u.provider.aclose() for u in self.upstreams), return_exceptions=True)

    # Health.

    async def _probe(self, upstream: Upstream) -> bool:
        """A readiness probe; its verdict feeds the breaker, unless the upstream is still
        getting ready (an engine loading its model is not a failing upstream)."""
        try:
            ok = await upstream.provider.check_ready()
        except Exception as exc:
            log.warning("upstream_probe_failed", upstream=upstream.name, error=type(exc).__name__)
            ok = False
        upstream.ready = ok
        if not upstream.provider.is_ready():
            return False
        if not ok and upstream.breaker.state == "healthy":
            log.warning("upstream_unhealthy", upstream=upstream.name)
        upstream.breaker.health(ok)
        return ok

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self._health_s)
            await asyncio.gather(*(self._probe(u) for u in self.upstreams))

    # Choosing.

    def _pick(
        self, target: str | None, source: str | None, tried: set[str], avoid: frozenset[str]
    ) -> Upstream | None:
        """The upstream for the next attempt. Passed over while another can take it: the ones
        to avoid, then the ones not ready (they are waited for when nothing else is left)."""
        passes = [(tried | avoid, True), (tried, True), (tried, False)]
        for excluded, ready_only in passes if avoid else passes[1:]:
            for pool in self._pools:
                candidates = [
                    u
                    for u in pool
                    if u.name not in excluded
                    and (u.ready or not ready_only)
                    and u.breaker.allows()
                    and (target is None or u.offers(target, source))
                ]
                if candidates:
                    return _least_busy(candidates)
        return None

    def _nothing_to_try(self, target: str | None, source: str | None) -> UpstreamError:
        """No upstream may take the request now (every one open, or busy with its trial)."""
        waits = [
            u.breaker.reopens_in()
            for u in self.upstreams
            if target is None or u.offers(target, source)
        ]
        retry_after = max(1, round(min(waits))) if waits else 30
        states = ", ".join(f"{u.name}: {u.breaker.state}" for u in self.upstreams)
        return UpstreamError(
            f"No upstream can take the request now ({states}); try again in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )

    # Streaming.

    def stream(
        self, task: TranslationTask, state: StreamState
    ) -> AsyncIterator[list[str] | Queued]:
        return _RoutedStream(self, task, state)


class _RoutedStream:
    """One request's stream: attempts, one after the other, until an upstream sends its first
    piece; from then on that upstream's own stream, handed through as it is (`__anext__` gives
    its awaitable: no layer of this class's per piece). The verdict on the answering upstream
    comes at the job's end (`StreamState.settle` calls `_ended`); `aclose()` closes the attempt
    and gives its place back."""

    __slots__ = (
        "_committed",
        "_finished",
        "_last_error",
        "_pieces",
        "_router",
        "_state",
        "_target",
        "_task",
        "_trial",
        "_tried",
        "_upstream",
    )

    def __init__(self, router: RoutedProvider, task: TranslationTask, state: StreamState) -> None:
        self._router = router
        self._task = task
        self._state = state
        self._target: tuple[str | None, str | None] = (None, None)
        if not router._uniform:
            source = base_language(task.source_lang) if task.source_lang else None
            self._target = (base_language(task.target_lang), source)
        self._tried: set[str] = set()
        self._last_error: DragomanError | None = None
        self._upstream: Upstream | None = None  # the attempt in progress, or the one answering
        self._pieces: AsyncIterator[list[str] | Queued] | None = None
        self._trial = False
        self._committed = False
        # Whether the answering upstream's stream had ended by itself when it was closed.
        self._finished: bool | None = None
        router._budget.request()

    def __aiter__(self) -> _RoutedStream:
        return self

    def __anext__(self) -> Awaitable[list[str] | Queued]:
        if self._committed:
            assert self._pieces is not None
            return self._pieces.__anext__()
        return self._before_the_answer()

    async def _before_the_answer(self) -> list[str] | Queued:
        """The next item while no upstream has answered: attempts until one does."""
        router = self._router
        while True:
            if self._pieces is None:
                self._begin()
            upstream, pieces = self._upstream, self._pieces
            assert upstream is not None and pieces is not None
            error: DragomanError | None = None
            item: list[str] | Queued | None = None
            try:
                if router._deadline_s is None:
                    item = await anext(pieces)
                else:
                    async with asyncio.timeout(router._deadline_s):
                        item = await anext(pieces)
            except StopAsyncIteration:
                item = None  # it ended without any text: that is its answer
            except TimeoutError:
                error = UpstreamTimeout(
                    f"The translation model sent nothing within {router._deadline_s:g} s."
                )
            except DragomanError as exc:
                error = exc
            if error is not None:
                await self._failed(upstream, error)
                continue
            if type(item) is Queued and item.position <= 0:
                # Admitted by the local engine (not shown to the client): the wait for the first
                # piece starts now, for this attempt as for the job.
                return item
            # The first piece (or the end, or a queue position the client will see).
            self._committed = True
            self._state.answered(self._ended)
            upstream.breaker.answered(self._trial)
            upstream.answered()
            if item is None:
                raise StopAsyncIteration
            return item

    def _begin(self) -> None:
        """The next attempt: an upstream chosen, its stream opened. Raises when there is none
        (the last attempt's error, or none may take the request now)."""
        router, state = self._router, self._state
        target, source = self._target
        upstream = router._pick(target, source, self._tried, state.avoid)
        if upstream is None:
            raise self._last_error or router._nothing_to_try(target, source)
        previous = self._upstream
        if previous is not None:
            assert self._last_error is not None
            if not router._budget.try_retry():
                metrics.upstream_retry_refused()
                log.warning("upstream_retry_refused", upstream=previous.name)
                raise self._last_error
            metrics.upstream_fallback(previous.name)
        self._tried.add(upstream.name)
        self._upstream = upstream
        self._trial = upstream.breaker.take()
        upstream.in_flight += 1
        state.trying(upstream.name, upstream.provider.name, upstream.provider.model)
        self._pieces = upstream.provider.stream(self._task, state)

    async def _failed(self, upstream: Upstream, error: DragomanError) -> None:
        """The attempt failed before its first piece: closed; raises unless the request moves
        on."""
        await self._end_attempt()
        outcome, moves_on = _judge(error)
        metrics.upstream_attempt(upstream.name, outcome)
        log.warning(
            "upstream_attempt_failed", upstream=upstream.name, outcome=outcome, code=error.code
        )
        if outcome == "refused" or isinstance(error, QueueFull):
            upstream.breaker.released(self._trial)
        else:
            upstream.breaker.failed(self._trial)
        self._state.failed(error)
        self._last_error = error
        if not moves_on or self._router._single:
            raise error

    async def _end_attempt(self) -> None:
        pieces, self._pieces = self._pieces, None
        if pieces is not None:
            assert self._upstream is not None
            self._upstream.in_flight -= 1
            if self._committed:
                self._finished = _ran_out(pieces)
            await _close(pieces)

    def _ended(self, error: DragomanError | None) -> None:
        """The job's end, after the answering upstream's first piece: its verdict. A job that
        ended without an error but before its stream did (its client left) gives none."""
        upstream = self._upstream
        assert upstream is not None
        if error is None:
            finished = self._finished if self._finished is not None else _ran_out(self._pieces)
            if finished:
                upstream.breaker.succeeded()
        elif isinstance(error, UpstreamError | UpstreamTimeout):
            metrics.upstream_attempt(upstream.name, "broke_off")
            upstream.breaker.failed(False)

    async def aclose(self) -> None:
        if self._pieces is not None and not self._committed:
            # Ended from outside before any answer (the job's deadline, its client leaving, a
            # cancel): no verdict on the upstream; the job records the attempt with its error.
            assert self._upstream is not None
            metrics.upstream_attempt(self._upstream.name, "cancelled")
            self._upstream.breaker.released(self._trial)
        await self._end_attempt()


def _least_busy(candidates: list[Upstream]) -> Upstream:
    if len(candidates) == 1:
        return candidates[0]
    for upstream in candidates:
        if upstream.breaker.state == "half_open":
            return upstream
    lowest = min(u.in_flight / u.weight for u in candidates)
    tied = [u for u in candidates if u.in_flight / u.weight == lowest]
    if len(tied) == 1:
        return tied[0]
    # Smooth weighted round robin among the equally busy (nginx's): each gains its weight,
    # the one ahead is chosen and falls back by the total.
    total = 0
    best = tied[0]
    for upstream in tied:
        upstream._current += upstream.weight
        total += upstream.weight
        if upstream._current > best._current:
            best = upstream
    best._current -= total
    return best


def _judge(error: DragomanError) -> tuple[str, bool]:
    """An attempt's failure before its first piece: its outcome label, and whether the request
    moves on to the next upstream."""
    if isinstance(error, UpstreamTimeout):
        return "timeout", True
    if isinstance(error, UpstreamRateLimited):
        return "rate_limited", True
    cause = error.__cause__
    if isinstance(cause, openai.APIStatusError) and cause.status_code in _REQUEST_FAULTS:
        return "refused", False
    return "error", True


def _ran_out(pieces: AsyncIterator[Any] | None) -> bool:
    """Whether an upstream's stream (an async generator) has ended."""
    return pieces is not None and getattr(pieces, "ag_frame", True) is None


async def _close(pieces: AsyncIterator[Any]) -> None:
    closer = getattr(pieces, "aclose", None)
    if closer is not None:
        await closer()


def provider_for(spec: UpstreamSpec, settings: Settings) -> Provider:
    """The concrete provider of one configured upstream."""
    if spec.kind == "local":
        from dragoman.providers.local import LocalProvider

        return LocalProvider(settings)
    from pydantic import SecretStr

    from dragoman.providers.openai import OpenAIProvider

    own = settings.model_copy(
        update={
            "provider": "openai",
            "openai_base_url": spec.base_url,
            "model": spec.model,
            "openai_api_key": SecretStr(spec.api_key) if spec.api_key else None,
        }
    )
    return OpenAIProvider(own)
