"""The loop guard: a translation that starts repeating itself is caught while it streams.

A small model, greedy, now and then falls into a loop ("Mon soeur a-t-elle-t-elle-t-elle…",
"3 더 3 더 3 더…") and would write it to the token limit. The guard watches the unit's tokens
for a run of copies of a unit of 1 to `MAX_PERIOD` tokens that contains a letter (digits and
punctuation repeat legitimately: "1,000,000", "..."). `allowed` copies in a row go through:
two, or as many as the source itself repeats a word group in a row ("very, very, very").
Tokens past the allowed copies are held back, not sent, while the run lasts: the copy after
the allowed ones is where a loop shows. If the run breaks, they go out as they are; if it
completes one more copy, it is a loop: the held tokens are dropped, and the scheduler decodes
again from before them with that copy's first token forbidden, or ends the unit there.

Only the tokens of a copy beyond the allowed ones wait, so a translation without repetition
streams exactly as before, token by token.
"""

from __future__ import annotations

import re
from collections.abc import Callable

MAX_PERIOD = 16  # tokens in the repeated unit
MAX_SOURCE_NGRAM = 4  # words, for the source's own repetition
# Decoding again after a loop, at most this many times per unit; then the unit ends there.
MAX_REDECODES = 2

_WORD = re.compile(r"\w+", re.UNICODE)


def source_repeats(text: str) -> int:
    """The most copies in a row of one word group (1 to `MAX_SOURCE_NGRAM` words) in `text`."""
    words = [w.casefold() for w in _WORD.findall(text)]
    best = 1
    for n in range(1, MAX_SOURCE_NGRAM + 1):
        for start in range(len(words) - n):
            copies = 1
            while words[start : start + n] == words[start + copies * n : start + (copies + 1) * n]:
                copies += 1
            best = max(best, copies)
    return best


class RepetitionGuard:
    """Tokens in, one at a time: how many of the newest to hold back, and loops."""

    __slots__ = ("_has_letter", "_runs", "allowed", "tokens")

    def __init__(self, allowed: int, has_letter: Callable[[list[int]], bool]) -> None:
        self.allowed = max(2, allowed)
        self._has_letter = has_letter  # whether these tokens' text has a letter
        self.tokens: list[int] = []
        # _runs[p]: how many tokens in a row, up to the newest, equal the token p before them.
        self._runs = [0] * (MAX_PERIOD + 1)

    def push(self, token: int) -> tuple[int, int]:
        """Add the newest token. Returns (held, period): the number of newest tokens to hold
        back, and the period of a loop they complete (0: none)."""
        tokens = self.tokens
        tokens.append(token)
        n = len(tokens)
        held = 0
        for p in range(1, MAX_PERIOD + 1):
            if n > p and tokens[n - 1] == tokens[n - 1 - p]:
                self._runs[p] += 1
            else:
                self._runs[p] = 0
            length = p + self._runs[p]  # tokens in the periodic run
            beyond = length - self.allowed * p
            if self._runs[p] == 0 or beyond <= 0:
                continue
            if not self._has_letter(tokens[n - p :]):
                continue
            if beyond >= p:
                return beyond, p
            held = max(held, beyond)
        return held, 0

    def drop(self, count: int) -> None:
        """Forget the newest `count` tokens (decoded again from before them)."""
        del self.tokens[len(self.tokens) - count :]
        self._recount()

    def _recount(self) -> None:
        tokens = self.tokens
        for p in range(1, MAX_PERIOD + 1):
            run = 0
            i = len(tokens) - 1
            while i - p >= 0 and tokens[i] == tokens[i - p]:
                run += 1
                i -= 1
            self._runs[p] = run
