"""The memory store's sliding-window counter: the same arithmetic as the Redis script."""

from __future__ import annotations

import pytest

from dragoman.quotas import WINDOW_S, SlidingWindow

START = 1_000 * WINDOW_S  # the start of a minute


def _take(window: SlidingWindow, now: float, limit: int, cost: int = 1) -> float:
    wait_s = window.wait_s(now, limit, cost)
    if wait_s == 0:
        window.count += cost
    return wait_s


def test_a_full_minute_waits_for_the_next_one() -> None:
    window = SlidingWindow()
    assert _take(window, START + 10, 2) == 0
    assert _take(window, START + 20, 2) == 0
    # Full: the next minute starts in 30 s; then the previous count (2) still weighs
    # 2 × (1 − x), and one more fits once x ≥ 1/2: 30 s into it.
    assert _take(window, START + 30, 2) == pytest.approx(30 + 30)


def test_the_previous_minute_weighs_less_as_it_slides_away() -> None:
    window = SlidingWindow()
    for second in range(10):
        assert _take(window, START + second, 10) == 0
    # 15 s into the next minute the previous 10 weigh 7.5: two more fit, not three.
    assert _take(window, START + WINDOW_S + 15, 10) == 0
    assert _take(window, START + WINDOW_S + 15, 10) == 0
    wait_s = _take(window, START + WINDOW_S + 15, 10)
    # 2 + 1 ≤ 10 − 10 × (1 − x)  ⇔  x ≥ 0.3: 18 s into the minute, 3 s from now.
    assert wait_s == pytest.approx(3)
    assert _take(window, START + WINDOW_S + 15 + wait_s + 0.001, 10) == 0


def test_an_idle_minute_forgets_everything() -> None:
    window = SlidingWindow()
    assert _take(window, START, 1) == 0
    assert _take(window, START + 2 * WINDOW_S, 1) == 0


def test_a_cost_above_the_limit_never_fits_now() -> None:
    window = SlidingWindow()
    assert _take(window, START, 10, cost=11) > WINDOW_S - 1
    assert window.count == 0
