"""The loop guard on token sequences: what it holds back, what it calls a loop, and the
repetition it leaves alone."""

from __future__ import annotations

from dragoman.engine.repetition import RepetitionGuard, source_repeats

# Token ids standing for text: letters unless listed as digits or punctuation.
NOT_LETTERS = {0, 1, 2, 9}  # "0", ",", ".", " "


def has_letter(tokens: list[int]) -> bool:
    return any(t not in NOT_LETTERS for t in tokens)


def feed(guard: RepetitionGuard, tokens: list[int]) -> list[tuple[int, int]]:
    return [guard.push(t) for t in tokens]


def test_a_unit_repeated_beyond_the_allowed_copies_is_held_then_a_loop() -> None:
    guard = RepetitionGuard(source_repeats("Does my sister still live in Paris?"), has_letter)
    # "Mon soeur a" then "-t-elle" (3 tokens) over and over.
    results = feed(guard, [10, 11, 12, 20, 21, 22, 20, 21, 22])
    assert results == [(0, 0)] * 9  # two copies: nothing held
    assert guard.push(20) == (1, 0)  # the third begins: held
    assert guard.push(21) == (2, 0)
    assert guard.push(22) == (3, 3)  # the third is whole: a loop of period 3


def test_a_run_that_breaks_lets_its_held_tokens_go() -> None:
    guard = RepetitionGuard(1, has_letter)
    feed(guard, [20, 21, 20, 21])
    assert guard.push(20) == (1, 0)
    assert guard.push(30) == (0, 0)  # not a copy: nothing held any more


def test_repetition_the_source_has_is_allowed() -> None:
    source = "It was very, very, very cold this morning."
    assert source_repeats(source) == 3
    guard = RepetitionGuard(source_repeats(source), has_letter)
    # "très" "," " très" "," " très" "," " très": the unit (",", " très") three times.
    results = feed(guard, [40, 1, 41, 1, 41, 1, 41])
    assert all(period == 0 for _, period in results)
    assert guard.push(1) == (1, 0)  # a fourth copy begins: held
    assert guard.push(41) == (2, 2)  # and is whole: beyond the source's three


def test_without_the_source_s_repetition_three_copies_are_a_loop() -> None:
    guard = RepetitionGuard(source_repeats("It was cold this morning."), has_letter)
    results = feed(guard, [40, 1, 41, 1, 41, 1, 41])
    assert results[-1] == (2, 2)


def test_digits_and_punctuation_repeat_freely() -> None:
    guard = RepetitionGuard(1, has_letter)
    # "1,000,000,000" and "......"
    results = feed(guard, [3, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 2, 2, 2, 2, 2])
    assert results == [(0, 0)] * len(results)


def test_a_dropped_loop_is_forgotten() -> None:
    guard = RepetitionGuard(1, has_letter)
    feed(guard, [20, 21, 20, 21, 20])
    assert guard.push(21) == (2, 2)
    guard.drop(2)
    assert guard.tokens == [20, 21, 20, 21]
    assert guard.push(30) == (0, 0)  # decoded again into something else: nothing held
    assert guard.push(20) == (0, 0)


def test_source_repeats_counts_word_groups_in_a_row() -> None:
    assert source_repeats("Good morning.") == 1
    assert source_repeats("We tried again and again.") == 1  # "again" twice, not in a row
    assert source_repeats("No, no, no, that is not it.") == 3
    assert source_repeats("tick tock tick tock tick tock") == 3
