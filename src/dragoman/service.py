"""The life of one translation: record created, pieces streamed, record finished once.

Both endpoints are encodings of the events a `Job` yields:

- `list[str]`: pieces of translated text that arrived together (never empty, nor any piece);
- `Queued`: the request waits for the local model (position 1 is next);
- `Finished`: the record, committed as `succeeded`;
- `Failed`: the error, with the record committed as `failed`.

A job that is cancelled (its client left) queues its record as `cancelled` on the way out; one
aborted by a shutdown queues it as `failed` with the abort's code. Nothing touches the database
per piece.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

import structlog

from dragoman import metrics
from dragoman.config import Settings
from dragoman.errors import (
    DatabaseUnavailable,
    DragomanError,
    QueueFull,
    RateLimited,
    Stopped,
    TextTooLong,
    UpstreamTimeout,
)
from dragoman.errors import (
    InvalidRequest as InvalidRequestError,
)
from dragoman.keys import ApiKey
from dragoman.languages import LanguageDetector, base_language
from dragoman.prompts import TranslationTask
from dragoman.providers.base import Provider, Queued, StreamState
from dragoman.providers.factory import make_provider
from dragoman.quotas import Lease, Quotas
from dragoman.records.record import Record
from dragoman.records.scripts import Cue, GlossaryEntry, ScriptStore
from dragoman.records.store import ANYONE, RecordStore
from dragoman.term_memory import HISTORY_SEGMENTS, learned_terms

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Finished:
    record: Record


@dataclass(frozen=True, slots=True)
class Failed:
    error: DragomanError
    record: Record


Event = list[str] | Queued | Finished | Failed


@dataclass(frozen=True, slots=True)
class TranslationRequest:
    """One translation asked for, as either endpoint or the CLI received it."""

    text: str
    target_lang: str
    source_lang: str | None = None
    script_id: str | None = None
    # `POST /translate` only: language names ("Korean") are accepted besides tags.
    allow_names: bool = False
    # The caller's API key, None when keys are off: the record is filed under it.
    key: ApiKey | None = None
    # A resumable translation's id, chosen by the caller (its shape marks it resumable).
    record_id: str | None = None
    # A script segment (`script_id` set): numbered, with the script's previous segments and
    # glossary in the prompt. `cue`: its place in a subtitle file.
    segment: bool = False
    cue: Cue | None = None
    # The key's limits were already applied to a larger whole (a subtitle file's cues).
    admitted: bool = False


class Translator:
    """Validates requests against the provider and starts jobs."""

    def __init__(
        self,
        settings: Settings,
        provider: Provider,
        store: RecordStore,
        detector: LanguageDetector,
        quotas: Quotas | None = None,
    ) -> None:
        self.settings = settings
        self.provider = provider
        self.store = store
        self.detector = detector
        self.quotas = quotas
        self.scripts = ScriptStore(store.engine)

    async def submit(self, request: TranslationRequest, *, early_admission: bool = False) -> Job:
        """Validate and admit a request. Raises before anything is stored (422, 413,
        `RateLimited`, `QueueFull`).

        `early_admission`, for a caller that sends nothing before the job's first event: when
        the key is far from its limits, they are counted (in Redis, a round trip) while the
        upstream starts, and a refusal comes as the job's first event (`Failed`, nothing
        stored) instead of an exception here."""
        text_field, target_field, source_field = (
            ("message", "lang", "source_lang")  # `POST /translate` names its fields so
            if request.allow_names
            else ("text", "target_lang", "source_lang")
        )
        self.check_text(request.text, field=text_field)
        target_lang, source_lang = self.resolve_languages(
            request.target_lang,
            request.source_lang,
            allow_names=request.allow_names,
            fields=(target_field, source_field),
        )
        task = TranslationTask(text=request.text, target_lang=target_lang, source_lang=source_lang)
        if request.segment:
            await self._add_script_prompt(request, task)
        lease = None
        admission: asyncio.Future[Lease] | None = None
        quotas, key = self.quotas, request.key
        if quotas is not None and key is not None and not request.admitted:
            if early_admission and not request.segment and quotas.has_room(key):
                admission = asyncio.ensure_future(quotas.admit(key, len(request.text)))
            else:
                lease = await quotas.admit(key, len(request.text))
        state = StreamState()
        try:
            pieces = self.provider.stream(task, state)
        except BaseException:
            if lease is not None:
                lease.release()
            if admission is not None:
                admission.cancel()
            raise
        record = Record(
            text=request.text,
            target_lang=target_lang,
            source_lang=source_lang,
            script_id=request.script_id,
            provider=self.provider.name,
            model=self.provider.model,
            key_id=request.key.id if request.key is not None else None,
        )
        if request.record_id is not None:
            record.id = request.record_id
        if request.segment:
            await self._create_segment(record, request.cue, pieces, lease)
        return Job(
            self, record, task, pieces, state, lease, admission=admission, created=request.segment
        )

    async def _add_script_prompt(self, request: TranslationRequest, task: TranslationTask) -> None:
        """The script's previous segments, the glossary entries that occur in the text and
        the script's own renderings of its other recurring terms."""
        assert request.script_id is not None
        key_id = request.key.id if request.key is not None else None
        count = self.settings.context_segments
        # The term memory reads further back; with context off, it is off too.
        memory = self.settings.term_memory and count > 0
        try:
            history = await self.scripts.context(
                request.script_id, task.target_lang, key_id, HISTORY_SEGMENTS if memory else count
            )
            # A key's scripts are its own; with keys off (no key id) every script is ANYONE's.
            entries = await self.scripts.glossary(request.script_id, key_id or ANYONE)
        except Exception as exc:
            log.error("script_read_failed", error=type(exc).__name__, detail=str(exc)[:300])
            raise DatabaseUnavailable("The script's context could not be read.") from exc
        task.context = history[-count:] if count else []
        task.glossary = applicable_glossary(entries, task.text, task.target_lang)
        if memory:
            # Off the event loop: a long text against a long history is a few hundred ms.
            task.learned = await asyncio.to_thread(
                learned_terms, history, task.text, glossary_terms(entries, task.target_lang)
            )

    async def _create_segment(
        self,
        record: Record,
        cue: Cue | None,
        pieces: AsyncIterator[list[str] | Queued],
        lease: Lease | None,
    ) -> None:
        # Written before the first token, unlike other records: the index is the database's
        # to give, and the segment's `done` carries it.
        try:
            await self.scripts.create_segment(record, cue)
        except BaseException as exc:
            closer = getattr(pieces, "aclose", None)
            if closer is not None:
                await closer()
            if lease is not None:
                lease.release()
            if isinstance(exc, Exception):
                log.error("segment_create_failed", error=type(exc).__name__, detail=str(exc)[:300])
                raise DatabaseUnavailable() from exc
            raise

    def resolve_languages(
        self,
        target: str,
        source: str | None,
        *,
        allow_names: bool,
        fields: tuple[str, str] = ("target_lang", "source_lang"),
    ) -> tuple[str, str | None]:
        """Standard offered tags; errors name the fields as the request named them."""
        catalog = self.provider.languages
        target_tag = catalog.resolve(target, field=fields[0], allow_names=allow_names)
        source_tag = None
        if source is not None and source.strip().lower() not in ("", "auto"):
            source_tag = catalog.resolve(source, field=fields[1], allow_names=allow_names)
        return target_tag, source_tag

    def check_text(self, text: str, *, field: str = "text") -> None:
        if not text.strip():
            raise InvalidRequestError(f"{field}: must not be empty or only whitespace.")
        if "\x00" in text:  # no database stores it in text (PostgreSQL refuses it)
            raise InvalidRequestError(f"{field}: must not contain NUL (U+0000) characters.")
        if len(text) > self.settings.max_text_chars:
            raise TextTooLong(
                f"{field}: {len(text)} characters; this server accepts at most "
                f"{self.settings.max_text_chars}."
            )

    async def aclose(self) -> None:
        await self.provider.aclose()


