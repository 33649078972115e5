"""What listeners are shown of a segment still being spoken: re-translation, stabilised.

Each guess of the recogniser is translated again whole (`Live` runs at most one such draft at a
time per language, always of the newest guess). What is shown of a draft drops its last
`mask` words, which are the ones most likely to change with the next guess (mask-k, as in
Arivazhagan et al., 2020); in languages written without spaces a word counts as two
characters. With agreement, it is further cut to what the drafts before it (the last few of
the segment) have in common with it, word by word from their start (local agreement, as in
Macháček et al., 2023, for streaming speech recognition): a word that several consecutive
drafts translated alike is likely to be in the final translation, which is made alone and
replaces what was shown. A text whose words a model keeps changing is held back, while a text
that every draft repeats (an echo, a stable model) costs only the time of those drafts. With
`keep_prefix`, what was shown is never taken back before the final translation: a draft that
does not begin with it is not shown (the text waits for the next draft that agrees, or for the
final); without it, a draft replaces what was shown.

All of this is text in, text out: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from dragoman.languages import base_language

# Languages written without spaces between words.
UNSPACED = frozenset({"ja", "zh", "th", "lo", "km", "my", "bo"})
# What a masked "word" is in them, in characters.
CHARS_PER_WORD = 2


def masked(translation: str, lang: str, mask: int) -> str:
    """An unfinished translation without its last `mask` words."""
    if mask <= 0:
        return translation
    if base_language(lang) in UNSPACED:
        cut = len(translation.rstrip()) - mask * CHARS_PER_WORD
        return translation[: max(cut, 0)].rstrip()
    words = translation.split()
    if len(words) <= mask:
        return ""
    kept = words[: len(words) - mask]
    # Up to the end of the last kept word, keeping the text's own spacing.
    end, start = 0, 0
    for word in kept:
        start = translation.index(word, end)
        end = start + len(word)
    return translation[:end]


def agreed(previous: str, draft: str, lang: str) -> str:
    """The start of `draft` that `previous` has too: whole words, or characters in languages
    written without spaces."""
    if base_language(lang) in UNSPACED:
        return draft[: _common_length(previous, draft)].rstrip()
    end = 0
    for a, b in zip(previous.split(), draft.split(), strict=False):
        if a != b:
            break
        end = draft.index(b, end) + len(b)
    return draft[:end]


def next_shown(
    shown: str,
    draft: str,
    lang: str,
    mask: int,
    keep_prefix: bool,
    earlier: Sequence[str] = (),
) -> str | None:
    """What to show after a new draft of the open segment, or None to leave it as it is.
    `earlier`: the drafts before it that it must agree with (none without agreement)."""
    candidate = masked(draft, lang, mask)
    for before in earlier:
        candidate = agreed(before, candidate, lang)
    if candidate == shown or not candidate:
        return None
    if candidate.startswith(shown):
        return candidate  # it agrees with what was shown, and says more
    if keep_prefix:
        return None  # it would take back what was shown: wait for one that agrees
    return candidate


def shown_after(
    shown: str,
    drafts: Sequence[str],
    lang: str,
    mask: int,
    keep_prefix: bool,
    agreement: int,
) -> str | None:
    """What to show after the newest of the open segment's `drafts` (oldest first), or None to
    leave it as it is. With agreement over `agreement` drafts (1 or less: none), the newest
    must agree with the ones just before it, and until the segment has that many drafts
    nothing is shown: a segment's first words are the least stable."""
    need = max(agreement - 1, 0)
    if len(drafts) <= need:
        return None
    earlier = drafts[len(drafts) - 1 - need : -1]
    return next_shown(shown, drafts[-1], lang, mask, keep_prefix, earlier)


def erased(before: str, after: str) -> int:
    """Characters of `before` taken back when `after` replaces it."""
    return len(before) - _common_length(before, after)


def _common_length(a: str, b: str) -> int:
    """How many characters `a` and `b` share from their start."""
    common = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        common += 1
    return common
