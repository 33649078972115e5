"""The life of one translation: checked, admitted, streamed, recorded once.

`Translator.submit` checks a request (raising before anything is stored: 422, 413, 429, 503)
and starts a `Job`; `Translator.batch` checks and admits a list of requests together (a
subtitle file, a LibreTranslate list), then submits each. A job yields the events of
`events.py`; every way out (an HTTP stream, a resumable log, the CLI, a subtitle file) is an
encoding of them.

A job writes its record twice: created once its first event is out (so that the database never
sits in front of the first token), finished before its final event. A job whose consumer
leaves queues its record as `cancelled` on the way out; one ended by the server (`abort`: a
shutdown, a cancel request) ends with that error as its final event, its record stored. Nothing
touches the database per piece.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from types import TracebackType

import structlog

from dragoman import metrics
from dragoman.admission import Admission
from dragoman.config import Settings
from dragoman.errors import (
    AlreadyTranslated,
    DatabaseUnavailable,
    DragomanError,
    InvalidRequest,
    QueueFull,
    RateLimited,
    Stopped,
    TextTooLong,
    UpstreamTimeout,
)
from dragoman.events import Delta, Done, Event, Failed, Queued, Started
from dragoman.keys import ApiKey
from dragoman.languages import LanguageCatalog, LanguageDetector
from dragoman.prompts import TranslationTask
from dragoman.providers.base import Provider, StreamState
from dragoman.quotas import Lease, Quotas
from dragoman.records.record import Record
from dragoman.records.store import RecordStore
from dragoman.registry import StreamRegistry
from dragoman.scripts.glossary import glossary_misses
from dragoman.scripts.prompt import add_script_prompt
from dragoman.scripts.store import Cue, ScriptStore

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Fields:
    """How a caller names a request's fields, for its error messages, and whether it accepts
    language names ("Korean") besides tags."""

    text: str = "text"
    target: str = "target_lang"
    source: str = "source_lang"
    names: bool = False


V1_FIELDS = Fields()
COMPAT_FIELDS = Fields("message", "lang", "source_lang", names=True)


@dataclass(frozen=True, slots=True)
class TranslationRequest:
    """One translation asked for, by any endpoint or command."""

    text: str
    target_lang: str
    source_lang: str | None = None
    script_id: str | None = None
    # The caller's API key, None when keys are off: the record is filed under it.
    key: ApiKey | None = None
    fields: Fields = V1_FIELDS
    # A resumable translation's id, chosen by the caller (its shape marks it resumable).
    record_id: str | None = None
    # A script segment (`script_id` set): numbered, with the script's previous segments and
    # glossary in the prompt. `cue`: its place in a subtitle file.
    segment: bool = False
    cue: Cue | None = None
    # A live session's segment: the index the session gave it, and the partial translations
    # its listeners were shown before (the record counts them).
    segment_index: int | None = None
    revisions: int | None = None
    # Upstreams to pass over while another can take the request: asked again after it failed
    # after its first piece on one of them (the failed job's `record.upstream`).
    avoid_upstreams: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class JobContext:
    """What every job of a translator works with."""

    store: RecordStore
    detector: LanguageDetector
    languages: LanguageCatalog
    # The provider's prompt needs the source language: detected before it starts, when unknown
    # (else at the end, off the path to the first token).
    detect_first: bool
    first_token_timeout_s: float
    idle_timeout_s: float


class Translator:
    """Checks requests against the provider and the key's limits, and starts jobs."""

    def __init__(
        self,
        settings: Settings,
        provider: Provider,
        store: RecordStore,
        detector: LanguageDetector,
        scripts: ScriptStore,
        quotas: Quotas | None = None,
        registry: StreamRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.provider = provider
        self.store = store
        self.detector = detector
        self.scripts = scripts
        self.quotas = quotas
        # A server that has begun to stop starts no new translation.
        self.registry = registry or StreamRegistry()
        self._context = JobContext(
            store=store,
            detector=detector,
            languages=provider.languages,
            detect_first=provider.needs_source_lang,
            first_token_timeout_s=settings.first_token_timeout_s,
            idle_timeout_s=settings.idle_timeout_s,
        )

    async def submit(self, request: TranslationRequest) -> Job:
        """Check and admit a request, and start its job. Raises before anything is stored
        (422, 413, `RateLimited`, `QueueFull`, `DatabaseUnavailable`, `ShuttingDown`).

        When the key is far from its limits, they are counted while the upstream starts, and a
        refusal comes as the job's first event (`Failed`, nothing stored) instead."""
        self.registry.check_open()
        task = self.check(request)
        return await self._start(request, task, self._early_admission(request))

    async def batch(self, requests: Sequence[TranslationRequest]) -> Batch:
        """Check every request, then count them against the key's limits at once (one request,
        all their characters, one concurrency slot). Raises before anything is stored."""
        self.registry.check_open()
        tasks = [self.check(request) for request in requests]
        key = requests[0].key if requests else None
        lease = None
        if self.quotas is not None and key is not None:
            lease = await self.quotas.admit(key, sum(len(r.text) for r in requests))
        return Batch(self, requests, tasks, lease)

    def check(self, request: TranslationRequest) -> TranslationTask:
        """The request's text and languages, checked: its task (without a script's prompt)."""
        fields = request.fields
        self.check_text(request.text, field=fields.text)
        target_lang, source_lang = self.resolve_languages(
            request.target_lang, request.source_lang, fields
        )
        return TranslationTask(text=request.text, target_lang=target_lang, source_lang=source_lang)

    def resolve_languages(
        self, target: str, source: str | None, fields: Fields = V1_FIELDS
    ) -> tuple[str, str | None]:
        """Standard offered tags; errors name the fields as the request named them."""
        catalog = self.provider.languages
        target_tag = catalog.resolve(target, field=fields.target, allow_names=fields.names)
        source_tag = None
        if source is not None and source.strip().lower() not in ("", "auto"):
            source_tag = catalog.resolve(source, field=fields.source, allow_names=fields.names)
        return target_tag, source_tag

    def check_text(self, text: str, *, field: str = "text") -> None:
        if not text.strip():
            raise InvalidRequest(f"{field}: must not be empty or only whitespace.")
        if "\x00" in text:  # no database stores it in text (PostgreSQL refuses it)
            raise InvalidRequest(f"{field}: must not contain NUL (U+0000) characters.")
        if len(text) > self.settings.max_text_chars:
            raise TextTooLong(
                f"{field}: {len(text)} characters; this server accepts at most "
                f"{self.settings.max_text_chars}."
            )

    def _early_admission(self, request: TranslationRequest) -> Admission | None:
        """An admission counted alongside the upstream's start, when the key has room; None
        when it must be taken before (a refusal then raised). A segment is always admitted
        first: its record is written before its first token."""
        quotas, key = self.quotas, request.key
        if quotas is None or key is None:
            return Admission.none()
        if not request.segment and quotas.has_room(key):
            return Admission.early(quotas, key, len(request.text))
        return None

    async def _start(
        self, request: TranslationRequest, task: TranslationTask, admission: Admission | None
    ) -> Job:
        if request.segment:
            assert request.script_id is not None
            await add_script_prompt(
                task,
                self.scripts,
                request.script_id,
                request.key.id if request.key is not None else None,
                context_segments=self.settings.context_segments,
                term_memory=self.settings.term_memory,
            )
        if admission is None:
            assert self.quotas is not None and request.key is not None
            admission = Admission.taken(await self.quotas.admit(request.key, len(request.text)))
        record = Record(
            text=request.text,
            target_lang=task.target_lang,
            source_lang=task.source_lang,
            script_id=request.script_id,
            provider=self.provider.name,
            model=self.provider.model,
            key_id=request.key.id if request.key is not None else None,
            revisions=request.revisions,
        )
        if request.record_id is not None:
            record.id = request.record_id
        state = StreamState(request.avoid_upstreams)
        try:
            pieces = self.provider.stream(task, state)
        except BaseException:
            admission.release()
            raise
        if request.segment:
            # Written before the first token, unlike other records: the index is the database's
            # to give, and the segment's `done` carries it.
            try:
                await self.scripts.create_segment(record, request.cue, request.segment_index)
            except BaseException as exc:
                await _close(pieces)
                admission.release()
                if isinstance(exc, AlreadyTranslated):
                    raise
                if isinstance(exc, Exception):
                    log.error(
                        "segment_create_failed", error=type(exc).__name__, detail=str(exc)[:300]
                    )
                    raise DatabaseUnavailable() from exc
                raise
        return Job(record, task, pieces, state, self._context, admission, created=request.segment)

    async def draft(self, task: TranslationTask) -> str:
        """A translation that is no record and counts against no limit: a live segment's
        partial text, shown to its listeners until the final text is translated. The same
        timeouts as a job's bound it (`UpstreamTimeout`); other failures raise as the
        provider raises them."""
        state = StreamState()
        parts: list[str] = []
        deadline = _Deadline(self._context)
        async with deadline, aclosing(self.provider.stream(task, state)) as pieces:  # type: ignore[type-var]
            async for item in pieces:
                if type(item) is Queued:
                    if item.position <= 0 and not parts:
                        deadline.first_token()
                    else:
                        deadline.pause()
                    continue
                parts += item  # type: ignore[arg-type]
                deadline.idle()
        return "".join(parts)

    async def aclose(self) -> None:
        await self.provider.aclose()


class Batch:
    """Requests checked and admitted together. Each is started in turn (`start(i)`) without
    asking the key's limits again; `release()` (or leaving its `async with`) gives the slot
    back."""

    def __init__(
        self,
        translator: Translator,
        requests: Sequence[TranslationRequest],
        tasks: list[TranslationTask],
        lease: Lease | None,
    ) -> None:
        self._translator = translator
        self.requests = requests
        self._tasks = tasks
        self._lease = lease

    async def start(self, index: int) -> Job:
        return await self._translator._start(
            self.requests[index], self._tasks[index], Admission.none()
        )

    def release(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            lease.release()

    async def __aenter__(self) -> Batch:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class _Aborted(Exception):
    """Internal: the server ended the job while its last event was out with the consumer."""


class Job:
    def __init__(
        self,
        record: Record,
        task: TranslationTask,
        pieces: AsyncIterator[list[str] | Queued],
        state: StreamState,
        context: JobContext,
        admission: Admission,
        *,
        created: bool = False,
    ) -> None:
        self.record = record
        self.task = task
        self._pieces = pieces
        self._state = state
        self._context = context
        self._admission = admission
        self._life = _RecordLife(context.store, record, created)
        self.abort_error: DragomanError | None = None
        # The task that runs `events()`, and whether it may be cancelled to end the job now:
        # only while it waits for the upstream, never while an event is out with its consumer
        # (that event would be lost) nor while the record's final state is being written.
        self._runner: asyncio.Task[object] | None = None
        self._cancellable = False
        self._started = False
        self._over = asyncio.Event()

    # Control.

    def abort(self, error: DragomanError) -> None:
        """End the job with `error` (a shutdown, a cancel request): its events end with
        `Failed(error)`, its record stored (`cancelled` for a `Stopped`, else `failed`)."""
        if self.abort_error is not None or self._over.is_set():
            return
        self.abort_error = error
        if self._cancellable and self._runner is not None:
            self._runner.cancel()

    async def ended(self) -> None:
        """Return once the job has stopped and its record's final state is stored (or failed
        to be)."""
        await self._over.wait()
        await self._life.settled()

    def release(self) -> None:
        """Give back the key's concurrency slot (idempotent; the job does it at its end)."""
        self._admission.release()

    # The events.

    async def events(self) -> AsyncGenerator[Event, None]:
        self._runner = asyncio.current_task()
        progress = _Progress()
        error: DragomanError | None = None
        try:
            try:
                async with _Deadline(self._context) as deadline:
                    self._cancellable = True
                    self._check_abort()
                    await self._detect_first()
                    if self._context.store.failing:
                        # While writes fail the record goes first, so that an outage is a 503.
                        await _stored(self._life.create())
                    async for item in self._pieces:
                        deadline.pause()
                        if type(item) is Queued:
                            if item.position <= 0:
                                if not progress.parts:  # admitted: the first-token wait starts
                                    deadline.first_token()
                                continue
                            out: list[Event] = [item]
                        else:
                            progress.add(item)  # type: ignore[arg-type]
                            out = [Delta(item)]  # type: ignore[arg-type]
                        if not self._started:
                            out.insert(0, await self._start_event())
                        for event in out:
                            self._cancellable = False
                            yield event
                            self._resumed()
                        self._life.create()
                        if type(item) is not Queued:
                            deadline.idle()
                    if not self._started:  # finished without any text: the answer starts now
                        deadline.pause()
                        start = await self._start_event()
                        self._cancellable = False
                        yield start
            except TimeoutError:
                log.warning("upstream_timeout", id=self.record.id, after_first_piece=progress.any)
                error = UpstreamTimeout()
        except (QueueFull, RateLimited) as exc:
            if self._started or self._life.exists:
                error = exc
            else:  # refused at admission: not accepted, so not recorded
                yield Failed(exc, recorded=False)
                return
        except _Aborted:
            error = self.abort_error
        except DragomanError as exc:
            refused = await self._admission.refusal() if not self._started else None
            if refused is not None and not self._life.exists:
                # The upstream failed, but the key's limits said no first: not recorded.
                yield Failed(refused, recorded=False)
                return
            error = exc
        except asyncio.CancelledError:
            if self.abort_error is None:  # the consumer was cancelled: it goes, we record
                self._end_now(progress)
                raise
            self._uncancel()  # our own cancellation (`abort`): end in-band
            error = self.abort_error
        except GeneratorExit:  # the consumer closed us (it left)
            self._end_now(progress)
            raise
        except Exception:
            log.exception("translation_failed", id=self.record.id)
            error = DragomanError()
        finally:
            self._cancellable = False
            # Closing the provider's stream is what closes the upstream connection, stops the
            # local generation, or takes the request out of the local queue.
            try:
                await _close(self._pieces)
            finally:
                self.release()
        yield await self._finish(progress, error)

    async def _start_event(self) -> Started:
        await self._admission.confirm()  # nothing is out yet: a refusal is a status
        self._started = True
        record = self.record
        self._state.name_upstream(record)  # the upstream that answers, with its model
        return Started(record.id, record.provider, record.model)

    def _check_abort(self) -> None:
        if self.abort_error is not None:
            raise _Aborted()

    def _resumed(self) -> None:
        """Back from the consumer: cancellable again (by whichever task iterates now), or
        ended if the server aborted the job meanwhile."""
        self._runner = asyncio.current_task()
        self._cancellable = True
        self._check_abort()

    async def _detect_first(self) -> None:
        task, context = self.task, self._context
        if task.source_lang is None and context.detect_first:
            detected = await context.detector.detect_async(self.record.text, context.languages)
            task.source_lang = self.record.source_lang = detected

    async def _finish(self, progress: _Progress, error: DragomanError | None) -> Event:
        """The record's final state, stored, as the job's final event."""
        record, context = self.record, self._context
        self._fill(progress, error)
        if self.task.source_lang is None and not context.detect_first:
            try:
                record.source_lang = await context.detector.detect_async(
                    record.text, context.languages
                )
            except asyncio.CancelledError:
                self._life.finish()
                self._over.set()
                raise
        self._life.finish()
        self._over.set()
        try:
            await self._life.stored()
        except DatabaseUnavailable as exc:
            if error is None:
                error = exc
        _log_end(record)
        if error is not None:
            return Failed(error, recorded=not isinstance(error, DatabaseUnavailable))
        return Done(record)

    def _fill(self, progress: _Progress, error: DragomanError | None) -> None:
        record = self.record
        record.translation = "".join(progress.parts)
        record.usage = self._state.usage
        record.repetition = self._state.repetition
        self._state.settle(record, error)
        record.first_token_ms = progress.first_token_ms
        record.total_ms = progress.ms()
        record.glossary_misses = glossary_misses(self.task.glossary, record.translation)
        if error is None:
            record.status = "succeeded"
        else:
            # A stop asked for (a cancel request) is not a failure.
            record.status = "cancelled" if isinstance(error, Stopped) else "failed"
            record.error_code = error.code
            record.error_message = error.message

    def _end_now(self, progress: _Progress) -> None:
        """The consumer left: queue the record's final state without awaiting anything."""
        if self._over.is_set():  # already queued at the end of the stream
            return
        self._fill(progress, self.abort_error)
        if self.abort_error is None:
            self.record.status = "cancelled"
        self._life.finish()
        self._over.set()
        _log_end(self.record)

    def _uncancel(self) -> None:
        if self._runner is not None:
            self._runner.uncancel()


class _Progress:
    """The text so far, and when it came."""

    __slots__ = ("first_token_ms", "parts", "started")

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.parts: list[str] = []
        self.first_token_ms: int | None = None

    @property
    def any(self) -> bool:
        return bool(self.parts)

    def add(self, pieces: list[str]) -> None:
        if not self.parts:
            self.first_token_ms = self.ms()
            metrics.first_token(time.perf_counter() - self.started)
        metrics.pieces_sent(len(pieces))
        self.parts += pieces

    def ms(self) -> int:
        return round((time.perf_counter() - self.started) * 1000)


class _Deadline:
    """One deadline for the upstream: its first token, then the idle gap between pieces. It is
    off while the request waits in the local queue and while a piece is out with the consumer
    (a slow reader is not an idle upstream). Expiring raises `TimeoutError`."""

    def __init__(self, context: JobContext) -> None:
        self._first_s = context.first_token_timeout_s
        self._idle_s = context.idle_timeout_s
        self._timeout = asyncio.timeout(self._first_s)

    async def __aenter__(self) -> _Deadline:
        await self._timeout.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._timeout.__aexit__(exc_type, exc, tb)

    def pause(self) -> None:
        self._timeout.reschedule(None)

    def first_token(self) -> None:
        self._timeout.reschedule(asyncio.get_running_loop().time() + self._first_s)

    def idle(self) -> None:
        self._timeout.reschedule(asyncio.get_running_loop().time() + self._idle_s)


class _RecordLife:
    """A record's two writes: created (once), finished (once)."""

    __slots__ = ("_created", "_finished", "_record", "_store")

    def __init__(self, store: RecordStore, record: Record, created: bool) -> None:
        self._store = store
        self._record = record
        self._created: asyncio.Future[None] | None = None
        self._finished: asyncio.Future[None] | None = None
        if created:  # already inserted (a script segment)
            self._created = asyncio.get_running_loop().create_future()
            self._created.set_result(None)

    @property
    def exists(self) -> bool:
        """Whether its creation is queued or done."""
        return self._created is not None

    def create(self) -> asyncio.Future[None]:
        if self._created is None:
            self._created = self._store.create(self._record)
        return self._created

    def finish(self) -> None:
        self.create()
        if self._finished is None:
            self._finished = self._store.finish(self._record)

    async def stored(self) -> None:
        """Both writes, committed; raises `DatabaseUnavailable`."""
        assert self._created is not None and self._finished is not None
        await _stored(self._created)
        await _stored(self._finished)

    async def settled(self) -> None:
        """Both writes over, whatever their outcome."""
        for future in (self._created, self._finished):
            if future is not None:
                await asyncio.gather(asyncio.shield(future), return_exceptions=True)


async def _stored(future: asyncio.Future[None]) -> None:
    try:
        await asyncio.shield(future)
    except DragomanError:
        raise
    except Exception as exc:
        raise DatabaseUnavailable() from exc


async def _close(pieces: AsyncIterator[object]) -> None:
    closer = getattr(pieces, "aclose", None)
    if closer is not None:
        await closer()


def _log_end(record: Record) -> None:
    log.info(
        "translation_end",
        id=record.id,
        status=record.status,
        error=record.error_code,
        chars_in=len(record.text),
        chars_out=len(record.translation),
        first_token_ms=record.first_token_ms,
        total_ms=record.total_ms,
    )
