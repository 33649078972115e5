"""A script's own renderings of its recurring terms, kept for its next segments.

Context alone does not keep a small model consistent: given the previous segments, it still
drops or rewords a term it translated the same way three times before. So, from the script's
earlier segments (source and translation), this finds the terms of the current segment that
recur without a glossary entry, and how the script has rendered them so far. A rendering is
kept only when the evidence is unambiguous: a target phrase that is in the translation of every
earlier segment containing the term (at least three) and in no translation of the segments
without it (so a term found in every earlier segment teaches nothing). The pairs then go into
the prompt beside the glossary's and, on the embedded model, are steered towards like them. A
user who wants another rendering sets a glossary entry, which always wins.

Pure text logic: the service reads the history and passes it in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

# Words, with inner apostrophes and hyphens split off on the target side ("l'évacuation" is
# "l" + "évacuation"), so that an elided article does not hide a term.
_SOURCE_WORD = re.compile(r"\w+(?:[-'’]\w+)*")
_TARGET_WORD = re.compile(r"\w+")
# At most this many words in a term, on either side.
MAX_WORDS = 3
# A term must have been seen this many times before with the same rendering: twice is too
# often a coincidence (the model repeats a phrase of the previous segment into the next).
MIN_SEEN = 3
# Renderings put into one segment's prompt, the best supported first.
MAX_TERMS = 4
# The earlier segments read for a segment: enough for a long lecture's recurring terms.
HISTORY_SEGMENTS = 200


def _ngrams(words: Sequence[str]) -> set[tuple[str, ...]]:
    return {
        tuple(words[i : i + n]) for n in range(1, MAX_WORDS + 1) for i in range(len(words) - n + 1)
    }


def _source_words(text: str) -> list[str]:
    return [w.casefold() for w in _SOURCE_WORD.findall(text)]


def _target_words(text: str) -> list[str]:
    # Languages without spaces (Korean particles, Japanese) glue words to their endings; a
    # word is still what \w+ finds, so a rendering there is the exact run of characters.
    return [w.casefold() for w in _TARGET_WORD.findall(text)]


def _surface(words: Sequence[str], text: str) -> str | None:
    """The words as `text` writes them (case, apostrophes, hyphens), if it has them."""
    pattern = r"(?<!\w)" + r"\W+".join(re.escape(w) for w in words) + r"(?!\w)"
    match = re.search(pattern, text, re.IGNORECASE)
    return match.group(0) if match else None


def _inside(part: str, whole: str) -> bool:
    """Whether the words of `part` are words of `whole`, in a row."""
    return f" {part} " in f" {whole} "


def _common(segments: Sequence[set[str]]) -> set[str]:
    """Words in more than half of the segments: articles, prepositions, auxiliaries. A term
    does not start or end with one of them."""
    counts: dict[str, int] = {}
    for words in segments:
        for word in words:
            counts[word] = counts.get(word, 0) + 1
    return {word for word, n in counts.items() if 2 * n > len(segments)}


def learned_terms(
    history: Iterable[tuple[str, str]], text: str, known: Iterable[tuple[str, str]] = ()
) -> list[tuple[str, str]]:
    """(source term, target rendering) pairs for the terms of `text` that the script's earlier
    segments (`history`: source, translation, oldest first) always rendered one way. `known`:
    the glossary's (source, target) terms; a term overlapping one of its source terms is left
    to it, and a rendering overlapping one of its target terms belongs to that entry."""
    history = [(s, t) for s, t in history if s and t]
    known = list(known)
    pairs = [(_source_words(s), _target_words(t)) for s, t in history]
    if len(pairs) < MIN_SEEN + 1:
        return []
    source_grams = [_ngrams(words) for words, _ in pairs]
    target_grams = [_ngrams(words) for _, words in pairs]
    # A topic's own word may be in many of a lecture's sentences ("tide"), so only a word in
    # more than half of them is common.
    common = _common([set(words) for words, _ in pairs])
    target_sets = [set(words) for _, words in pairs]
    covered = [" ".join(_source_words(source)) for source, _ in known]
    claimed = [" ".join(_target_words(target)) for _, target in known]

    found: list[tuple[int, str, str]] = []
    rendered: set[tuple[str, ...]] = set()
    taken: list[str] = []
    # Longer terms first, so that "city council" is kept rather than "council".
    for gram in sorted(_ngrams(_source_words(text)), key=len, reverse=True):
        phrase = " ".join(gram)
        # A single short word ("and", "for") is too often a function word to be a term.
        if gram[0] in common or gram[-1] in common or len(phrase) < 4:
            continue
        if any(_inside(phrase, term) for term in taken):
            continue
        if any(_inside(phrase, term) or _inside(term, phrase) for term in covered):
            # Left to the glossary, and so are its parts ("city" of "city council").
            taken.append(phrase)
            continue
        having = [i for i, grams in enumerate(source_grams) if gram in grams]
        if len(having) < MIN_SEEN or len(having) == len(pairs):
            continue
        shared = set.intersection(*(target_grams[i] for i in having))
        # A rendering starts and ends with words that no other segment's translation has:
        # "conseil municipal", not "le conseil municipal" (and not "le" alone).
        elsewhere = set().union(*(target_sets[i] for i in range(len(pairs)) if i not in having))
        candidates = [
            g
            for g in shared
            if g[0] not in elsewhere
            and g[-1] not in elsewhere
            and not g[-1].isdigit()
            and g not in rendered
            and not any(_inside(c, " ".join(g)) or _inside(" ".join(g), c) for c in claimed)
        ]
        if not candidates:
            continue
        # The longest rendering: "conseil municipal", not "conseil" alone.
        best = max(candidates, key=lambda g: (len(g), " ".join(g)))
        # Its parts are then taken: "council" alone does not get "municipal".
        rendered.update(_ngrams(best))
        taken.append(phrase)
        source = _surface(gram, text)
        target = _surface(best, history[having[-1]][1])
        if source and target:
            found.append((len(having), source, target))
    found.sort(key=lambda item: -item[0])
    return [(source, target) for _, source, target in found[:MAX_TERMS]]
