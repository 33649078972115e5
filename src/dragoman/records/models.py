"""The tables: `translations` (one row per accepted request), `runners` (the processes that
write them), `api_keys`, and the scripts' glossaries and subtitle cues."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Float, Index, Integer, PrimaryKeyConstraint, String, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class TranslationRow(Base):
    __tablename__ = "translations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    script_id: Mapped[str | None] = mapped_column(String(128))
    source_lang: Mapped[str | None] = mapped_column(String(64))
    target_lang: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    translation: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    provider: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(256))
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    # RFC 3339 UTC with milliseconds, as the API shows it: a string sorts in time order and
    # keeps keyset cursors exact on every database.
    created_at: Mapped[str] = mapped_column(String(32))
    first_token_ms: Mapped[int | None] = mapped_column(Integer)
    total_ms: Mapped[int | None] = mapped_column(Integer)
    key_id: Mapped[str | None] = mapped_column(String(32))
    # Script segments only: their order per script, target language and key.
    segment_index: Mapped[int | None] = mapped_column(Integer)
    glossary_misses: Mapped[list[str] | None] = mapped_column(JSON)
    # Live sessions: partial translations shown before this final one (null elsewhere).
    revisions: Mapped[int | None] = mapped_column(Integer)
    # The embedded model's loop guard: "redecoded" (a repetition was caught and decoded
    # again), "cut" (the translation was ended before a repetition), null otherwise.
    repetition: Mapped[str | None] = mapped_column(String(16))
    # The upstream that answered (null when none did, and in records from before upstreams),
    # and the attempts that failed before it: [{"upstream", "error": {"code", "message"}, "ms"}].
    upstream: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    # Not public: the process that writes the record (`runners.py`), so that a record left
    # `streaming` is finished as `interrupted` only once that process is gone.
    runner: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (
        Index("ix_translations_created", "created_at", "id"),
        Index("ix_translations_key_created", "key_id", "created_at", "id"),
        Index("ix_translations_script_created", "script_id", "created_at", "id"),
        Index("ix_translations_status", "status"),
        # Two segments racing for the same index (two workers, two replicas): one insert fails
        # and takes the next. NULL key ids (keys off) compare equal here through coalesce.
        Index(
            "ux_translations_segment",
            "script_id",
            "target_lang",
            "segment_index",
            func.coalesce(key_id, ""),
            unique=True,
        ),
    )


class LiveSessionRow(Base):
    """A live session: a speaker's script, followed by listeners with its join code."""

    __tablename__ = "live_sessions"

    # The speaker's handle (kept private); the join code is the listeners'.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    join_code: Mapped[str] = mapped_column(String(16), unique=True)
    script_id: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str | None] = mapped_column(String(32))
    title: Mapped[str | None] = mapped_column(Text)
    source_lang: Mapped[str | None] = mapped_column(String(64))
    target_langs: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # open | closed
    close_reason: Mapped[str | None] = mapped_column(String(16))  # closed | idle
    # The script's segment index of the session's first segment, and how many it has taken
    # (the next one is first_index + segments).
    first_index: Mapped[int] = mapped_column(Integer)
    segments: Mapped[int] = mapped_column(Integer)
    # The segment still being spoken (partial text): its index and its latest guess.
    open_index: Mapped[int | None] = mapped_column(Integer)
    open_text: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(String(32))
    # The last segment (or the creation): a session idle for DRAGOMAN_LIVE_IDLE_S closes.
    active_at: Mapped[str] = mapped_column(String(32))
    closed_at: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (Index("ix_live_sessions_open", "status", "active_at"),)


class LiveSegmentRow(Base):
    """A live session's segment as spoken: the source text of its translations."""

    __tablename__ = "live_segments"

    session_id: Mapped[str] = mapped_column(String(32))
    segment_index: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(String(32))

    __table_args__ = (PrimaryKeyConstraint("session_id", "segment_index"),)


class RunnerRow(Base):
    """A process that writes records, and when it was last seen (`runners.py`)."""

    __tablename__ = "runners"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    # The pid's start time in clock ticks since boot ("" where unknown): a pid used again by
    # another process after a crash is not taken for the runner.
    started: Mapped[str] = mapped_column(String(32))
    seen_at: Mapped[float] = mapped_column(Float)  # seconds since the epoch


class ApiKeyRow(Base):
    """An API key. Only a hash of its secret is kept: the secret is shown once, at creation."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    # SHA-256 of the secret, hex: the secrets are 256 random bits, so a fast hash is enough and
    # lets a request's key be found by an index lookup.
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    rpm: Mapped[int | None] = mapped_column(Integer)
    cpm: Mapped[int | None] = mapped_column(Integer)
    concurrency: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[str] = mapped_column(String(32))
    revoked_at: Mapped[str | None] = mapped_column(String(32))


class GlossaryRow(Base):
    """A script's glossary, replaced whole by each PUT."""

    __tablename__ = "script_glossaries"

    # The key id, or "" for scripts made with keys off.
    owner: Mapped[str] = mapped_column(String(32))
    script_id: Mapped[str] = mapped_column(String(128))
    entries: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    updated_at: Mapped[str] = mapped_column(String(32))

    __table_args__ = (PrimaryKeyConstraint("owner", "script_id"),)


class SubtitleCueRow(Base):
    """Where a segment made from a subtitle file sits in it, for SRT and WebVTT export."""

    __tablename__ = "subtitle_cues"

    translation_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    cue_index: Mapped[int] = mapped_column(Integer)  # 1-based position in the file
    start_ms: Mapped[int] = mapped_column(Integer)
    end_ms: Mapped[int] = mapped_column(Integer)
