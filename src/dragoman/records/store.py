"""Where records live: migrations at start, one batching writer, short-lived reads.

Writes never happen per piece and never hold a session across a stream: a request hands its
record to the writer twice (created, finished) and the writer commits whatever has queued up
in one transaction. One writer also means SQLite never sees two writers fight over its lock,
however many streams are open.

Migrations run one process at a time (a PostgreSQL advisory lock, SQLite's write lock), so
that any number of replicas and workers may start together on a fresh or an old database.

While the database cannot be reached, the writer keeps its writes and tries them again, each
for up to `OUTAGE_WAIT_S` after it was handed over: an outage shorter than that delays the
ends of streams (and the starts of new ones) instead of failing them. A write given up fails
its future (`DatabaseUnavailable` for the caller); a given-up finish of a record whose creation
may have been committed is written later as `failed` (`database_unavailable`), so that no
record stays `streaming`.
"""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path
from typing import Any

import orjson
import structlog
from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    Table,
    bindparam,
    delete,
    event,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from dragoman.errors import DatabaseUnavailable, Interrupted, InvalidRequest
from dragoman.records import runners
from dragoman.records.models import RunnerRow, TranslationRow
from dragoman.records.record import Record, now_rfc3339, public_from_row

log = structlog.get_logger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
# A read's owner: a key id (that key's records only) or ANYONE (keys off: every record).
Owner = str | None
ANYONE: Owner = None
_BATCH_MAX = 512
# How long a write handed to the writer may wait for an unreachable database.
OUTAGE_WAIT_S = 10.0
# The key of the advisory lock that serialises migrations on PostgreSQL ("dragoman" in ASCII).
MIGRATION_LOCK_KEY = 0x647261676F6D616E
_table: Table = TranslationRow.__table__  # type: ignore[assignment]
_runners: Table = RunnerRow.__table__  # type: ignore[assignment]
# Built once: SQLAlchemy then finds their compiled form in its cache without re-deriving a
# cache key from a fresh statement on every write.
_INSERT = insert(_table)
_UPDATE = (
    update(_table)
    .where(_table.c.id == bindparam("b_id"))
    .values({c.name: bindparam(c.name) for c in _table.c if c.name != "id"})
)
# A finish given up during an outage, written once the database answers again (if its record
# was created and is still `streaming`).
_LATE = (
    update(_table)
    .where(_table.c.id == bindparam("b_id"), _table.c.status == "streaming")
    .values({c.name: bindparam(c.name) for c in _table.c if c.name != "id"})
)


