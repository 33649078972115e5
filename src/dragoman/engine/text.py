"""How the embedded base model is given a text: sentence by sentence, line breaks kept."""

from __future__ import annotations

import re

# Sentence ends: long lines are split so that the small model translates one sentence at a time.
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")
# Full stops that do not end a sentence: "Mr. Tanaka", "9 a.m. on Monday", "e.g. this".
_ABBREVIATION = re.compile(r"(?:\b(?:Mr|Mrs|Ms|Dr|Prof|St|Sr|Jr|vs|etc|No|Vol)|\b\w\.\w)\.$", re.I)
# Languages written without a space between sentences.
NO_SPACE_BETWEEN_SENTENCES = frozenset({"ja", "zh"})


def split_sentences(line: str) -> list[str]:
    sentences: list[str] = []
    for part in _SENTENCE_END.split(line.strip()):
        if not part:
            continue
        if sentences and (_ABBREVIATION.search(sentences[-1]) or part[0].islower()):
            sentences[-1] += " " + part
        else:
            sentences.append(part)
    return sentences


def split_segments(text: str) -> list[tuple[str, str]]:
    """The text as (sentence, separator-after-it) pairs; line breaks are kept as separators."""
    segments: list[tuple[str, str]] = []
    lines = text.split("\n")
    for i, line in enumerate(lines):
        sentences = split_sentences(line)
        for j, sentence in enumerate(sentences):
            last_in_line = j == len(sentences) - 1
            segments.append((sentence, "" if last_in_line else " "))
        if i < len(lines) - 1:
            if segments:
                segments[-1] = (segments[-1][0], segments[-1][1] + "\n")
            else:
                segments.append(("", "\n"))
    return segments
