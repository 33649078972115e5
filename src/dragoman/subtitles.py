"""A subtitle file translated cue by cue, in order, as the segments of one script.

Each cue with text is one script segment (one record, numbered, with the previous cues in its
prompt and the script's glossary), so the translation of a film stays consistent and the
script can be exported again later. The whole file is checked and admitted against the key's
limits once, as one batch, before the first cue (`admit`); each cue is then submitted in turn.

`SubtitleRun.events()` yields `SubtitlesStarted` (with the first piece of text, or the first
cue), `CueDelta`, `CueDone` and `SubtitlesDone`; a failure ends them with `Failed`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass

from dragoman.errors import DragomanError
from dragoman.events import (
    CueDelta,
    CueDone,
    Delta,
    Done,
    Event,
    Failed,
    SubtitlesDone,
    SubtitlesStarted,
)
from dragoman.keys import ApiKey
from dragoman.scripts.files import SubtitleFile, SubtitleFormat, cue_text
from dragoman.service import Batch, Job, TranslationRequest, Translator


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
        self._batch: Batch | None = None
        self._job: Job | None = None
        self._abort_error: DragomanError | None = None

    async def admit(self) -> None:
        """Check every cue and the languages, then take the key's limits for the whole file;
        raises before anything is stored."""
        request = self.request
        self._batch = await self.translator.batch(
            [
                TranslationRequest(
                    text=cue.text,
                    target_lang=request.target_lang,
                    source_lang=request.source_lang,
                    script_id=self.script_id,
                    key=request.key,
                    segment=True,
                    cue=cue.place,
                )
                for cue in self.file.cues
                if cue.text.strip()
            ]
        )
        if not self._batch.requests:  # no cue with text: the languages are still checked
            self.translator.resolve_languages(request.target_lang, request.source_lang)

    def abort(self, error: DragomanError) -> None:
        """Ended by the server (shutdown): the cue in progress ends with this error, recorded
        as failed, and no other cue starts."""
        self._abort_error = error
        if self._job is not None:
            self._job.abort(error)

    def release(self) -> None:
        if self._batch is not None:
            self._batch.release()

    async def events(self) -> AsyncGenerator[Event, None]:
        assert self._batch is not None, "admit() first"
        started = False
        submitted = 0
        try:
            for cue in self.file.cues:
                translation = cue.text
                if cue.text.strip():
                    if self._abort_error is not None:
                        yield Failed(self._abort_error)
                        return
                    self._job = job = await self._batch.start(submitted)
                    submitted += 1
                    # Closing the job's events when this run is closed (the client left) cancels
                    # the upstream request and records the cue as cancelled.
                    async with aclosing(job.events()) as events:
                        async for event in events:
                            if type(event) is Delta:
                                if not started:
                                    started = True
                                    yield self._started()
                                yield CueDelta(cue.index, event.pieces)
                            elif type(event) is Done:
                                translation = event.record.translation
                            elif type(event) is Failed:
                                yield event
                                return
                    self._job = None
                self.file.set_text(cue.index, translation)
                if not started:
                    started = True
                    yield self._started()
                yield CueDone(cue.index, cue.start, cue.end, cue_text(translation))
            yield SubtitlesDone(self.script_id, self.file.format, self.file.content())
        finally:
            self.release()

    def _started(self) -> SubtitlesStarted:
        provider = self.translator.provider
        return SubtitlesStarted(self.script_id, provider.name, provider.model)