def _wal(cur: Any) -> None:
    """Switch a SQLite file to WAL. On a fresh file that other processes are opening at the
    same moment the switch can fail at once ("database is locked") instead of waiting on the
    busy timeout; it is tried again for up to the same 30 s (only at a connection's start)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:  # the driver's OperationalError, wrapped by the adapter
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


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
            cur.execute("PRAGMA busy_timeout=30000")
            _wal(cur)
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


class _Write:
    """One write handed to the writer: a record's creation or finish, or a runner's beat."""

    __slots__ = ("deadline", "future", "op", "record")

    def __init__(self, op: str, record: Record | None, deadline: float) -> None:
        self.op = op
        self.record = record
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.deadline = deadline


class RecordStore:
    def __init__(
        self,
        url: str,
        *,
        outage_wait_s: float = OUTAGE_WAIT_S,
        beat_s: float = runners.BEAT_S,
    ) -> None:
        self.engine = make_engine(url)
        self._outage_wait_s = outage_wait_s
        # This process's runner row is refreshed this often; gone runners are swept every 3.
        self._beat_s = beat_s
        self._queue: asyncio.Queue[_Write] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._beater: asyncio.Task[None] | None = None
        # The writer's own connection, kept open between batches: checking one out of the pool
        # and resetting it on return cost more than the write itself.
        self._conn: AsyncConnection | None = None
        # True while the last write failed: requests then wait for their record's creation.
        self.failing = False
        # This process's runner row: written with the first records and refreshed in the
        # writer's transactions (`runners.py`); gone runners swept every 3 beats (the first
        # sweep after that: a process starts by finishing orphans, `prepare`).
        self._next_beat = 0.0
        self._next_sweep = time.monotonic() + 3 * beat_s
        # Finishes given up during an outage, by record id: written when the database is back.
        self._late: dict[str, Record] = {}

    async def prepare(self) -> int:
        """Apply migrations and finish the records a dead process left open. Returns that count."""
        await self.migrate()
        return await self.finish_orphans()

    async def migrate(self) -> None:
        """Apply the migrations, holding a lock that makes other processes wait for them: on
        PostgreSQL a transaction-level advisory lock taken on the migrating connection (held
        until its commit), on SQLite the database's write lock (`BEGIN IMMEDIATE`). A process
        that waited finds the schema up to date and goes on."""
        async with self.engine.connect() as conn:
            dialect = conn.dialect.name
            if dialect == "postgresql":
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            elif dialect == "sqlite":
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
            await conn.run_sync(_upgrade)
            await conn.commit()

    async def finish_orphans(self) -> int:
        """Finish as `interrupted` the records left `streaming` by processes that are gone (see
        `runners.py`): safe while other processes write records, and at any start."""
        async with self.engine.begin() as conn:
            return await _finish_orphans(conn)

    def start(self) -> None:
        runners.store_opened()
        self._writer = asyncio.create_task(self._write_loop(), name="dragoman-record-writer")
        self._beater = asyncio.create_task(self._beat_loop(), name="dragoman-record-beat")

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

    def _enqueue(self, op: str, record: Record | None) -> asyncio.Future[None]:
        write = _Write(op, record, time.monotonic() + self._outage_wait_s)
        self._queue.put_nowait(write)
        return write.future

    async def _beat_loop(self) -> None:
        """An idle writer still refreshes this process's runner row (and sweeps orphans)."""
        while True:
            await asyncio.sleep(self._beat_s / 2)
            if time.monotonic() >= self._next_beat - self._beat_s / 10:
                self._enqueue("beat", None)

    async def _write_loop(self) -> None:
        pending: list[_Write] = []
        delay = 0.05
        while True:
            if not pending:
                pending.append(await self._queue.get())
            while len(pending) < _BATCH_MAX and not self._queue.empty():
                pending.append(self._queue.get_nowait())
            pending = await self._write(pending)
            if pending:  # the database cannot be reached: again in a moment
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            else:
                delay = 0.05

    async def _write(self, batch: list[_Write]) -> list[_Write]:
        """Commit `batch`; returns the writes to try again (the database cannot be reached and
        their time is not up)."""
        error = await self._commit(batch)
        if error is not None:
            if not await self._reachable():
                now = time.monotonic()
                self._settle([w for w in batch if w.deadline <= now], error)
                return [w for w in batch if w.deadline > now]
            # The database answers: what failed may have been this writer's connection (to a
            # server restarted since): once more, on a fresh one.
            error = await self._commit(batch)
        if error is None:
            self._settle(batch, None)
            if self._late:
                await self._write_late()
            return []
        if len(batch) > 1:
            # One bad record must not sink the others that shared its transaction.
            again: list[_Write] = []
            for write in batch:
                again += await self._write([write])
            return again
        self._settle(batch, error)
        return []

    def _settle(self, writes: list[_Write], error: Exception | None) -> None:
        for write in writes:
            future = write.future
            if error is not None and write.op == "finish" and write.record is not None:
                self._late[write.record.id] = write.record
            if not future.done():
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)
            # A future nobody awaits (the client left) must not warn about an unretrieved error.
            if future.done() and not future.cancelled():
                future.exception()
            self._queue.task_done()

    async def _reachable(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(select(1))
        except Exception:
            return False
        return True

    async def _commit(self, batch: list[_Write]) -> Exception | None:
        # A row is written as the record is at commit time, so a record created and finished
        # within one batch needs its insert only.
        creates = [w.record.row() for w in batch if w.op == "create" and w.record is not None]
        created = {row["id"] for row in creates}
        finishes = [
            {"b_id": w.record.id, **w.record.row()}
            for w in batch
            if w.op == "finish" and w.record is not None and w.record.id not in created
        ]
        error: Exception | None = None
        now = time.monotonic()
        beat = now >= self._next_beat or any(w.op == "beat" for w in batch)
        try:
            if self._conn is None:
                self._conn = await self.engine.connect()
            async with self._conn.begin():
                if beat:
                    await self._beat(self._conn, sweep=now >= self._next_sweep)
                if creates:
                    await self._conn.execute(_INSERT, creates)
                if finishes:
                    await self._conn.execute(_UPDATE, finishes)
        except Exception as exc:  # whatever it is, the writer must live on
            # Once per outage: the writes are tried again every second while it lasts.
            (log.debug if self.failing else log.error)(
                "record_write_failed", error=type(exc).__name__, detail=str(exc)[:300]
            )
            error = exc
            await self._drop_connection()
        else:
            if beat:
                self._next_beat = now + self._beat_s
                if now >= self._next_sweep:
                    self._next_sweep = now + 3 * self._beat_s
        self.failing = error is not None
        return error

    async def _beat(self, conn: AsyncConnection, *, sweep: bool) -> None:
        """This process's runner row, written or refreshed; and, now and then, the records of
        runners that are gone finished."""
        me = runners.current()
        seen = (
            await conn.execute(
                update(_runners).where(_runners.c.id == me.id).values(seen_at=time.time())
            )
        ).rowcount
        if not seen:
            await conn.execute(
                insert(_runners).values(
                    id=me.id, host=me.host, pid=me.pid, started=me.started, seen_at=time.time()
                )
            )
        if sweep:
            await _finish_orphans(conn)

    async def _write_late(self) -> None:
        """The finishes given up during an outage, as what their clients were told: failed,
        `database_unavailable` (only where the record exists and is still `streaming`)."""
        late, self._late = self._late, {}
        error = DatabaseUnavailable()
        rows = []
        for record in late.values():
            row = record.row()
            row.update(status="failed", error_code=error.code, error_message=error.message)
            rows.append({"b_id": record.id, **row})
        try:
            async with self.engine.begin() as conn:
                await conn.execute(_LATE, rows)
        except Exception as exc:
            log.error("late_record_write_failed", error=type(exc).__name__, count=len(rows))
            return
        log.warning("late_records_finished", count=len(rows))

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
        if self._beater is not None:
            self._beater.cancel()
            await asyncio.gather(self._beater, return_exceptions=True)
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
        if self._writer is not None and runners.store_closed():
            await self._forget_runner()
        await self.engine.dispose()

    async def _forget_runner(self) -> None:
        """The last store of this process closes: its runner row goes (a record it left
        `streaming` is then an orphan at once)."""
        try:
            async with self.engine.begin() as conn:
                await conn.execute(delete(_runners).where(_runners.c.id == runners.current_id()))
        except Exception as exc:
            log.warning("runner_row_not_deleted", error=type(exc).__name__)

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


async def _finish_orphans(conn: AsyncConnection) -> int:
    """Finish the `streaming` records whose runner is gone (`runners.py`); drop the rows of
    runners not seen for a day. Returns the count of records finished."""
    now = time.time()
    me = runners.current_id()
    live: list[str] = []
    dead: list[str] = []
    for row in (await conn.execute(select(_runners))).all():
        if row.id == me:
            continue
        if runners.alive(row.host, row.pid, row.started, row.seen_at, now):
            live.append(row.id)
        else:
            dead.append(row.id)
    (live if runners.this_process_writes() else dead).append(me)
    # Rows of runners that stopped cleanly are deleted by them; those of dead ones stay a while,
    # so that a record they left is known for an orphan at once, however young.
    await conn.execute(delete(_runners).where(_runners.c.seen_at < now - runners.FORGET_S))
    # A record with no runner row may be a starting runner's, written before its first beat.
    cutoff = now_rfc3339(now - runners.STALE_S)
    c = _table.c
    result = await conn.execute(
        update(_table)
        .where(
            c.status == "streaming",
            or_(
                c.runner.is_(None),
                c.runner.in_(dead),
                c.runner.not_in(live) & (c.created_at < cutoff),
            ),
        )
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
