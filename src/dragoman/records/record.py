"""A translation record in memory, and its public JSON shape."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dragoman.providers.base import Usage


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass(slots=True)
class Record:
    text: str
    target_lang: str
    source_lang: str | None
    script_id: str | None
    provider: str
    model: str
    id: str = field(default_factory=new_id)
    created_at: str = field(default_factory=now_rfc3339)
    translation: str = ""
    status: str = "streaming"
    error_code: str | None = None
    error_message: str | None = None
    usage: Usage | None = None
    first_token_ms: int | None = None
    total_ms: int | None = None

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "script_id": self.script_id,
            "source_lang": self.source_lang,
            "target_lang": self.target_lang,
            "text": self.text,
            "translation": self.translation,
            "status": self.status,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "provider": self.provider,
            "model": self.model,
            "prompt_tokens": self.usage.prompt_tokens if self.usage else None,
            "completion_tokens": self.usage.completion_tokens if self.usage else None,
            "created_at": self.created_at,
            "first_token_ms": self.first_token_ms,
            "total_ms": self.total_ms,
        }

    def public(self) -> dict[str, Any]:
        return public_from_row(self.row())


def public_from_row(row: Any) -> dict[str, Any]:
    """The contract's record shape from a row mapping."""
    error = None
    if row["error_code"] is not None:
        error = {"code": row["error_code"], "message": row["error_message"] or ""}
    usage = None
    if row["prompt_tokens"] is not None or row["completion_tokens"] is not None:
        usage = {
            "prompt_tokens": row["prompt_tokens"] or 0,
            "completion_tokens": row["completion_tokens"] or 0,
        }
    return {
        "id": row["id"],
        "script_id": row["script_id"],
        "source_lang": row["source_lang"],
        "target_lang": row["target_lang"],
        "text": row["text"],
        "translation": row["translation"],
        "status": row["status"],
        "error": error,
        "provider": row["provider"],
        "model": row["model"],
        "usage": usage,
        "created_at": row["created_at"],
        "first_token_ms": row["first_token_ms"],
        "total_ms": row["total_ms"],
    }
