"""A script's own renderings of its recurring terms, kept for its next segments.

Context alone does not keep a small model consistent: given the previous segments, it still
drops or rewords a term it translated the same way three times before. So, from the script's
earlier segments (source and translation), this finds the terms of the current segment that
recur without a glossary entry, and how the script has rendered them so far. A rendering is
kept only when the evidence is unambiguous:

- the term is in at least three distinct earlier segments, not in all of them, and no other
  term of the segment is in exactly the same ones (two names always said together cannot be
  told apart);
- one target phrase is in the translation of every one of those segments and in no
  translation of the others;
- that phrase is not part of a longer phrase shared by those translations whose extra words
  are rare elsewhere ("municipal" alone, when "conseil" is also used in another sense).

The pairs then go into the prompt beside the glossary's and, on the embedded model, are steered
towards like them. A user who wants another rendering sets a glossary entry, which always wins.

Pure text logic: the service reads the history and passes it in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache

# Source words keep inner apostrophes and hyphens ("o'clock"); target words are split there,
# so that an elided article does not hide a term ("l'évacuation" is "l" + "évacuation").
_SOURCE_WORD = re.compile(r"\w+(?:[-'’]\w+)*")
_TARGET_WORD = re.compile(r"\w+")
# At most this many words in a term, on either side.
MAX_WORDS = 3
# A term must have been seen in this many distinct earlier segments with the same rendering:
# twice is too often a coincidence (the model repeats a phrase of one segment into the next).
MIN_SEEN = 3
# Renderings put into one segment's prompt, the best supported first.
MAX_TERMS = 4
# The earlier segments read for a segment: enough for a long lecture's recurring terms.
HISTORY_SEGMENTS = 200
# Only the start of a long earlier segment is read: terms recur in sentences, not in pages.
_HISTORY_CHARS = 2_000

Gram = tuple[str, ...]

# A term does not start or end with one of these (English, the usual source of transcripts;
# in other languages a single word needs four letters, and the target-side checks catch most
# of the rest). Without them, "and" rendered "et" every time would be steered in like a term.
_FUNCTION_WORDS = frozenset(
    """a an the and or but nor so yet if then than that this these those there here of in on
    at to for from by with without about into onto over under after before as is are was were
    be been being am do does did have has had will would shall should can could may might must
    not no it its it's he she they we you i me him her them us my your his our their what which
    who whom whose when where why how all any each every some such very also just only more
    most less least other another same own both either neither one""".split()
)


def _placed(words: Sequence[str]) -> list[tuple[int, Gram]]:
    """Every run of one to MAX_WORDS words, with the position of its first word."""
    return [
        (i, tuple(words[i : i + n]))
        for n in range(1, MAX_WORDS + 1)
        for i in range(len(words) - n + 1)
    ]


def _grams(words: Sequence[str]) -> set[Gram]:
    return {gram for _, gram in _placed(words)}


@dataclass(frozen=True, slots=True)
class _Words:
    """A text's words, lower-cased, with where each is in the text."""

    text: str
    words: list[str]
    spans: list[tuple[int, int]]

    @classmethod
    def of(cls, text: str, pattern: re.Pattern[str]) -> _Words:
        found = list(pattern.finditer(text))
        # lower(), not casefold(): "Straße" stays one word of the same length.
        return cls(text, [m.group(0).lower() for m in found], [m.span() for m in found])

    def surface(self, gram: Gram) -> str | None:
        """The gram as the text writes it (case, apostrophes, hyphens)."""
        n = len(gram)
        for i in range(len(self.words) - n + 1):
            if tuple(self.words[i : i + n]) == gram:
                return self.text[self.spans[i][0] : self.spans[i + n - 1][1]]
        return None


class _Terms:
    """Glossary terms, as word tuples, asked whether a gram of up to MAX_WORDS words overlaps
    one (is inside it, or holds it) in set lookups: a glossary has up to 500 entries."""

    def __init__(self, terms: Iterable[Gram]) -> None:
        self.whole: set[Gram] = set()
        self.parts: set[Gram] = set()
        for term in terms:
            if term:
                self.whole.add(term)
                self.parts |= _grams(term)

    def overlap(self, gram: Gram) -> bool:
        return gram in self.parts or not self.whole.isdisjoint(_grams(gram))


def _contains(whole: Gram, part: Gram) -> bool:
    n = len(part)
    return any(whole[i : i + n] == part for i in range(len(whole) - n + 1))