def glossary_terms(entries: list[GlossaryEntry], target_lang: str) -> list[tuple[str, str]]:
    """(source, target) of the entries for this target language or its base language."""
    langs = {target_lang, base_language(target_lang)}
    return [(entry.source, entry.target) for entry in entries if entry.target_lang in langs]


def applicable_glossary(
    entries: list[GlossaryEntry], text: str, target_lang: str
) -> list[tuple[str, str]]:
    """Entries for this target language (or its base language) whose source term occurs in
    the text, ignoring case."""
    folded = text.casefold()
    return [
        (source, target)
        for source, target in glossary_terms(entries, target_lang)
        if source.casefold() in folded
    ]


def glossary_misses(glossary: list[tuple[str, str]], translation: str) -> list[str] | None:
    """Source terms whose target term is not in the translation (ignoring case); None when no
    entry applied."""
    if not glossary:
        return None
    folded = translation.casefold()
    return [source for source, target in glossary if target.casefold() not in folded]


def build_translator(
    settings: Settings, store: RecordStore, quotas: Quotas | None = None
) -> Translator:
    """The translator the server and the CLI both run: the configured provider (not started
    yet: the server starts it in the background, the CLI waits for it), a detector, and the
    per-key limits when keys are on."""
    return Translator(settings, make_provider(settings), store, LanguageDetector(), quotas)


