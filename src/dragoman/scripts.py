"""What a script offers besides its segments: its glossary, its summary and its export."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError

from dragoman.errors import DatabaseUnavailable, InvalidRequest
from dragoman.languages import LanguageCatalog
from dragoman.records.scripts import GlossaryEntry, ScriptStore
from dragoman.records.store import Owner

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
