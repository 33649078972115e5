"""Continuous batching: every running request is a sequence in the same llama.cpp batch.

Each step admits waiting requests into free sequence slots (first come, first served), starts
the next unit (sentence) of every request that needs one, decodes one token for every running
sequence in one `llama_decode` call, and lets finished or cancelled requests leave. A request
that arrives joins at the next step; a cancelled one stops before its next token.

A unit with glossary terms is decoded with their steering (`terms.py`): biases on the logits
of its next token, and the rest of a term forced once begun by the bias.

Everything runs on the engine's event loop thread, one `llama_decode` call per step, and the
loop reads its connections between steps (`_read_messages`). A decode thread was measured
slower: handing every step to another thread and back cost one client about a sixth of its
tokens per second, and some of its first token's time, on a 2-core machine
(docs/benchmarks.md, "Embedded model speed"). Nothing is lost by blocking the loop during a
step: a request that arrives meanwhile could only join at the next step anyway, and a stop is
applied before the next token either way.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from dragoman.engine.decoder import DecodeError, Decoder, Entry
from dragoman.engine.repetition import MAX_REDECODES, RepetitionGuard, source_repeats
from dragoman.engine.terms import Term, TermSteering
from dragoman.engine.units import Unit

log = structlog.get_logger(__name__)

# A translation runs about as long as its source; more than this is runaway repetition.
MAX_NEW_TOKENS = 1024


def max_new_tokens(source_tokens: int) -> int:
    return min(MAX_NEW_TOKENS, 3 * source_tokens + 16)


class QueueFullError(Exception):
    pass


Emit = Callable[[dict[str, Any]], None]


@dataclass(eq=False, slots=True)
class Request:
    units: list[Unit]
    emit: Emit  # sends a message to the request's client
    key: Any = None  # the client's id for it
    cancelled: bool = False
    slot: int = -1
    unit: int = -1  # index of the running unit
    # The running unit's state.
    pending: list[int] = field(default_factory=list)  # prompt tokens not decoded yet
    pos: int = 0  # position of the next token of this sequence
    last: int | None = None  # the last sampled token, fed at the next step
    produced: int = 0
    limit: int = 0
    reserved: int = 0  # cache cells this unit may use (prompt + output)
    began: bool = False  # a non-space piece of this unit went out
    decoder: Any = None
    done: bool = False  # every unit ran: the request leaves after this step
    error: str | None = None  # ends the request with this message after this step
    prompt_tokens: int = 0
    completion_tokens: int = 0
    steering: TermSteering | None = None  # the running unit's glossary terms
    # The token id ranges the translation may write (its target's scripts); None: all.
    rows: tuple[tuple[int, int], ...] | None = None
    # The loop guard of the running unit, its tokens held back (text, and the UTF-8 decoder's
    # state before each), a token forbidden at the next step, and its decodings again.
    guard: RepetitionGuard | None = None
    held: list[tuple[str, Any]] = field(default_factory=list)
    ban: int | None = None
    redecodes: int = 0
    # What the guard did to the translation: None, "redecoded" or "cut".
    repetition: str | None = None


class Scheduler:
    def __init__(
        self,
        decoder: Decoder,
        *,
        parallel: int,
        queue_max: int,
        glossary_bias: float = 0.0,
        loop_guard: bool = True,
    ) -> None:
        self._decoder = decoder
        self.loop_guard = loop_guard
        self.glossary_bias = glossary_bias
        # Tokens that end a translation, before which glossary steering writes a missing term:
        # the end of generation, and for a few-shot unit (whose answer ends at its line's end)
        # any piece with a line break. One pass over the vocabulary (under a second), so at
        # start rather than on a first request.
        vocabulary = range(decoder.n_vocab) if glossary_bias > 0 else range(0)
        self._generation_ends = frozenset(t for t in vocabulary if decoder.is_end(t))
        self._line_ends = self._generation_ends | frozenset(
            t for t in vocabulary if b"\n" in decoder.piece(t)
        )
        self.parallel = parallel
        self.queue_max = queue_max
        self.waiting: collections.deque[Request] = collections.deque()
        self.slots: list[Request | None] = [None] * parallel
        self._free_after_step: list[int] = []
        self._wake = asyncio.Event()
        # Cells held by shared prefixes; the rest of the context is for running units.
        self._prefix_reserve = 0

    # Requests in and out (event loop)

    def submit(self, request: Request) -> int:
        """Queue a request. Returns its position (0: it starts at the next step)."""
        free = sum(1 for s in self.slots if s is None)
        if len(self.waiting) - free >= self.queue_max:
            raise QueueFullError()
        self.waiting.append(request)
        self._wake.set()
        return max(len(self.waiting) - free, 0)

    def cancel(self, request: Request) -> None:
        if request.cancelled:
            return
        request.cancelled = True
        if request in self.waiting:
            self.waiting.remove(request)
            self._tell_positions()
        self._wake.set()

    def active(self) -> int:
        return sum(1 for s in self.slots if s is not None)

    def _tell_positions(self) -> None:
        free = sum(1 for s in self.slots if s is None)
        for i, request in enumerate(self.waiting):
            request.emit({"q": max(i + 1 - free, 1)})

    # The step loop

    async def run(self) -> None:
        while True:
            if not self.waiting and self.active() == 0:
                self._wake.clear()
                await self._wake.wait()
            await _read_messages()
            self._drop_cancelled()
            self._admit()
            if self.active() == 0:
                continue
            try:
                sampled = self._step_sync()
            except DecodeError as exc:
                self._fail_all(str(exc))
                continue
            self._deliver(sampled)
            self._sweep()

    def _sweep(self) -> None:
        """Requests that finished or failed during the step leave their slots."""
        for i, request in enumerate(self.slots):
            if request is None:
                continue
            if request.error is not None:
                request.emit({"err": request.error})
                self._release(i)
            elif request.done:
                request.emit(
                    {
                        "end": [request.prompt_tokens, request.completion_tokens],
                        "rep": request.repetition,
                    }
                )
                self._release(i)

    def _drop_cancelled(self) -> None:
        for i, request in enumerate(self.slots):
            if request is not None and request.cancelled:
                self._release(i)

    def _release(self, slot: int) -> None:
        self.slots[slot] = None
        self._free_after_step.append(slot)

    def _admit(self) -> None:
        admitted = False
        for i in range(self.parallel):
            if self.slots[i] is None and self.waiting:
                request = self.waiting.popleft()
                request.slot = i
                self.slots[i] = request
                request.emit({"q": 0})
                admitted = True
        if admitted:
            self._tell_positions()

    def _fail_all(self, detail: str) -> None:
        log.error("engine_decode_failed", detail=detail[:300])
        for i, request in enumerate(self.slots):
            if request is not None:
                request.emit({"err": "The local model failed."})
                self._release(i)

    # One step: the batch, llama.cpp's call and the greedy choices.

    def _step_sync(self) -> list[tuple[Request, tuple[int, int]]]:
        d = self._decoder
        for slot in self._free_after_step:
            d.clear(slot)
        self._free_after_step.clear()
        entries: list[Entry] = []
        wants: list[Request] = []
        budget = d.n_batch
        used = self._prefix_reserve + sum(r.reserved for r in self.slots if r is not None)
        # Running sequences first: one token each, so that a long new prompt never stalls them.
        for request in self.slots:
            if request is not None and not request.cancelled and request.last is not None:
                entries.append(
                    Entry(
                        request.slot, request.last, request.pos, True, _bias(request),
                        request.rows, request.ban,
                    )
                )  # fmt: skip
                request.pos += 1
                request.last = None
                request.ban = None
                wants.append(request)
                budget -= 1
        generating = len(wants)
        for request in self.slots:
            if request is None or request.cancelled or request in wants[:generating]:
                continue
            if request.done or request.error is not None:
                continue
            if not request.pending and not self._next_unit(request, d, used):
                continue
            used = self._prefix_reserve + sum(r.reserved for r in self.slots if r is not None)
            if budget <= 0:
                break
            chunk, request.pending = request.pending[:budget], request.pending[budget:]
            for i, token in enumerate(chunk):
                last = not request.pending and i == len(chunk) - 1
                bias = _bias(request) if last else None
                entries.append(
                    Entry(request.slot, token, request.pos + i, last, bias, request.rows)
                )
            request.pos += len(chunk)
            budget -= len(chunk)
            if not request.pending:
                wants.append(request)
        if not entries:
            return []
        tokens = d.decode(entries)
        return list(zip(wants, tokens, strict=True))

    def _next_unit(self, request: Request, d: Decoder, used: int) -> bool:
        """Load the request's next unit that needs the model. False when it has none now."""
        while request.unit + 1 < len(request.units):
            unit = request.units[request.unit + 1]
            if not unit.prompt:
                request.unit += 1
                if unit.after:
                    request.emit({"p": unit.after})
                continue
            prompt = d.tokenize(unit.prompt, bos=not unit.prefix and d.add_bos, special=unit.chat)
            limit = max_new_tokens(len(d.tokenize(unit.source, bos=False, special=False)))
            cached = d.prefix_length(unit.prefix)
            new_prefix = 0
            if cached is None and unit.prefix:
                new_prefix = len(d.tokenize(unit.prefix, bos=d.add_bos, special=False))
            need = len(prompt) + limit
            if need + (cached or new_prefix) > d.n_ctx:
                request.error = "The text is too long for the local model's context."
                return False
            if used + need + new_prefix > d.n_ctx:
                return False  # waits until running units give their cells back
            request.unit += 1
            request.pos = d.start_with_prefix(request.slot, unit.prefix)
            self._prefix_reserve = d.prefix_cells()
            request.pending = prompt
            request.limit = limit
            request.reserved = need
            request.produced = 0
            request.began = False
            request.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            request.steering = self._steering(unit, d)
            request.guard = (
                RepetitionGuard(source_repeats(unit.source), self._has_letter)
                if self.loop_guard
                else None
            )
            request.held = []
            request.ban = None
            request.redecodes = 0
            request.prompt_tokens += request.pos + len(prompt)
            return True
        request.done = True
        return False

    def _steering(self, unit: Unit, d: Decoder) -> TermSteering | None:
        if not unit.terms or self.glossary_bias <= 0:
            return None
        terms = [
            Term(
                term,
                tuple(d.tokenize(" " + term, bos=False)),
                tuple(d.tokenize(term, bos=False)),
            )
            for term in unit.terms
        ]
        ends = self._line_ends if unit.line else self._generation_ends
        return TermSteering(terms, self.glossary_bias, ends)

    # After the step: the tokens out

    def _deliver(self, sampled: list[tuple[Request, tuple[int, int]]]) -> None:
        d = self._decoder
        for request, (token, natural) in sampled:
            if request.cancelled:
                continue
            unit = request.units[request.unit]
            steering = request.steering
            if steering is not None:
                token = steering.choose(token, natural)
            ended = d.is_end(token)
            text = ""
            if not ended:
                request.produced += 1
                request.completion_tokens += 1
                state = request.decoder.getstate()
                piece = request.decoder.decode(d.piece(token))
                if steering is not None:
                    steering.advance(token, piece)
                if unit.line and "\n" in piece:
                    text, ended = piece[: piece.index("\n")], True
                else:
                    hold, period = request.guard.push(token) if request.guard else (0, 0)
                    if period and self._loop(request, period, state):
                        continue  # decoded again from before the loop at the next step
                    if period:  # decoded again too often: the unit ends before the loop
                        ended = True
                    else:
                        request.held.append((piece, state))
                        if request.produced >= request.limit:
                            ended = True
                            request.repetition = "cut"
                    if not ended:
                        out = max(len(request.held) - hold, 0)
                        text = "".join(held for held, _ in request.held[:out])
                        del request.held[:out]
            if ended:
                # Whatever was held back was not a loop: it goes out.
                text += "".join(held for held, _ in request.held)
                request.held.clear()
                text += request.decoder.decode(b"", final=True)
            if not request.began:
                text = text.lstrip()
                request.began = bool(text)
            if text:
                request.emit({"p": text})
            if not ended:
                request.last = token
                continue
            # Its cells go back now, as they stop being counted: the next unit may have to wait.
            d.clear(request.slot)
            request.reserved = 0
            if unit.after:
                request.emit({"p": unit.after})
            if not any(u.prompt for u in request.units[request.unit + 1 :]):
                for rest in request.units[request.unit + 1 :]:
                    if rest.after:
                        request.emit({"p": rest.after})
                request.unit = len(request.units)
                request.done = True

    def _loop(self, request: Request, period: int, state: Any) -> bool:
        """The newest `period` tokens repeat the allowed copies once more: drop them (they were
        held back, never sent) and decode again from before them with their first token
        forbidden. False when the unit has been decoded again too often: it ends there."""
        guard = request.guard
        assert guard is not None
        first = guard.tokens[-period]
        guard.drop(period)
        # The newest token (the loop's last) was not held yet; the others were.
        before = request.held[-(period - 1)][1] if period > 1 else state
        del request.held[len(request.held) - (period - 1) :]
        request.decoder.setstate(before)
        if request.redecodes >= MAX_REDECODES:
            request.repetition = "cut"
            log.info("engine_loop_cut", period=period)
            return False
        request.redecodes += 1
        request.repetition = request.repetition or "redecoded"
        log.info("engine_loop_redecoded", period=period)
        # The last kept token is fed again, so that its logits choose anew.
        request.pos -= period
        self._decoder.forget_from(request.slot, request.pos)
        request.last = guard.tokens[-1]
        request.ban = first
        return True

    def _has_letter(self, tokens: list[int]) -> bool:
        text = b"".join(self._decoder.piece(t) for t in tokens).decode("utf-8", "ignore")
        return any(char.isalpha() for char in text)


async def _read_messages() -> None:
    """Let the event loop read what came in during the last step: new requests, stops.

    Three turns of the loop (asyncio runs, in each turn, what was ready before its poll): in
    the first it polls the sockets and queues their reads behind this task; in the second the
    reads feed the connections' streams, which queues their readers behind this task again;
    in the third the readers handle every complete message (submit, cancel) before this task
    goes on. (`tests/unit/engine` checks it: with two turns a message waited a step more.)
    """
    for _ in range(3):
        await asyncio.sleep(0)


def _bias(request: Request) -> dict[int, float] | None:
    return request.steering.next_bias() if request.steering is not None else None
