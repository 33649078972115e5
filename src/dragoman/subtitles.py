"""A subtitle file translated cue by cue, in order, as the segments of one script.

Each cue with text is one script segment (one record, numbered, with the previous cues in its
prompt and the script's glossary), so the translation of a film stays consistent and the
script can be exported again later. The whole file is checked and admitted against the key's
limits once, before the first cue; the cues then run without asking again.

`SubtitleRun.events()` yields `(name, data)` pairs: `start`, `delta`, `cue`, `done`. A failure
before `start` is raised (the endpoint answers it as an HTTP status); after it, it is raised
too and the endpoint sends it in-band.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from dragoman.errors import DragomanError
from dragoman.keys import ApiKey
from dragoman.quotas import Lease
from dragoman.service import Failed, Finished, Job, TranslationRequest, Translator
from dragoman.subtitle_files import ParsedCue, SubtitleFile, SubtitleFormat, cue_text

SubtitleEvent = tuple[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class SubtitlesRequest:
    content: str
    target_lang: str
    source_lang: str | None = None
    script_id: str | None = None
    format: SubtitleFormat | None = None
    key: ApiKey | None = None


def new_script_id() -> str:
    return "sub-" + uuid.uuid4().hex[:16]


class SubtitleRun:
    def __init__(self, translator: Translator, request: SubtitlesRequest) -> None:
        self.translator = translator
        self.request = request
        self.file = SubtitleFile(request.content, request.format)
        self.script_id = request.script_id or new_script_id()
        self._lease: Lease | None = None
        self._job: Job | None = None

    def abort(self, error: DragomanError) -> None:
        """Ended by the server (shutdown): the cue in progress is recorded as failed with this
        error once its task is cancelled."""
        if self._job is not None:
            self._job.abort(error)

    async def admit(self) -> None:
        """Check every cue and the languages, then take the key's limits for the whole file;
        raises before anything is stored."""
        translator = self.translator
        for cue in self.file.cues:
            if cue.text.strip():
                translator.check_text(cue.text)
        translator.resolve_languages(
            self.request.target_lang, self.request.source_lang, allow_names=False
        )
        key = self.request.key
        if translator.quotas is not None and key is not None:
            chars = sum(len(cue.text) for cue in self.file.cues)
            self._lease = await translator.quotas.admit(key, chars)

    def release(self) -> None:
        if self._lease is not None:
            self._lease.release()
            self._lease = None

    async def events(self) -> AsyncGenerator[SubtitleEvent, None]:
        started = False
        try:
            for cue in self.file.cues:
                translation = cue.text
                if cue.text.strip():
                    async with aclosing(self._translate(cue)) as pieces:
                        async for piece in pieces:
                            if isinstance(piece, _Done):
                                translation = piece.translation
                                continue
                            if not started:
                                started = True
                                yield "start", self._start()
                            yield "delta", {"text": piece, "cue": cue.index}
                self.file.set_text(cue.index, translation)
                if not started:
                    started = True
                    yield "start", self._start()
                yield (
                    "cue",
                    {
                        "index": cue.index,
                        "start": cue.start,
                        "end": cue.end,
                        "text": cue_text(translation),
                    },
                )
            yield (
                "done",
                {
                    "script_id": self.script_id,
                    "format": self.file.format,
                    "content": self.file.content(),
                },
            )
        finally:
            self.release()

    def _start(self) -> dict[str, Any]:
        provider = self.translator.provider
        return {"script_id": self.script_id, "provider": provider.name, "model": provider.model}

    async def _translate(self, cue: ParsedCue) -> AsyncGenerator[str | _Done, None]:
        request = self.request
        self._job = job = await self.translator.submit(
            TranslationRequest(
                text=cue.text,
                target_lang=request.target_lang,
                source_lang=request.source_lang,
                script_id=self.script_id,
                key=request.key,
                segment=True,
                cue=cue.place,
                admitted=True,
            )
        )
        # Closing the job's events when this run is closed (the client left) cancels the
        # upstream request and records the cue as cancelled.
        async with aclosing(job.events()) as events:
            async for event in events:
                if type(event) is list:
                    for piece in event:
                        yield piece
                elif isinstance(event, Failed):
                    raise event.error
                elif isinstance(event, Finished):
                    yield _Done(event.record.translation)


@dataclass(frozen=True, slots=True)
class _Done:
    translation: str
