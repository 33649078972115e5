"""Glossary terms kept by steering greedy decoding towards them.

A small model given a glossary term as a few-shot example still often translates the term its
own way. So, while a sentence's glossary term is not yet in its translation, the engine adds a
bias to the logit of the token that would start (or continue) the term. Once a token of a term
wins only thanks to that bias, the rest of the term is forced: the model has reached the place
where the term fits, and a term started but not finished would be worse than either. A token
the model picks on its own is never forced further (" 해" may start 해수면 or 해안), only
nudged. Last, when the model would end the translation (end of text, line break) while a term
is still missing, the term is written first: the translation ends with it rather than without
it. Nothing is ever taken back, so what is streamed stays what is recorded.

Pure logic on token ids; the scheduler feeds it the tokens and applies its biases.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Term:
    text: str  # the target term, as the glossary has it
    spaced: tuple[int, ...]  # its tokens after a space (" 해수면")
    bare: tuple[int, ...]  # its tokens right after a quote or an apostrophe ("l'alerte")


@dataclass(slots=True)
class TermSteering:
    terms: list[Term]
    bias: float  # added to the logit of a token that starts a missing term
    ends: frozenset[int] = frozenset()  # tokens that end the translation
    text: str = ""  # the translation so far
    tokens: list[int] = field(default_factory=list)
    forcing: list[int] = field(default_factory=list)

    def pending(self) -> list[Term]:
        folded = self.text.casefold()
        return [term for term in self.terms if term.text.casefold() not in folded]

    def _variants(self, term: Term) -> list[tuple[int, ...]]:
        # A bare variant only where a word cannot be going on: at the start, or after a
        # character such as an apostrophe; elsewhere it would start a term inside a word.
        last = self.text[-1:] if self.text else ""
        bare_fits = not last or not (last.isalnum() or last.isspace())
        return [v for v in (term.spaced, term.bare if bare_fits else ()) if v]

    def next_bias(self) -> dict[int, float]:
        """Biases for the logits of the next token: its start for each missing term, twice as
        much for the next token of a term the output is already in the middle of."""
        if self.forcing or self.bias <= 0:
            return {}
        biases: dict[int, float] = {}
        for term in self.pending():
            for variant in self._variants(term):
                k = self._matched(variant)
                token, boost = variant[k], self.bias * (2 if k else 1)
                biases[token] = max(biases.get(token, 0.0), boost)
        return biases

    def _matched(self, variant: tuple[int, ...]) -> int:
        """How many of the variant's first tokens the output ends with (fewer than all)."""
        for k in range(min(len(variant) - 1, len(self.tokens)), 0, -1):
            if tuple(self.tokens[-k:]) == variant[:k]:
                return k
        return 0

    def choose(self, sampled: int, natural: int) -> int:
        """The token to emit: the next forced one, else `sampled` (the choice with the biases),
        unless it ends the translation while a term is missing. `natural`: the choice without
        them; `sampled` winning only because of a bias commits the output to that term."""
        if self.forcing:
            return self.forcing.pop(0)
        pending = self.pending()
        if sampled in self.ends and pending and self.bias > 0:
            variant = pending[0].spaced or pending[0].bare
            self.forcing = list(variant[1:])
            return variant[0]
        if sampled != natural:
            for term in pending:
                for variant in self._variants(term):
                    k = self._matched(variant)
                    if variant[k] == sampled:
                        self.forcing = list(variant[k + 1 :])
                        return sampled
        return sampled

    def advance(self, token: int, piece: str) -> None:
        """Record an emitted token and its text."""
        self.tokens.append(token)
        self.text += piece