def learned_terms(
    history: Iterable[tuple[str, str]], text: str, known: Iterable[tuple[str, str]] = ()
) -> list[tuple[str, str]]:
    """(source term, target rendering) pairs, as the texts write them, for the terms of `text`
    that the script's earlier segments (`history`: source, translation, oldest first) always
    rendered one way. `known`: the glossary's (source, target) terms for this language; a term
    overlapping one of its source terms is left to it, and so is a rendering overlapping one of
    its target terms."""
    # A segment said again (a refrain, a repeated subtitle) is one piece of evidence.
    distinct: dict[str, tuple[str, str]] = {}
    for source, translation in history:
        if source.strip() and translation.strip():
            distinct[source.strip().lower()] = (
                source[:_HISTORY_CHARS],
                translation[:_HISTORY_CHARS],
            )
    pairs = [(_Words.of(s, _SOURCE_WORD), _Words.of(t, _TARGET_WORD)) for s, t in distinct.values()]
    if len(pairs) <= MIN_SEEN:
        return []
    # Which earlier segments hold each word, so that a gram is looked up only where all its
    # words are: this runs before every segment's first token.
    index: dict[str, set[int]] = {}
    for i, (source_words, _) in enumerate(pairs):
        for word in source_words.words:
            index.setdefault(word, set()).add(i)
    current = _Words.of(text, _SOURCE_WORD)
    placed = _placed(current.words)
    having: dict[Gram, frozenset[int]] = {}
    for _, gram in placed:
        if gram not in having:
            ids = set.intersection(*(index.get(word, set()) for word in gram))
            if len(gram) > 1:
                ids = {i for i in ids if _contains(tuple(pairs[i][0].words), gram)}
            having[gram] = frozenset(ids)
    if not any(MIN_SEEN <= len(ids) < len(pairs) for ids in having.values()):
        return []
    # A segment's target grams are made when first asked for: most are never needed.
    target_grams = cache(lambda i: _grams(pairs[i][1].words))
    target_words = [set(t.words) for _, t in pairs]
    covered = _Terms(tuple(_Words.of(s, _SOURCE_WORD).words) for s, _ in known)
    claimed = _Terms(tuple(_Words.of(t, _TARGET_WORD).words) for _, t in known)

    found: list[tuple[int, int, str, str]] = []
    used: set[int] = set()  # word positions of the text already given to a term
    rendered: list[Gram] = []
    # Longer terms first, so that "city council" is kept rather than "council"; then in the
    # order of the text, so that the result does not depend on anything but the inputs.
    for start, gram in sorted(placed, key=lambda p: (-len(p[1]), p[0])):
        positions = set(range(start, start + len(gram)))
        seen = having[gram]
        if positions & used or len(seen) < MIN_SEEN or len(seen) == len(pairs):
            continue
        if gram[0] in _FUNCTION_WORDS or gram[-1] in _FUNCTION_WORDS:
            continue
        if len(gram) == 1 and len(gram[0]) < 4 and current.surface(gram) == gram[0]:
            continue  # a short lower-case word; "EU" or "CO2" as written pass
        if covered.overlap(gram):
            used |= positions  # left to the glossary, and so are its parts
            continue
        # Another term of the text in exactly the same segments: which rendering is whose?
        if any(
            having[other] == seen and not set(range(i, i + len(other))) & positions
            for i, other in placed
        ):
            continue
        rendering = _rendering(seen, target_grams, target_words, claimed, rendered)
        if rendering is None:
            continue
        term = current.surface(gram)
        written = pairs[max(seen)][1].surface(rendering)
        if term and written:
            used |= positions
            rendered.append(rendering)
            found.append((-len(seen), start, term, written))
    found.sort()
    return [(term, written) for _, _, term, written in found[:MAX_TERMS]]


def _rendering(
    seen: frozenset[int],
    target_grams: Callable[[int], set[Gram]],
    target_words: Sequence[set[str]],
    claimed: _Terms,
    rendered: Sequence[Gram],
) -> Gram | None:
    """The one phrase that the translations of the `seen` segments share and the others lack."""
    shared = set.intersection(*(target_grams(i) for i in seen))
    others = [words for i, words in enumerate(target_words) if i not in seen]

    def elsewhere(word: str) -> int:
        return sum(word in words for words in others)

    # Its first and last words are in no other translation: "conseil municipal", not
    # "le conseil municipal" (and not "le" alone).
    candidates = [
        g
        for g in shared
        if not elsewhere(g[0])
        and not elsewhere(g[-1])
        and not g[-1].isdigit()
        and not any(_contains(g, r) or _contains(r, g) for r in rendered)
        and not claimed.overlap(g)
    ]
    if not candidates:
        return None
    best = max(candidates, key=lambda g: (len(g), g))
    # Every candidate must be part of that one phrase: two unrelated phrases shared by the same
    # translations ("Busan" and "conseil municipal") leave it open which one is the term's.
    if not all(_contains(best, g) for g in candidates):
        return None
    # A longer shared phrase around it whose extra words are rare elsewhere means that `best`
    # is only a fragment of the term's rendering. Articles are frequent, and elided ones
    # ("l'", "d'") are one or two letters.
    function_word = max(2, len(others) // 4)
    for g in shared:
        if len(g) > len(best) and _contains(g, best):
            extra = [w for w in g if w not in best and len(w) > 2]
            if any(elsewhere(w) < function_word for w in extra):
                return None
    return best
