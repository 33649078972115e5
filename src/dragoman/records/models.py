"""The tables: `translations` (one row per accepted request) and `api_keys`."""

from __future__ import annotations

from sqlalchemy import Index, Integer, String, Text
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

    __table_args__ = (
        Index("ix_translations_created", "created_at", "id"),
        Index("ix_translations_key_created", "key_id", "created_at", "id"),
        Index("ix_translations_script_created", "script_id", "created_at", "id"),
        Index("ix_translations_status", "status"),
    )


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
