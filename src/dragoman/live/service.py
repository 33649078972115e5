"""Live sessions: one speaker, any number of listeners, each reading in their own language.

A speaker opens a session for a script and sends it segments. Each segment is translated
once into every language that has a listener (anywhere) or that the speaker listed, however
many listen: a translation is a record of the script (with the session's segment index, the
script's context and glossary), and its events go into the channel of that session and
language (`channel.py`), from which every process fans them out to its own listeners
(`fanout.py`, `listener.py`).

In one process, the translations of one session into one language run one at a time, in
order (`_Lane`), so that each has the previous one as context and its listeners read the talk
in order. A segment whose translation into a language exists already is not translated again
(the record's unique index says so), so two processes never both translate it.

A language picked by its first listener gets the last `DRAGOMAN_LIVE_CATCH_UP` segments
translated on demand. A session with no segment for `DRAGOMAN_LIVE_IDLE_S` closes by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from dragoman import metrics
from dragoman.config import Settings
from dragoman.errors import (
    AlreadyTranslated,
    DragomanError,
    InvalidRequest,
    NotFound,
    SessionClosed,
    TooManyLanguages,
)
from dragoman.events import (
    Closed,
    Delta,
    Done,
    Failed,
    LiveDelta,
    LiveDone,
    LiveError,
    LiveEvent,
    LiveSegment,
    Revision,
)
from dragoman.keys import ApiKey, KeyStore
from dragoman.live.channel import KEEP_S, Channels, MemoryChannels, RedisChannels
from dragoman.live.codes import display, new_join_code, normalize
from dragoman.live.fanout import Hub
from dragoman.live.guard import CodeGuard
from dragoman.live.listener import LiveListener
from dragoman.live.presence import Presence
from dragoman.live.stabilise import shown_after
from dragoman.live.store import Session, SessionStore
from dragoman.prompts import TranslationTask
from dragoman.redis_clients import RedisClients
from dragoman.registry import StreamRegistry
from dragoman.scripts.prompt import add_script_prompt
from dragoman.service import Fields, Job, TranslationRequest, Translator

log = structlog.get_logger(__name__)

# Appends to a channel that fail (Redis away) are tried again for this long before the events
# are given up: the translation waits meanwhile, and its listeners get them late, not never.
_APPEND_RETRY_S = 60.0
# How long a close waits for this process's translations of the session to end first.
_CLOSE_WAIT_S = 30.0
# A segment whose upstream broke off after its first piece is translated again this many times
# (on another upstream while there is one).
_RETRIES = 1
_BROKE_OFF = frozenset({"upstream_error", "upstream_timeout"})


@dataclass(frozen=True, slots=True)
class _Work:
    index: int
    text: str
    key: ApiKey | None


class Live:
    def __init__(
        self,
        settings: Settings,
        translator: Translator,
        sessions: SessionStore,
        keys: KeyStore,
        registry: StreamRegistry,
        clients: RedisClients | None,
    ) -> None:
        self.settings = settings
        self.translator = translator
        self.sessions = sessions
        self._keys = keys
        self._registry = registry
        self.channels: Channels
        if clients is not None:
            self.channels = RedisChannels(clients.commands, clients.blocking)
        else:
            self.channels = MemoryChannels()
        commands = clients.commands if clients is not None else None
        self.hub = Hub(self.channels)
        self.presence = Presence(commands)
        self.guard = CodeGuard(commands)
        self._lanes: dict[tuple[str, str], _Lane] = {}
        # The segment being spoken, per session and language: what its drafts showed. Kept
        # here, not in a lane: a lane ends whenever it has nothing to do.
        self.open_segments: dict[tuple[str, str], _OpenSegment] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Closed sessions' channels, dropped from this process's memory after a while.
        self._timers: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.presence.start()
        self._sweeper = asyncio.create_task(self._sweep_idle(), name="dragoman-live-idle")

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for timer in self._timers:
            timer.cancel()
        for lane in list(self._lanes.values()):
            lane.stop()
        await asyncio.gather(
            *(lane.task for lane in self._lanes.values() if lane.task is not None),
            *self._tasks,
            *([self._sweeper] if self._sweeper is not None else []),
            return_exceptions=True,
        )
        await self.hub.aclose()
        await self.presence.aclose()
        await self.channels.aclose()

    # The speaker.

    async def open(
        self,
        key: ApiKey | None,
        *,
        script_id: str | None,
        source_lang: str | None,
        target_langs: list[str],
        title: str | None,
    ) -> Session:
        self._registry.check_open()
        resolve = self.translator.resolve_languages
        targets: list[str] = []
        for i, lang in enumerate(target_langs):
            tag, _ = resolve(lang, None, Fields(target=f"target_langs.{i}"))
            if tag not in targets:
                targets.append(tag)
        if len(targets) > self.settings.live_max_langs:
            raise InvalidRequest(
                f"target_langs: at most {self.settings.live_max_langs} languages "
                "(DRAGOMAN_LIVE_MAX_LANGS)."
            )
        source = None
        if source_lang is not None and source_lang.strip().lower() not in ("", "auto"):
            source = self.translator.provider.languages.resolve(source_lang, field="source_lang")
        return await self.sessions.create(
            join_code=new_join_code(),
            script_id=script_id or "live-" + uuid.uuid4().hex[:16],
            key_id=key.id if key is not None else None,
            title=title,
            source_lang=source,
            target_langs=targets,
        )

    async def speaker_session(self, session_id: str, key: ApiKey | None) -> Session:
        """The session, when this key opened it (any, when keys are off); else 404."""
        session = await self.sessions.get(session_id) if len(session_id) <= 64 else None
        if session is None or (key is not None and session.key_id != key.id):
            raise NotFound("No such live session.")
        return session

    async def add_segment(
        self, session_id: str, key: ApiKey | None, text: str, *, final: bool = True
    ) -> tuple[int, list[str]]:
        """Take a final segment (or, `final=False`, a guess of the one being spoken, which
        replaces the previous guess): its index, and the languages it goes into."""
        self.translator.check_text(text)
        session = await self.speaker_session(session_id, key)
        take = self.sessions.add_segment if final else self.sessions.update_open
        index = None if session.closed else await take(session.id, text)
        if index is None:
            raise SessionClosed()
        languages = await self.languages(session)
        work = _Work(index, text, key)
        for lang in languages:
            lane = self._lane(session, lang)
            if final:
                lane.put(work)
            else:
                lane.guess(work)
        return index, languages

    async def close(self, session_id: str, key: ApiKey | None) -> Session:
        session = await self.speaker_session(session_id, key)
        if await self.sessions.close(session.id, "closed"):
            await self._end(session, "closed", wait=True)
        closed = await self.sessions.get(session.id)
        assert closed is not None
        return closed

    # Listeners.

    async def find(self, join_code: str, address: str) -> Session:
        """The session of a join code; 404 for an unknown one, and 429 for an address that
        asked for too many unknown ones."""
        await self.guard.check(address)
        code = normalize(join_code)
        session = await self.sessions.by_code(code) if code is not None else None
        if session is None:
            await self.guard.missed(address)
            raise NotFound("No live session has this code.")
        return session

    async def info(self, session: Session) -> dict[str, Any]:
        counts = await self.presence.counts(session.id)
        return {
            "title": session.title,
            "source_lang": session.source_lang,
            "languages": await self.languages(session, counts),
            "status": session.status,
            "segments": session.segments - (1 if session.open_index is not None else 0),
            "listeners": counts,
        }

    async def listen(self, session: Session, lang: str, after: int | None) -> LiveListener:
        """A listener in `lang` (422 when the service cannot translate into it, 409 when the
        session is translated into as many languages as it may be)."""
        tag, _ = self.translator.resolve_languages(lang, None, Fields(target="lang"))
        catch_up = False
        if not session.closed:
            active = await self.languages(session)
            if tag not in active:
                if len(active) >= self.settings.live_max_langs:
                    raise TooManyLanguages()
                catch_up = True
        return LiveListener(
            session,
            tag,
            after,
            hub=self.hub,
            presence=self.presence,
            channels=self.channels,
            replay_segments=self.settings.live_replay,
            buffer=self.settings.live_listener_buffer,
            catch_up=(lambda: self._spawn(self._catch_up(session, tag)))
            if catch_up and self.settings.live_catch_up > 0
            else None,
        )

    async def _catch_up(self, session: Session, lang: str) -> None:
        segments = await self.sessions.recent_segments(session.id, self.settings.live_catch_up)
        key = await self._keys.get(session.key_id) if session.key_id is not None else None
        lane = self._lane(session, lang)
        for index, text in segments:
            lane.put(_Work(index, text, key))

    async def languages(self, session: Session, counts: dict[str, int] | None = None) -> list[str]:
        """The languages a segment is translated into now: the speaker's, then those that
        have listeners, at most DRAGOMAN_LIVE_MAX_LANGS."""
        if counts is None:
            counts = await self.presence.counts(session.id)
        langs = list(session.target_langs)
        langs += sorted(lang for lang, count in counts.items() if count > 0 and lang not in langs)
        return langs[: self.settings.live_max_langs]

    # Translations.

    def _lane(self, session: Session, lang: str) -> _Lane:
        lane = self._lanes.get((session.id, lang))
        if lane is None:
            lane = self._lanes[(session.id, lang)] = _Lane(self, session, lang)
        return lane

    def _lane_done(self, lane: _Lane) -> None:
        if self._lanes.get((lane.session.id, lane.lang)) is lane:
            del self._lanes[(lane.session.id, lane.lang)]

    async def append(self, session_id: str, lang: str, events: list[LiveEvent]) -> None:
        """Append to a channel, trying again while it cannot be written."""
        delay = 0.25
        loop = asyncio.get_running_loop()
        give_up = loop.time() + _APPEND_RETRY_S
        while True:
            try:
                await self.channels.append(session_id, lang, events)
                return
            except Exception as exc:
                if loop.time() > give_up:
                    log.error("live_events_lost", session=session_id, lang=lang, count=len(events))
                    return
                log.warning("live_append_failed", error=type(exc).__name__, retry_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 4.0)

    async def translate(
        self, session: Session, lang: str, work: _Work, *, revisions: int | None = None
    ) -> None:
        """One final segment into one language, its events into the language's channel. A
        segment whose drafts were shown (`revisions`) gets no pieces: its `done` replaces the
        last draft at once, rather than the text restarting from nothing.

        An upstream that breaks off after its first piece (failover happens only before it)
        does not end the segment: it is translated again, whole, once, on another upstream
        while there is one, and its listeners get that translation as a `revision` replacing
        what they were shown, then its pieces. The failed record stays, out of the script's
        order."""
        # Announced once, with what follows it.
        segment: list[LiveEvent] = [LiveSegment(work.index, work.text)]
        avoid: frozenset[str] = frozenset()
        for attempt in range(1 + _RETRIES):
            request = TranslationRequest(
                text=work.text,
                target_lang=lang,
                source_lang=session.source_lang,
                script_id=session.script_id,
                key=work.key,
                segment=True,
                segment_index=work.index,
                revisions=revisions or 0,
                avoid_upstreams=avoid,
            )
            try:
                job = await self.translator.submit(request)
            except AlreadyTranslated:
                return  # another process translates it
            except DragomanError as exc:
                metrics.live_translated("failed")
                await self.append(session.id, lang, [*segment, LiveError(exc, work.index)])
                return
            if segment:
                await self.append(session.id, lang, segment)
                segment = []
            failed, pieces = await self._follow(job, session, lang, work, revisions, attempt)
            if failed is None:
                return
            upstream = job.record.upstream
            broke_off = pieces and failed.error.code in _BROKE_OFF
            if broke_off and attempt < _RETRIES and failed.recorded:
                log.warning(
                    "live_segment_retried",
                    session=session.id,
                    lang=lang,
                    index=work.index,
                    upstream=upstream,
                    error=failed.error.code,
                )
                await self.translator.scripts.release_segment(job.record.id)
                avoid = avoid | {upstream} if upstream else avoid
                continue
            await self.append(session.id, lang, [LiveError(failed.error, work.index)])
            metrics.live_translated("failed")
            return

    async def _follow(
        self,
        job: Job,
        session: Session,
        lang: str,
        work: _Work,
        revisions: int | None,
        attempt: int,
    ) -> tuple[Failed | None, int]:
        """A job's events into the channel: its failure (None when it succeeded) and how many
        pieces it gave. A retry's first piece goes out as a `revision`: it replaces what the
        failed attempt showed."""
        self._registry.active.add(job)
        pieces = 0
        try:
            async with aclosing(job.events()) as events:
                async for event in events:
                    if type(event) is Delta:
                        first = pieces == 0
                        pieces += len(event.pieces)
                        if revisions is not None:
                            continue
                        if attempt and first:
                            text = "".join(event.pieces)
                            await self.append(session.id, lang, [Revision(work.index, text)])
                        else:
                            await self.append(
                                session.id, lang, [LiveDelta(work.index, event.pieces)]
                            )
                    elif type(event) is Done:
                        record = event.record
                        done = LiveDone(work.index, record.translation, record.id)
                        await self.append(session.id, lang, [done])
                        metrics.live_translated("succeeded")
                        return None, pieces
                    elif type(event) is Failed:
                        return event, pieces
        finally:
            self._registry.active.discard(job)
        return None, pieces

    async def draft_task(self, session: Session, lang: str, work: _Work) -> TranslationTask:
        """The prompt of an open segment's drafts: as its final translation's will be (the
        script's context and glossary), read once per segment."""
        request = TranslationRequest(
            text=work.text, target_lang=lang, source_lang=session.source_lang
        )
        task = self.translator.check(request)
        await add_script_prompt(
            task,
            self.translator.scripts,
            session.script_id,
            work.key.id if work.key is not None else None,
            context_segments=self.settings.context_segments,
            term_memory=self.settings.term_memory,
        )
        return task

    async def still_open(self, session_id: str, index: int) -> bool:
        """Whether `index` is still the session's segment being spoken (its final text may
        have reached another process)."""
        session = await self.sessions.get(session_id)
        return session is not None and not session.closed and session.open_index == index

    # Ends.

    async def _end(self, session: Session, reason: str, *, wait: bool) -> None:
        """The session is closed: its channels get `closed` (after this process's
        translations of it, when `wait`)."""
        for key in [key for key in self.open_segments if key[0] == session.id]:
            del self.open_segments[key]
        lanes = [lane for (sid, _), lane in self._lanes.items() if sid == session.id]
        if wait and lanes:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLOSE_WAIT_S):
                    await asyncio.gather(*(lane.drained() for lane in lanes))
        langs = set(session.target_langs) | await self.channels.languages(session.id)
        langs |= set((await self.presence.counts(session.id)).keys())
        for lang in sorted(langs):
            await self.append(session.id, lang, [Closed(reason)])
        log.info("live_session_closed", session=session.id, reason=reason)
        timer = asyncio.create_task(self._forget_later(session.id))
        self._timers.add(timer)
        timer.add_done_callback(self._timers.discard)

    async def _forget_later(self, session_id: str) -> None:
        # A closed session stays readable as long as Redis keeps its streams.
        await asyncio.sleep(KEEP_S)
        self.channels.forget(session_id)

    async def _sweep_idle(self) -> None:
        every = min(30.0, self.settings.live_idle_s / 4)
        while True:
            await asyncio.sleep(every)
            cutoff = datetime.now(UTC) - timedelta(seconds=self.settings.live_idle_s)
            stamp = cutoff.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            try:
                for session_id in await self.sessions.close_idle(stamp):
                    session = await self.sessions.get(session_id)
                    if session is not None:
                        await self._end(session, "idle", wait=False)
            except Exception as exc:
                log.warning("live_idle_sweep_failed", error=type(exc).__name__)

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class _Lane:
    """The translations of one session into one language in this process, one at a time: the
    final segments in order, and between them drafts of the segment being spoken."""

    def __init__(self, live: Live, session: Session, lang: str) -> None:
        self._live = live
        self.session = session
        self.lang = lang
        self._queue: asyncio.Queue[_Work] = asyncio.Queue()
        self._idle = asyncio.Event()
        self._idle.set()
        self._news = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        # The newest guess of the segment being spoken, not drafted yet.
        self._guess: _Work | None = None

    def put(self, work: _Work) -> None:
        self._queue.put_nowait(work)
        self._wake()

    def guess(self, work: _Work) -> None:
        self._guess = work
        self._wake()

    def _wake(self) -> None:
        self._idle.clear()
        self._news.set()
        if self.task is None:
            self.task = asyncio.create_task(
                self._run(), name=f"dragoman-live-lane-{self.session.id}-{self.lang}"
            )

    async def drained(self) -> None:
        await self._idle.wait()

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def _run(self) -> None:
        try:
            while not self._queue.empty() or self._guess is not None:
                self._news.clear()
                try:
                    if not self._queue.empty():
                        await self._final(self._queue.get_nowait())
                    else:
                        await self._draft()
                except Exception:
                    log.exception("live_translation_failed", session=self.session.id)
        finally:
            self._idle.set()
            self._live._lane_done(self)

    async def _final(self, work: _Work) -> None:
        key = (self.session.id, self.lang)
        opened = self._live.open_segments.get(key)
        revisions = None
        if opened is not None and opened.index <= work.index:
            if opened.index == work.index and opened.revisions:
                revisions = opened.revisions
            del self._live.open_segments[key]
        if self._guess is not None and self._guess.index <= work.index:
            self._guess = None
        await self._live.translate(self.session, self.lang, work, revisions=revisions)

    async def _draft(self) -> None:
        live, settings = self._live, self._live.settings
        assert self._guess is not None
        key = (self.session.id, self.lang)
        opened = live.open_segments.get(key)
        loop = asyncio.get_running_loop()
        if opened is not None and opened.index == self._guess.index:
            wait = opened.last_draft + settings.live_retranslate_ms / 1000 - loop.time()
            if wait > 0:  # not more often than DRAGOMAN_LIVE_RETRANSLATE_MS; finals first
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._news.wait(), wait)
                return
        work, self._guess = self._guess, None
        if opened is None or opened.index != work.index:
            task = await live.draft_task(self.session, self.lang, work)
            opened = live.open_segments[key] = _OpenSegment(work.index, task)
        opened.last_draft = loop.time()
        try:
            draft = await live.translator.draft(replace(opened.task, text=work.text))
        except DragomanError as exc:
            log.info("live_draft_failed", session=self.session.id, error=exc.code)
            return
        # Only the last drafts matter: as many as must agree (`DRAGOMAN_LIVE_AGREEMENT_DRAFTS`).
        agreement = settings.live_agreement_drafts if settings.live_agreement else 1
        opened.drafts.append(draft)
        del opened.drafts[:-agreement]
        shown = shown_after(
            opened.shown, opened.drafts, self.lang, settings.live_mask_words,
            settings.live_keep_prefix, agreement,
        )  # fmt: skip
        if shown is None or not await live.still_open(self.session.id, work.index):
            return
        opened.shown = shown
        opened.revisions += 1
        events: list[LiveEvent] = [
            LiveSegment(work.index, work.text, final=False),
            Revision(work.index, shown),
        ]
        await live.append(self.session.id, self.lang, events)


@dataclass(slots=True)
class _OpenSegment:
    index: int
    task: TranslationTask
    shown: str = ""
    revisions: int = 0
    last_draft: float = -1e9  # when its last draft started (loop time)
    # The last drafts' translations, oldest first, the newest included (as many as must agree).
    drafts: list[str] = field(default_factory=list)


def public(session: Session, *, viewer_base: str = "") -> dict[str, Any]:
    """The session as the speaker sees it (`POST /v1/live`)."""
    code = display(session.join_code)
    return {
        "session_id": session.id,
        "join_code": code,
        "script_id": session.script_id,
        "viewer_url": f"{viewer_base}/live/{code}",
        "title": session.title,
        "source_lang": session.source_lang,
        "target_langs": session.target_langs,
        "status": session.status,
        "created_at": session.created_at,
    }
