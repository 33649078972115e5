"""Request and response shapes of the HTTP contract."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

SCRIPT_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
ScriptId = Annotated[str, Field(pattern=SCRIPT_ID_PATTERN, max_length=128)]


class TranslateCompatIn(BaseModel):
    """Body of the original `POST /translate`."""

    model_config = ConfigDict(extra="forbid")

    lang: StrictStr = Field(description="Target language: a BCP-47 tag or a language name.")
    message: StrictStr = Field(description="The text to translate.")
    source_lang: StrictStr | None = Field(
        default=None, description="Source language (tag or name); absent or `auto` to detect."
    )


class TranslationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: StrictStr
    target_lang: StrictStr = Field(examples=["ko-KR"])
    source_lang: StrictStr | None = Field(default=None, examples=["en", "auto"])
    script_id: ScriptId | None = None
    stream: StrictBool = True
    resumable: StrictBool = Field(
        default=False,
        description="Keep running when the client disconnects; resume with "
        "`GET /v1/translations/{id}/events` (`stream: true` only).",
    )


class SegmentCreate(BaseModel):
    """Body of `POST /v1/scripts/{script_id}/segments`."""

    model_config = ConfigDict(extra="forbid")

    text: StrictStr
    target_lang: StrictStr = Field(examples=["ko"])
    source_lang: StrictStr | None = Field(default=None, examples=["en", "auto"])
    stream: StrictBool = True
    resumable: StrictBool = Field(
        default=False,
        description="Keep running when the client disconnects; resume with "
        "`GET /v1/translations/{id}/events` (`stream: true` only).",
    )


class SubtitlesCreate(BaseModel):
    """Body of `POST /v1/subtitles`."""

    model_config = ConfigDict(extra="forbid")

    content: StrictStr = Field(description="The SRT or WebVTT file.")
    target_lang: StrictStr = Field(examples=["ko"])
    source_lang: StrictStr | None = Field(default=None, examples=["en", "auto"])
    script_id: ScriptId | None = Field(
        default=None, description="The script the cues join; a new one when absent."
    )
    format: Literal["srt", "vtt"] | None = Field(
        default=None, description="Detected from the content when absent."
    )
    stream: StrictBool = True


class SubtitlesDone(BaseModel):
    script_id: str
    format: Literal["srt", "vtt"]
    content: str


Term = Annotated[StrictStr, Field(min_length=1, max_length=100)]


class GlossaryEntryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: Term = Field(examples=["dragoman"])
    target: Term = Field(examples=["통역사"])
    target_lang: StrictStr = Field(examples=["ko"])


class GlossaryIn(BaseModel):
    """Body of `PUT /v1/scripts/{script_id}/glossary`: the whole glossary."""

    model_config = ConfigDict(extra="forbid")

    entries: list[GlossaryEntryIn] = Field(max_length=500)


class GlossaryOut(BaseModel):
    script_id: str
    entries: list[GlossaryEntryIn]


class ScriptOut(BaseModel):
    script_id: str
    segments: int
    target_langs: list[str]
    created_at: str
    updated_at: str


class ScriptPage(BaseModel):
    items: list[ScriptOut]
    next_cursor: str | None


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorBody


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class AttemptOut(BaseModel):
    upstream: str
    error: ErrorBody
    ms: int


class TranslationPublic(BaseModel):
    id: str
    script_id: str | None
    source_lang: str | None
    target_lang: str
    text: str
    translation: str
    status: str
    error: ErrorBody | None
    provider: str
    model: str
    usage: UsageOut | None
    created_at: str
    first_token_ms: int | None
    total_ms: int | None
    key_id: str | None = Field(
        description="The API key that asked for it (`null` when keys are off)."
    )
    segment_index: int | None = Field(
        description="Order of a script segment per script and target language, from 0 "
        "(`null` outside `/v1/scripts/{script_id}/segments` and `/v1/subtitles`)."
    )
    glossary_misses: list[str] | None = Field(
        description="Source terms of the glossary entries that applied but whose target term "
        "is not in the translation (`null` when no entry applied)."
    )
    revisions: int | None = Field(
        description="Live sessions: partial translations shown before this final one "
        "(`null` outside live sessions)."
    )
    repetition: str | None = Field(
        description="The embedded model's loop guard: `redecoded` when the translation began "
        "to repeat itself and was decoded again from before the repetition, `cut` when it was "
        "ended there; `null` otherwise (and on other upstreams)."
    )
    upstream: str | None = Field(
        description="The upstream that answered (`null` when none did, and in records made "
        "before upstreams were recorded)."
    )
    attempts: list[AttemptOut] | None = Field(
        description="The attempts that failed before it, in order (`[]` when the first one "
        "answered; when none answered, every attempt; `null` in records made before upstreams "
        "were recorded)."
    )


class TranslationPage(BaseModel):
    items: list[TranslationPublic]
    next_cursor: str | None


class LanguageOut(BaseModel):
    tag: str
    name: str


class LanguagesOut(BaseModel):
    languages: list[LanguageOut]


class CancelOut(BaseModel):
    id: str
    status: str


class LiveCreate(BaseModel):
    """Body of `POST /v1/live`."""

    model_config = ConfigDict(extra="ignore")

    script_id: ScriptId | None = Field(
        default=None, description="The script the segments go to; a new one when absent."
    )
    source_lang: StrictStr | None = Field(default=None, examples=["en", "auto"])
    target_langs: list[StrictStr] = Field(
        default_factory=list,
        examples=[["ko", "ja"]],
        description="Languages to translate into whether or not anyone listens in them.",
    )
    title: StrictStr | None = Field(default=None, max_length=200)


class LiveSessionOut(BaseModel):
    session_id: str = Field(description="The speaker's handle: keep it private.")
    join_code: str = Field(description="The listeners' ticket.")
    script_id: str
    viewer_url: str
    title: str | None
    source_lang: str | None
    target_langs: list[str]
    status: str
    created_at: str


class LiveSegmentIn(BaseModel):
    """Body of `POST /v1/live/{session_id}/segments`."""

    model_config = ConfigDict(extra="ignore")

    text: StrictStr
    final: StrictBool = Field(
        default=True,
        description="`false`: the current guess of the segment being spoken (it replaces the "
        "previous one); `true`: the segment's final text.",
    )


class LiveSegmentOut(BaseModel):
    segment_index: int
    languages: list[str]


class LiveInfoOut(BaseModel):
    title: str | None
    source_lang: str | None
    languages: list[str]
    status: str
    segments: int
    listeners: dict[str, int] = Field(description="Listeners now, per language.")
