"""Scripts: the records that share a `script_id`, read and written for context, glossaries,
subtitle cues and export.

A script belongs to the key that made it: every query is scoped by the owner (a key id, or
`ANYONE` when keys are off). Segments are numbered per script, target language and key by the
database itself (a unique index and a retry), so that workers and replicas never hand out the
same index twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import ColumnElement, Table, and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from dragoman.errors import AlreadyTranslated
from dragoman.records.models import GlossaryRow, SubtitleCueRow, TranslationRow
from dragoman.records.record import Record, now_rfc3339, public_from_row
from dragoman.records.store import ANYONE, Owner

log = structlog.get_logger(__name__)

_records: Table = TranslationRow.__table__  # type: ignore[assignment]
_glossaries: Table = GlossaryRow.__table__  # type: ignore[assignment]
_cues: Table = SubtitleCueRow.__table__  # type: ignore[assignment]
# Racing inserts: each lost race costs one retry; more than this many in a row is not a race.
_INDEX_ATTEMPTS = 20


@dataclass(frozen=True, slots=True)
class GlossaryEntry:
    source: str
    target: str
    target_lang: str

    def public(self) -> dict[str, str]:
        return {"source": self.source, "target": self.target, "target_lang": self.target_lang}


@dataclass(frozen=True, slots=True)
class Cue:
    """A subtitle cue's place in its file: 1-based position and times in milliseconds."""

    index: int
    start_ms: int
    end_ms: int


def _owner_value(owner: Owner) -> str:
    return owner or ""  # ANYONE (keys off) is None


def _segment_scope(script_id: str, target_lang: str, key_id: str | None) -> ColumnElement[bool]:
    c = _records.c
    key = c.key_id.is_(None) if key_id is None else c.key_id == key_id
    return and_(c.script_id == script_id, c.target_lang == target_lang, key)


def _script_scope(script_id: str, owner: Owner) -> ColumnElement[bool]:
    c = _records.c
    if owner is ANYONE:
        return c.script_id == script_id
    return and_(c.script_id == script_id, c.key_id == owner)


class ScriptStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create_segment(
        self, record: Record, cue: Cue | None = None, index: int | None = None
    ) -> None:
        """Insert a segment's record (status `streaming`) with the next free `segment_index`
        of its script, target language and key, or with `index` (a live session numbers its
        own: `AlreadyTranslated` when that index is taken); set the index on `record`."""
        assert record.script_id is not None
        c = _records.c
        values = record.row()
        if index is None:
            scope = _segment_scope(record.script_id, record.target_lang, record.key_id)
            values["segment_index"] = (
                select(func.coalesce(func.max(c.segment_index) + 1, 0))
                .where(scope)
                .scalar_subquery()
            )
        else:
            values["segment_index"] = index
        for attempt in range(_INDEX_ATTEMPTS):
            try:
                async with self.engine.begin() as conn:
                    # One statement computes and takes the index: on SQLite it holds the write
                    # lock throughout; elsewhere a concurrent taker trips the unique index.
                    await conn.execute(insert(_records).values(values))
                    taken = (
                        await conn.execute(select(c.segment_index).where(c.id == record.id))
                    ).scalar_one()
                    if cue is not None:
                        await conn.execute(
                            insert(_cues).values(
                                translation_id=record.id,
                                cue_index=cue.index,
                                start_ms=cue.start_ms,
                                end_ms=cue.end_ms,
                            )
                        )
            except IntegrityError as exc:
                if index is not None:
                    raise AlreadyTranslated() from exc
                if attempt == _INDEX_ATTEMPTS - 1:
                    raise
                log.info("segment_index_retry", attempt=attempt, error=type(exc).__name__)
                continue
            record.segment_index = int(taken)
            return

    async def release_segment(self, record_id: str) -> None:
        """Take a failed segment's record out of its script's order (it stays a record of the
        script): its index is free for the translation that replaces it."""
        c = _records.c
        async with self.engine.begin() as conn:
            await conn.execute(
                update(_records)
                .where(c.id == record_id, c.status != "succeeded")
                .values(segment_index=None)
            )

    async def context(
        self, script_id: str, target_lang: str, key_id: str | None, count: int
    ) -> list[tuple[str, str]]:
        """The last `count` succeeded segments (source, translation), oldest first."""
        if count <= 0:
            return []
        c = _records.c
        query = (
            select(c.text, c.translation)
            .where(
                _segment_scope(script_id, target_lang, key_id),
                c.status == "succeeded",
                c.segment_index.is_not(None),
            )
            .order_by(c.segment_index.desc())
            .limit(count)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [(row.text, row.translation) for row in reversed(rows)]

    async def glossary(self, script_id: str, owner: Owner) -> list[GlossaryEntry]:
        g = _glossaries.c
        query = select(g.entries).where(g.owner == _owner_value(owner), g.script_id == script_id)
        async with self.engine.connect() as conn:
            entries: list[dict[str, Any]] | None = (await conn.execute(query)).scalar()
        return [GlossaryEntry(**entry) for entry in entries or []]

    async def put_glossary(
        self, script_id: str, owner: Owner, entries: list[GlossaryEntry]
    ) -> None:
        g = _glossaries.c
        who = _owner_value(owner)
        async with self.engine.begin() as conn:
            await conn.execute(delete(_glossaries).where(g.owner == who, g.script_id == script_id))
            if entries:
                await conn.execute(
                    insert(_glossaries).values(
                        owner=who,
                        script_id=script_id,
                        entries=[entry.public() for entry in entries],
                        updated_at=now_rfc3339(),
                    )
                )

    async def info(self, script_id: str, owner: Owner) -> dict[str, Any] | None:
        """The script's summary, or None when it has no record."""
        c = _records.c
        scope = _script_scope(script_id, owner)
        summary = select(func.count(), func.min(c.created_at), func.max(c.created_at)).where(scope)
        langs = select(c.target_lang).where(scope).distinct().order_by(c.target_lang)
        async with self.engine.connect() as conn:
            count, created_at, updated_at = (await conn.execute(summary)).one()
            if not count:
                return None
            target_langs = list((await conn.execute(langs)).scalars())
        return {
            "script_id": script_id,
            "segments": int(count),
            "target_langs": target_langs,
            "created_at": created_at,
            "updated_at": updated_at,
        }

    async def page(
        self, owner: Owner, limit: int, after: tuple[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Summaries of the owner's scripts (as `info` gives them), the last active first (by
        their newest record, then id), starting after `(updated_at, script_id)`; at most
        `limit`."""
        c = _records.c
        updated_at = func.max(c.created_at)
        query = select(c.script_id, func.count(), func.min(c.created_at), updated_at).where(
            c.script_id.is_not(None)
        )
        if owner is not ANYONE:
            query = query.where(c.key_id == owner)
        query = query.group_by(c.script_id)
        if after is not None:
            last_updated, last_id = after
            query = query.having(
                or_(
                    updated_at < last_updated,
                    and_(updated_at == last_updated, c.script_id < last_id),
                )
            )
        query = query.order_by(updated_at.desc(), c.script_id.desc()).limit(limit)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            ids = [row[0] for row in rows]
            langs: dict[str, list[str]] = {script_id: [] for script_id in ids}
            if ids:
                pairs = (
                    select(c.script_id, c.target_lang)
                    .where(c.script_id.in_(ids))
                    .distinct()
                    .order_by(c.script_id, c.target_lang)
                )
                if owner is not ANYONE:
                    pairs = pairs.where(c.key_id == owner)
                for script_id, target_lang in (await conn.execute(pairs)).all():
                    langs[script_id].append(target_lang)
        return [
            {
                "script_id": script_id,
                "segments": int(count),
                "target_langs": langs[script_id],
                "created_at": created_at,
                "updated_at": updated,
            }
            for script_id, count, created_at, updated in rows
        ]

    async def segments(
        self, script_id: str, owner: Owner, target_lang: str
    ) -> list[tuple[dict[str, Any], Cue | None]]:
        """The succeeded segments in this target language, in order, each with its subtitle
        cue when it came from a subtitle file."""
        c, q = _records.c, _cues.c
        query = (
            select(_records, q.cue_index, q.start_ms, q.end_ms)
            .outerjoin(_cues, q.translation_id == c.id)
            .where(
                _script_scope(script_id, owner),
                c.target_lang == target_lang,
                c.status == "succeeded",
                c.segment_index.is_not(None),
            )
            .order_by(c.segment_index, c.created_at, c.id)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [
            (
                public_from_row(row),
                None
                if row["cue_index"] is None
                else Cue(row["cue_index"], row["start_ms"], row["end_ms"]),
            )
            for row in rows
        ]