class Job:
    def __init__(
        self,
        translator: Translator,
        record: Record,
        task: TranslationTask,
        pieces: AsyncIterator[list[str] | Queued],
        state: StreamState,
        lease: Lease | None = None,
        *,
        admission: asyncio.Future[Lease] | None = None,
        created: bool = False,
    ) -> None:
        self._translator = translator
        self._lease = lease
        # The key's limits being counted while the upstream starts (`submit`'s early
        # admission): awaited before the first event goes out.
        self._admission = admission
        self.record = record
        self._pieces = pieces
        self._state = state
        self._task = task
        # Detected before the provider starts when its prompt needs it, else at the end (off
        # the path to the first token).
        self._detect_after = task.source_lang is None and not translator.provider.needs_source_lang
        self.abort_error: DragomanError | None = None
        self._created: asyncio.Future[None] | None = None
        if created:  # already inserted (a script segment)
            self._created = asyncio.get_running_loop().create_future()
            self._created.set_result(None)
        self.final: asyncio.Future[None] | None = None

    def abort(self, error: DragomanError) -> None:
        """Mark the job as ended by the server (shutdown, cancel request); the caller then
        cancels its task. A `Stopped` job's record ends `cancelled` with that error."""
        self.abort_error = error

    async def unwind(self, events: AsyncGenerator[Event, None]) -> DragomanError | None:
        """For a consumer of `events()` that was cancelled: close them now, not at garbage
        collection (that queues the record's final state and closes the upstream). Returns the
        server's reason when the server ended the job (`abort`): the cancellation is then taken
        back and the record is stored, for the consumer to finish in-band. Returns None when
        the cancellation came from elsewhere (the client left): the consumer re-raises it."""
        await events.aclose()
        error = self.abort_error
        if error is None:
            return None
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        if self.final is not None:
            await asyncio.gather(self.final, return_exceptions=True)
        return error

    def release(self) -> None:
        """Give back the key's concurrency slot (once the upstream work is over)."""
        self._drop_admission()
        if self._lease is not None:
            self._lease.release()

    async def _refused(self) -> RateLimited | None:
        """An early admission's refusal, once it has answered."""
        try:
            await self._admitted()
        except RateLimited as refused:
            return None if self._created is not None else refused
        return None

    async def _admitted(self) -> None:
        """Wait for an early admission's answer; raises `RateLimited`."""
        admission, self._admission = self._admission, None
        if admission is not None:
            self._lease = await admission

    def _drop_admission(self) -> None:
        """The job ends before its admission was awaited: keep the slot it took, to give it
        back, or stop the count (`Quotas.admit` gives back a slot it took when cancelled)."""
        admission, self._admission = self._admission, None
        if admission is None:
            return
        if not admission.done():
            admission.cancel()
        elif not admission.cancelled() and admission.exception() is None:
            self._lease = admission.result()

    async def events(self) -> AsyncGenerator[Event, None]:
        translator = self._translator
        store = translator.store
        record = self.record
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        settings = translator.settings
        first_s, idle_s = settings.first_token_timeout_s, settings.idle_timeout_s
        parts: list[str] = []
        error: DragomanError | None = None
        # One deadline: first token, then the idle gap between pieces. It is off while the
        # request waits in the local queue and while a piece is out with the client (a slow
        # reader is not an idle upstream).
        deadline = asyncio.timeout(first_s)
        try:
            try:
                async with deadline:
                    if self._task.source_lang is None and translator.provider.needs_source_lang:
                        detected = await translator.detector.detect_async(
                            record.text, translator.provider.languages
                        )
                        self._task.source_lang = record.source_lang = detected
                    # The record is written once the first event is out, so that the database
                    # never sits in front of the first token; its final state is awaited before
                    # the last byte. While writes are failing it is written first instead, so
                    # that an outage is a plain 503.
                    if store.failing:
                        await _stored(self._create())
                    async for item in self._pieces:
                        deadline.reschedule(None)
                        if self._admission is not None:
                            await self._admitted()  # nothing out yet: a refusal is a status
                        if type(item) is list:
                            if not parts:
                                record.first_token_ms = _ms_since(started)
                                metrics.first_token(time.perf_counter() - started)
                            metrics.pieces_sent(len(item))
                            parts += item
                            yield item
                            self._create()
                            deadline.reschedule(loop.time() + idle_s)
                        elif isinstance(item, Queued):
                            if item.position > 0:
                                yield item
                                self._create()
                            elif not parts:  # admitted: the first-token wait starts now
                                deadline.reschedule(loop.time() + first_s)
            except TimeoutError:
                log.warning("upstream_timeout", id=record.id, after_first_piece=bool(parts))
                error = UpstreamTimeout()
        except (QueueFull, RateLimited) as exc:
            if parts or self._created is not None:
                error = exc
            else:  # refused at admission: not accepted, so not recorded
                yield Failed(exc, record)
                return
        except DragomanError as exc:
            refused = await self._refused() if not parts else None
            if refused is not None:  # the upstream failed, but the key's limits said no first
                yield Failed(refused, record)
                return
            error = exc
        except (asyncio.CancelledError, GeneratorExit):
            self._end_now(parts, started)
            raise
        except Exception:
            log.exception("translation_failed", id=record.id)
            error = DragomanError()
        finally:
            # Closing the provider's stream is what closes the upstream connection, stops the
            # local generation, or takes the request out of the local queue.
            closer = getattr(self._pieces, "aclose", None)
            try:
                if closer is not None:
                    await closer()
            finally:
                self.release()

        self._fill(parts, started, error)
        if self._detect_after:
            try:
                record.source_lang = await translator.detector.detect_async(
                    record.text, translator.provider.languages
                )
            except asyncio.CancelledError:
                self._create()
                self.final = store.finish(record)
                raise
        created = self._create()
        self.final = store.finish(record)
        try:
            await _stored(created)
            await _stored(self.final)
        except DatabaseUnavailable as exc:
            if error is None:
                error = exc
        _log_end(record)
        yield Failed(error, record) if error is not None else Finished(record)

    def _fill(self, parts: list[str], started: float, error: DragomanError | None) -> None:
        record = self.record
        record.translation = "".join(parts)
        record.usage = self._state.usage
        record.total_ms = _ms_since(started)
        record.glossary_misses = glossary_misses(self._task.glossary, record.translation)
        if error is None:
            record.status = "succeeded"
        else:
            record.status = "failed"
            record.error_code = error.code
            record.error_message = error.message

    def _create(self) -> asyncio.Future[None]:
        if self._created is None:
            self._created = self._translator.store.create(self.record)
        return self._created

    def _end_now(self, parts: list[str], started: float) -> None:
        """Cancelled or aborted: queue the final state without awaiting anything."""
        if self.final is not None:  # already queued at the end of the stream
            return
        if self.abort_error is not None:
            self._fill(parts, started, self.abort_error)
            if isinstance(self.abort_error, Stopped):  # a stop asked for, not a failure
                self.record.status = "cancelled"
        else:
            self._fill(parts, started, None)
            self.record.status = "cancelled"
        self._create()
        self.final = self._translator.store.finish(self.record)
        _log_end(self.record)


async def _stored(future: asyncio.Future[None]) -> None:
    try:
        await asyncio.shield(future)
    except DragomanError:
        raise
    except Exception as exc:
        raise DatabaseUnavailable() from exc


def _ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


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
