"""Glossary terms kept by steering greedy decoding (pure: token ids, no model)."""

from __future__ import annotations

from dragoman.engine.terms import Term, TermSteering

# Token ids of a made-up vocabulary: " 해" " 수" " 면" (the term), " 안" (another word), "." and
# the end of text.
HAE, SU, MYEON, AN, DOT, END = 1, 2, 3, 4, 5, 99
TERM = Term("해수면", spaced=(HAE, SU, MYEON), bare=(11, SU, MYEON))


def steering(bias: float = 5.0) -> TermSteering:
    return TermSteering([TERM], bias, frozenset({END}))


def emit(s: TermSteering, token: int, piece: str) -> None:
    s.advance(token, piece)


def test_a_missing_term_gets_its_start_biased_and_its_next_token_more() -> None:
    s = steering()
    # At the start a bare variant fits as well (after a quote, say).
    assert s.next_bias() == {HAE: 5.0, 11: 5.0}
    emit(s, AN, " 안")
    assert s.next_bias() == {HAE: 5.0}  # inside a word no bare start
    emit(s, HAE, " 해")  # the model's own choice: only nudged on
    assert s.next_bias() == {SU: 10.0}


def test_a_start_that_wins_by_the_bias_forces_the_rest_of_the_term() -> None:
    s = steering()
    assert s.choose(HAE, natural=AN) == HAE
    emit(s, HAE, " 해")
    assert s.next_bias() == {}  # forced: no bias needed
    assert s.choose(DOT, natural=DOT) == SU
    emit(s, SU, "수")
    assert s.choose(END, natural=END) == MYEON
    emit(s, MYEON, "면")
    assert s.pending() == [] and s.next_bias() == {}
    assert s.choose(END, natural=END) == END  # the term is in: the sentence may end


def test_a_start_the_model_chose_itself_is_not_forced() -> None:
    s = steering()
    assert s.choose(HAE, natural=HAE) == HAE
    emit(s, HAE, " 해")
    assert s.choose(AN, natural=AN) == AN  # " 해" + "안": another word, kept


def test_the_term_is_written_before_the_end_when_still_missing() -> None:
    s = steering()
    emit(s, AN, " 안")
    assert s.choose(END, natural=END) == HAE
    emit(s, HAE, " 해")
    assert [s.choose(END, natural=END) for _ in range(2)] == [SU, MYEON]


def test_a_term_already_in_the_text_in_any_case_is_not_steered() -> None:
    s = TermSteering([Term("Tidewatch", (7, 8), (9, 8))], 5.0, frozenset({END}))
    emit(s, 7, " TIDEWATCH")
    assert s.next_bias() == {} and s.choose(END, natural=END) == END


def test_no_bias_no_steering() -> None:
    s = steering(0.0)
    assert s.next_bias() == {}
    assert s.choose(END, natural=END) == END
