"""API keys: created and revoked by `dragoman keys`, looked up on every request.

A key's secret is shown once, when it is created; the database keeps its SHA-256 only. A request
hashes the secret it presents and finds the key by that hash. Lookups are cached for a few
seconds per process, so a revoked key stops working everywhere within `CACHE_TTL_S`.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import asdict, dataclass
from typing import Any

from cachetools import TTLCache
from sqlalchemy import Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from dragoman.records.models import ApiKeyRow
from dragoman.records.record import now_rfc3339

_table: Table = ApiKeyRow.__table__  # type: ignore[assignment]
SECRET_PREFIX = "dgm_"
CACHE_TTL_S = 5.0


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    rpm: int | None
    cpm: int | None
    concurrency: int | None
    created_at: str
    revoked_at: str | None

    def public(self) -> dict[str, Any]:
        return asdict(self)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _key(row: Any) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"],
        rpm=row["rpm"],
        cpm=row["cpm"],
        concurrency=row["concurrency"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


class KeyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # Unknown secrets are cached too (as None): a client retrying a wrong key must not
        # cost a query each time.
        self._cache: TTLCache[str, ApiKey | None] = TTLCache(maxsize=10_000, ttl=CACHE_TTL_S)

    async def create(
        self,
        name: str,
        *,
        rpm: int | None = None,
        cpm: int | None = None,
        concurrency: int | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret (the only time the secret exists outside the client)."""
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            id="key_" + secrets.token_hex(8),
            name=name,
            rpm=rpm,
            cpm=cpm,
            concurrency=concurrency,
            created_at=now_rfc3339(),
            revoked_at=None,
        )
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(_table).values(**asdict(key), secret_hash=hash_secret(secret))
            )
        return key, secret

    async def list(self) -> list[ApiKey]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(_table).order_by(_table.c.created_at))).mappings()
            return [_key(row) for row in rows]

    async def get(self, key_id: str) -> ApiKey | None:
        """The live key with this id, or None (unknown or revoked)."""
        async with self.engine.connect() as conn:
            row = (
                (await conn.execute(select(_table).where(_table.c.id == key_id))).mappings().first()
            )
        return _key(row) if row is not None and row["revoked_at"] is None else None

    async def revoke(self, key_id: str) -> bool:
        """False when there is no such key; revoking a revoked key keeps its first date."""
        async with self.engine.begin() as conn:
            found = await conn.execute(select(_table.c.id).where(_table.c.id == key_id))
            if found.first() is None:
                return False
            await conn.execute(
                update(_table)
                .where((_table.c.id == key_id) & _table.c.revoked_at.is_(None))
                .values(revoked_at=now_rfc3339())
            )
        return True

    async def authenticate(self, secret: str) -> ApiKey | None:
        """The live key with this secret, or None (unknown or revoked)."""
        digest = hash_secret(secret)
        try:
            return self._cache[digest]
        except KeyError:
            pass
        async with self.engine.connect() as conn:
            row = (
                (await conn.execute(select(_table).where(_table.c.secret_hash == digest)))
                .mappings()
                .first()
            )
        key = _key(row) if row is not None and row["revoked_at"] is None else None
        self._cache[digest] = key
        return key
