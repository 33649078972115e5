"""What a script offers besides its segments: its glossary, its summary and its export."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import structlog
from sqlalchemy.exc import SQLAlchemyError

from dragoman.errors import DatabaseUnavailable, InvalidRequest, NotFound
from dragoman.languages import LanguageCatalog
from dragoman.records.store import Owner, decode_cursor, encode_cursor
from dragoman.scripts.files import render
from dragoman.scripts.store import GlossaryEntry, ScriptStore

EXPORT_MEDIA_TYPES = {
    "txt": "text/plain; charset=utf-8",
    "jsonl": "application/jsonl; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}

log = structlog.get_logger(__name__)


@contextmanager
def _database() -> Iterator[None]:
    try:
        yield
    except (SQLAlchemyError, OSError) as exc:
        log.error("script_query_failed", error=type(exc).__name__, detail=str(exc)[:300])
        raise DatabaseUnavailable("The database cannot be reached.") from exc


class Scripts:
    def __init__(self, store: ScriptStore, languages: LanguageCatalog) -> None:
        self.store = store
        self.languages = languages

    async def put_glossary(
        self, script_id: str, owner: Owner, entries: list[dict[str, str]]
    ) -> dict[str, Any]:
        """Replace the glossary; its entries' languages in standard form."""
        checked = []
        for i, entry in enumerate(entries):
            for name in ("source", "target"):
                if not entry[name].strip():
                    raise InvalidRequest(
                        f"entries.{i}.{name}: must not be empty or only whitespace."
                    )
            tag = self.languages.resolve(entry["target_lang"], field=f"entries.{i}.target_lang")
            checked.append(GlossaryEntry(entry["source"], entry["target"], tag))
        with _database():
            await self.store.put_glossary(script_id, owner, checked)
        return {"script_id": script_id, "entries": [entry.public() for entry in checked]}

    async def glossary(self, script_id: str, owner: Owner) -> dict[str, Any]:
        with _database():
            entries = await self.store.glossary(script_id, owner)
        return {"script_id": script_id, "entries": [entry.public() for entry in entries]}

    async def info(self, script_id: str, owner: Owner) -> dict[str, Any]:
        with _database():
            info = await self.store.info(script_id, owner)
        if info is None:
            raise NotFound("No such script.")
        return info

    async def list(
        self, owner: Owner, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the owner's scripts, the last active first, and the next page's cursor."""
        after = decode_cursor(cursor) if cursor is not None else None
        with _database():
            items = await self.store.page(owner, limit + 1, after)
        if len(items) <= limit:
            return items, None
        items = items[:limit]
        return items, encode_cursor(items[-1]["updated_at"], items[-1]["script_id"])

    async def export(self, script_id: str, owner: Owner, target_lang: str, format: str) -> str:
        """The succeeded segments in this language, in order, as a file of this format."""
        tag = self.languages.resolve(target_lang, field="target_lang")
        with _database():
            segments = await self.store.segments(script_id, owner, tag)
            if not segments and await self.store.info(script_id, owner) is None:
                raise NotFound("No such script.")
        if format == "txt":
            return "".join(record["translation"] + "\n" for record, _ in segments)
        if format == "jsonl":
            return "".join(orjson.dumps(record).decode() + "\n" for record, _ in segments)
        cues = [(cue, record["translation"]) for record, cue in segments if cue is not None]
        if not cues:
            raise InvalidRequest(
                f"format: {format} needs a script made by /v1/subtitles; this one has no "
                f"subtitle cues in {tag}."
            )
        return render("srt" if format == "srt" else "vtt", cues)
