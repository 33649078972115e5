"""A translation record in memory, and its public JSON shape."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dragoman.records import runners
from dragoman.records.models import TranslationRow


@dataclass(slots=True)
class Usage:
    """Tokens an upstream reported for one translation."""

    prompt_tokens: int
    completion_tokens: int


def now_rfc3339(at: float | None = None) -> str:
    """`at` (seconds since the epoch; now by default) as the records write times."""
    moment = datetime.now(UTC) if at is None else datetime.fromtimestamp(at, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
    key_id: str | None = None
    segment_index: int | None = None
    glossary_misses: list[str] | None = None
    revisions: int | None = None
    repetition: str | None = None
    # The upstream that answered, and the attempts that failed before it (each
    # {"upstream", "error": {"code", "message"}, "ms"}).
    upstream: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    # The process that writes it (not public): see `runners.py`.
    runner: str = field(default_factory=runners.current_id)

    def row(self) -> dict[str, Any]:
        """The table row: every column of `TranslationRow`, by the attribute of the same name
        (usage is split into its two token columns)."""
        row = {name: getattr(self, name) for name in _ATTRIBUTE_COLUMNS}
        usage = self.usage
        row["prompt_tokens"] = usage.prompt_tokens if usage else None
        row["completion_tokens"] = usage.completion_tokens if usage else None
        return row

    def public(self) -> dict[str, Any]:
        return public_from_row(self.row())


# The record's shape is the table's: a new column is a column in `models.py`, a field above
# (same name), a field in the public schema (`api/schemas.py`) and a migration.
_COLUMNS = tuple(column.name for column in TranslationRow.__table__.columns)
_USAGE_COLUMNS = ("prompt_tokens", "completion_tokens")
_ERROR_COLUMNS = ("error_code", "error_message")
_PRIVATE_COLUMNS = ("runner",)
_ATTRIBUTE_COLUMNS = tuple(name for name in _COLUMNS if name not in _USAGE_COLUMNS)


def public_from_row(row: Any) -> dict[str, Any]:
    """The contract's record shape from a row mapping: the columns as they are, except the
    error and usage columns, which become the `error` and `usage` objects, and the private
    `runner`."""
    public: dict[str, Any] = {}
    for name in _COLUMNS:
        if name == "error_code":
            code = row["error_code"]
            public["error"] = (
                None if code is None else {"code": code, "message": row["error_message"] or ""}
            )
        elif name == "prompt_tokens":
            prompt, completion = row["prompt_tokens"], row["completion_tokens"]
            public["usage"] = (
                None
                if prompt is None and completion is None
                else {"prompt_tokens": prompt or 0, "completion_tokens": completion or 0}
            )
        elif name not in _ERROR_COLUMNS and name not in _USAGE_COLUMNS:
            if name not in _PRIVATE_COLUMNS:
                public[name] = row[name]
    return public
