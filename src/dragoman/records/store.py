"""Where records live: migrations at start, one batching writer, short-lived reads.

Writes never happen per piece and never hold a session across a stream: a request hands its
record to the writer twice (created, finished) and the writer commits whatever has queued up
in one transaction. One writer also means SQLite never sees two writers fight over its lock,
however many streams are open.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import orjson
import structlog
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Table, bindparam, event, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from dragoman.errors import Interrupted, InvalidRequest
from dragoman.records.models import TranslationRow
from dragoman.records.record import Record, public_from_row

log = structlog.get_logger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
# A read's owner: a key id (that key's records only) or ANYONE (keys off: every record).
Owner = str | None
ANYONE: Owner = None
_BATCH_MAX = 512
_table: Table = TranslationRow.__table__  # type: ignore[assignment]
# Built once: SQLAlchemy then finds their compiled form in its cache without re-deriving a
# cache key from a fresh statement on every write.
_INSERT = insert(_table)
_UPDATE = (
    update(_table)
    .where(_table.c.id == bindparam("b_id"))
    .values({c.name: bindparam(c.name) for c in _table.c if c.name != "id"})
)


def make_engine(url: str) -> AsyncEngine:
    parsed = make_url(url)
    is_sqlite = parsed.get_backend_name() == "sqlite"
    if is_sqlite and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 30} if is_sqlite else {})
    if is_sqlite:

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL: readers never block the writer; busy_timeout: wait for a lock, don't fail.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    return engine


def _upgrade(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def encode_cursor(created_at: str, record_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([created_at, record_id])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, record_id = orjson.loads(raw)
        if isinstance(created_at, str) and isinstance(record_id, str):
            return created_at, record_id
    except (ValueError, TypeError, orjson.JSONDecodeError):
        pass
    raise InvalidRequest("cursor: not a cursor this server gave out.")


class RecordStore:
    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self._queue: asyncio.Queue[tuple[str, Record, asyncio.Future[None]]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        # The writer's own connection, kept open between batches: checking one out of the pool
        # and resetting it on return cost more than the write itself.
        self._conn: AsyncConnection | None = None
        # True while the last write failed: requests then wait for their record's creation.
        self.failing = False

    async def prepare(self) -> int:
        """Apply migrations and finish the records a dead process left open. Returns that count."""
        await self.migrate()
        return await self.finish_orphans()

    async def migrate(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(_upgrade)

    async def finish_orphans(self) -> int:
        """Only for a server starting up: any `streaming` record then belongs to a dead process."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(_table)
                .where(_table.c.status == "streaming")
                .values(
                    status="failed",
                    error_code=Interrupted.code,
                    error_message=Interrupted.default_message,
                )
            )
        count = int(result.rowcount or 0)
        if count:
            log.warning("interrupted_records_finished", count=count)
        return count

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name="dragoman-record-writer")

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(select(1))
        except (SQLAlchemyError, OSError) as exc:
            log.warning("database_ping_failed", error=type(exc).__name__)
            return False
        return True

    # Writes: enqueue and return a future; the caller awaits it only where the contract needs it.

    def create(self, record: Record) -> asyncio.Future[None]:
        return self._enqueue("create", record)

    def finish(self, record: Record) -> asyncio.Future[None]:
        return self._enqueue("finish", record)

    def _enqueue(self, op: str, record: Record) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((op, record, future))
        return future

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < _BATCH_MAX and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write(batch)
            for _ in batch:
                self._queue.task_done()

    async def _write(self, batch: list[tuple[str, Record, asyncio.Future[None]]]) -> None:
        error = await self._commit(batch)
        if error is not None and len(batch) > 1:
            # One bad record must not sink the others that shared its transaction.
            for item in batch:
                await self._write([item])
            return
        for _, _, future in batch:
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
        # A future nobody awaits (the client left) must not warn about an unretrieved error.
        for _, _, future in batch:
            if future.done() and not future.cancelled():
                future.exception()

    async def _commit(
        self, batch: list[tuple[str, Record, asyncio.Future[None]]]
    ) -> Exception | None:
        # A row is written as the record is at commit time, so a record created and finished
        # within one batch needs its insert only.
        creates = [record.row() for op, record, _ in batch if op == "create"]
        created = {row["id"] for row in creates}
        finishes = [
            {"b_id": record.id, **record.row()}
            for op, record, _ in batch
            if op == "finish" and record.id not in created
        ]
        error: Exception | None = None
        try:
            if self._conn is None:
                self._conn = await self.engine.connect()
            async with self._conn.begin():
                if creates:
                    await self._conn.execute(_INSERT, creates)
                if finishes:
                    await self._conn.execute(_UPDATE, finishes)
        except Exception as exc:  # whatever it is, the writer must live on
            log.error("record_write_failed", error=type(exc).__name__, detail=str(exc)[:300])
            error = exc
            await self._drop_connection()
        self.failing = error is not None
        return error

    async def _drop_connection(self) -> None:
        """Next batch on a fresh connection: this one may be what failed."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except Exception as exc:
                log.warning("record_connection_close_failed", error=type(exc).__name__)

    async def aclose(self) -> None:
        # Let queued writes land before the engine goes.
        if self._writer is not None:
            try:
                await asyncio.wait_for(self._queue.join(), 30)
            except TimeoutError:
                log.error("record_writes_lost", pending=self._queue.qsize())
            self._writer.cancel()
            try:
                await self._writer
            except asyncio.CancelledError:
                pass
        await self._drop_connection()
        await self.engine.dispose()

    # Reads: one short connection each.

    async def get(self, record_id: str, *, owner: Owner = ANYONE) -> dict[str, Any] | None:
        if "\x00" in record_id:  # no stored id has one, and PostgreSQL refuses it in a query
            return None
        query = select(_table).where(_table.c.id == record_id)
        if owner is not ANYONE:
            query = query.where(_table.c.key_id == owner)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return public_from_row(row) if row is not None else None

    async def list(
        self,
        *,
        script_id: str | None,
        limit: int,
        cursor: str | None,
        owner: Owner = ANYONE,
    ) -> tuple[list[dict[str, Any]], str | None]:
        query = select(_table)
        if owner is not ANYONE:
            query = query.where(_table.c.key_id == owner)
        if script_id is not None:
            query = query.where(_table.c.script_id == script_id)
        if cursor is not None:
            created_at, record_id = decode_cursor(cursor)
            query = query.where(
                (_table.c.created_at < created_at)
                | ((_table.c.created_at == created_at) & (_table.c.id < record_id))
            )
        query = query.order_by(_table.c.created_at.desc(), _table.c.id.desc()).limit(limit + 1)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        items = [public_from_row(r) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = items[-1]
            next_cursor = encode_cursor(last["created_at"], last["id"])
        return items, next_cursor
