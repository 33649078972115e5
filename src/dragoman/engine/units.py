"""A translation task as the engine runs it: a list of units, one generation each.

A base model is prompted sentence by sentence with few-shot examples of the language pair: the
examples are the unit's `prefix`, identical for every sentence of a pair, so the engine evaluates
them once and shares them between sequences. An instruct model (a GGUF with a chat template) is
prompted with the whole text as one chat.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dragoman.engine.example_bank import nearest
from dragoman.engine.examples import LABELS, few_shot_prefix
from dragoman.engine.text import NO_SPACE_BETWEEN_SENTENCES, split_segments


@dataclass(frozen=True, slots=True)
class Unit:
    prefix: str  # shared, evaluated once per distinct value ("" for none)
    prompt: str  # what follows the prefix; "" when the unit only emits `after`
    source: str  # the text being translated: its length in tokens bounds the output
    after: str  # emitted verbatim once the generation ends (sentence separators, line breaks)
    line: bool  # the answer ends at the first line break (few-shot completion)
    chat: bool = False  # the prompt is a rendered chat template: its special tokens are parsed
    # Glossary target terms the output should contain: decoding is steered towards them.
    terms: tuple[str, ...] = ()


def base_model_units(
    text: str,
    source: str,
    target: str,
    *,
    context: Sequence[tuple[str, str]] = (),
    glossary: Sequence[tuple[str, str]] = (),
    similar: bool = True,
) -> list[Unit]:
    """Per sentence: the pair's shared examples, then (in the sentence's own part of the
    prompt) the glossary's terms, the bank's two examples nearest to the sentence and the
    script's previous segments, each as one more example, the most relevant last."""
    src, tgt = LABELS[source], LABELS[target]
    prefix = few_shot_prefix(source, target)
    space = "" if target in NO_SPACE_BETWEEN_SENTENCES else " "
    fixed = [*glossary, *context]
    units = []
    for sentence, separator in split_segments(text):
        after = separator.replace(" ", space) if sentence else separator
        prompt = ""
        if sentence:
            # Into English the shared examples are enough, and near ones invite the model to
            # copy their words (measured: ko→en lost 21 chrF); into the other languages, where
            # this model is weakest, they gained 4 to 14 chrF (docs/benchmarks.md, "Translation
            # quality").
            near = nearest(source, target, sentence) if similar and target != "en" else []
            pairs = [*near, *fixed]
            shots = "".join(f"{src}: {_line(s)}\n{tgt}: {_line(t)}\n\n" for s, t in pairs)
            prompt = f"{shots}{src}: {sentence}\n{tgt}:"
        # The glossary applies to the whole text; each sentence keeps only its own terms.
        terms = tuple(t for s, t in glossary if sentence and s.casefold() in sentence.casefold())
        units.append(Unit(prefix, prompt, sentence, after, True, terms=terms))
    return units


def _line(text: str) -> str:
    # An example must stay on its line: the answer ends at the first line break.
    return " ".join(text.split())


def chat_unit(prompt: str, text: str, terms: tuple[str, ...] = ()) -> Unit:
    return Unit("", prompt, text, "", False, chat=True, terms=terms)
