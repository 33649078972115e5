"""Where live sessions and their segments are kept: the database, so that any replica can
find a session by its join code and take its next segment.

A segment's index is taken by one statement (`segments = segments + 1 ... RETURNING`), so two
replicas never hand out the same one, and a closed session takes none.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, and_, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dragoman.records.models import LiveSegmentRow, LiveSessionRow, TranslationRow
from dragoman.records.record import now_rfc3339

_sessions: Table = LiveSessionRow.__table__  # type: ignore[assignment]
_segments: Table = LiveSegmentRow.__table__  # type: ignore[assignment]
_records: Table = TranslationRow.__table__  # type: ignore[assignment]


@dataclass(slots=True)
class Session:
    id: str
    join_code: str
    script_id: str
    key_id: str | None
    title: str | None
    source_lang: str | None
    target_langs: list[str]
    status: str
    close_reason: str | None
    first_index: int
    segments: int
    open_index: int | None
    open_text: str | None
    created_at: str
    active_at: str
    closed_at: str | None

    @property
    def closed(self) -> bool:
        return self.status == "closed"


def _session(row: Any) -> Session:
    return Session(**{name: row[name] for name in Session.__slots__})


class SessionStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(
        self,
        *,
        join_code: str,
        script_id: str,
        key_id: str | None,
        title: str | None,
        source_lang: str | None,
        target_langs: list[str],
    ) -> Session:
        """A new open session; its segments continue the script's numbering."""
        now = now_rfc3339()
        c = _records.c
        key = c.key_id.is_(None) if key_id is None else c.key_id == key_id
        next_index = select(func.coalesce(func.max(c.segment_index) + 1, 0)).where(
            and_(c.script_id == script_id, key)
        )
        values = {
            "id": uuid.uuid4().hex,
            "join_code": join_code,
            "script_id": script_id,
            "key_id": key_id,
            "title": title,
            "source_lang": source_lang,
            "target_langs": target_langs,
            "status": "open",
            "close_reason": None,
            "segments": 0,
            "open_index": None,
            "open_text": None,
            "created_at": now,
            "active_at": now,
            "closed_at": None,
        }
        async with self.engine.begin() as conn:
            first = (await conn.execute(next_index)).scalar_one()
            values["first_index"] = int(first)
            await conn.execute(insert(_sessions).values(values))
        return _session(values)

    async def get(self, session_id: str) -> Session | None:
        return await self._one(_sessions.c.id == session_id)

    async def by_code(self, join_code: str) -> Session | None:
        return await self._one(_sessions.c.join_code == join_code)

    async def _one(self, where: Any) -> Session | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(_sessions).where(where))).mappings().first()
        return _session(row) if row is not None else None

    async def add_segment(self, session_id: str, text: str) -> int | None:
        """Take the session's next index for a final segment and keep its text; None when the
        session is closed (or gone). A segment spoken in parts keeps the index its first
        part took (`open_index`)."""
        now = now_rfc3339()
        async with self.engine.begin() as conn:
            index = await self._take(conn, session_id, now, keep_open=None)
            if index is not None:
                await conn.execute(
                    insert(_segments).values(
                        session_id=session_id, segment_index=index, text=text, created_at=now
                    )
                )
        return index

    async def update_open(self, session_id: str, text: str) -> int | None:
        """The latest guess of the segment being spoken: its index (taken by its first
        guess); None when the session is closed (or gone)."""
        async with self.engine.begin() as conn:
            return await self._take(conn, session_id, now_rfc3339(), keep_open=text)

    async def _take(
        self, conn: AsyncConnection, session_id: str, now: str, keep_open: str | None
    ) -> int | None:
        s = _sessions.c
        # Touching the row first locks it (PostgreSQL's row lock, SQLite's write lock) for
        # the rest of the transaction: two replicas never take the same index.
        row = (
            await conn.execute(
                update(_sessions)
                .where(s.id == session_id, s.status == "open")
                .values(active_at=now)
                .returning(s.open_index, s.first_index, s.segments)
            )
        ).first()
        if row is None:
            return None
        fresh = row.open_index is None
        index = int(row.first_index + row.segments if fresh else row.open_index)
        values: dict[str, Any] = {"segments": row.segments + (1 if fresh else 0)}
        if keep_open is None:
            values.update(open_index=None, open_text=None)
        else:
            values.update(open_index=index, open_text=keep_open)
        await conn.execute(update(_sessions).where(s.id == session_id).values(values))
        return index

    async def recent_segments(self, session_id: str, count: int) -> list[tuple[int, str]]:
        """The last `count` final segments (index, text), oldest first."""
        if count <= 0:
            return []
        g = _segments.c
        query = (
            select(g.segment_index, g.text)
            .where(g.session_id == session_id)
            .order_by(g.segment_index.desc())
            .limit(count)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [(int(row.segment_index), row.text) for row in reversed(rows)]

    async def close(self, session_id: str, reason: str) -> bool:
        """Close an open session; False when it was closed already."""
        s = _sessions.c
        now = now_rfc3339()
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(_sessions)
                .where(s.id == session_id, s.status == "open")
                .values(status="closed", close_reason=reason, closed_at=now)
            )
        return bool(result.rowcount)

    async def close_idle(self, active_before: str) -> list[str]:
        """Close the open sessions with no segment since `active_before`: their ids (each
        closed by this call, whichever replica asks at the same time)."""
        s = _sessions.c
        async with self.engine.begin() as conn:
            rows = await conn.execute(
                update(_sessions)
                .where(s.status == "open", s.active_at < active_before)
                .values(status="closed", close_reason="idle", closed_at=now_rfc3339())
                .returning(s.id)
            )
            return [row.id for row in rows]
