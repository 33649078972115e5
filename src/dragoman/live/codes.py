"""Join codes: what listeners type or scan to follow a live session.

Ten characters of an alphabet without look-alikes (no 0 O 1 I L U: Crockford's base32 less U,
30 symbols), about 49 random bits: a machine that guesses gets refused long before it finds
one (`guard.py`). Written in two groups of five for people ("K7M2Q-XH9RD"), and compared
without regard to case, spaces or dashes.
"""

from __future__ import annotations

import secrets

ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
LENGTH = 10
_ALLOWED = frozenset(ALPHABET)


def new_join_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def normalize(code: str) -> str | None:
    """The code as stored, or None when it cannot be one (wrong length or symbols)."""
    cleaned = "".join(code.split()).replace("-", "").upper()
    if len(cleaned) != LENGTH or not set(cleaned) <= _ALLOWED:
        return None
    return cleaned


def display(code: str) -> str:
    return f"{code[:5]}-{code[5:]}"
