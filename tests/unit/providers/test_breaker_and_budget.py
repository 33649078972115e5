"""An upstream's breaker through its states, and the retry budget, on a clock the test moves."""

from __future__ import annotations

from dragoman.providers.upstreams.breaker import Breaker
from dragoman.providers.upstreams.budget import RetryBudget


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _breaker(clock: Clock, changes: list[bool] | None = None, enabled: bool = True) -> Breaker:
    changed = changes.append if changes is not None else None
    return Breaker(3, 30.0, clock=clock, on_change=changed, enabled=enabled)


def test_opens_after_failures_in_a_row_then_one_trial_closes_it() -> None:
    clock, changes = Clock(), list[bool]()
    breaker = _breaker(clock, changes)
    for _ in range(2):
        assert not breaker.take()
        breaker.failed(False)
    breaker.succeeded()  # a stream that ended well: the count starts again
    for _ in range(3):
        assert breaker.allows() and not breaker.take()
        breaker.failed(False)
    assert breaker.state == "open" and not breaker.allows()
    assert changes == [True]
    assert breaker.reopens_in() == 30.0
    clock.now += 29.9
    assert breaker.state == "open" and not breaker.allows()
    clock.now += 0.1
    assert breaker.state == "half_open" and breaker.allows()
    assert breaker.take()  # the trial
    assert not breaker.allows()  # one at a time
    breaker.answered(True)
    assert breaker.state == "healthy" and breaker.allows()
    assert changes == [True, False]


def test_a_failed_trial_opens_it_again_for_a_whole_cool_down() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(3):
        breaker.failed(False)
    clock.now += 30
    assert breaker.take()
    breaker.failed(True)
    assert breaker.state == "open"
    clock.now += 29
    assert breaker.state == "open"
    clock.now += 1
    assert breaker.state == "half_open"


def test_a_trial_its_client_left_frees_the_place() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(3):
        breaker.failed(False)
    clock.now += 30
    assert breaker.take()
    breaker.released(True)
    assert breaker.state == "half_open" and breaker.allows()


def test_an_answer_then_a_break_off_counts_as_a_failure() -> None:
    breaker = _breaker(Clock())
    for _ in range(3):  # each answered, then broke off: no stream ended well
        breaker.answered(False)
        breaker.failed(False)
    assert breaker.state == "open"


def test_health_checks_open_it_and_hold_it_open() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(3):
        breaker.failed(False)
    assert breaker.state == "open"
    breaker.health(True)  # its model list answers: requests opened it, the cool-down decides
    assert breaker.state == "open"
    breaker.health(False)
    clock.now += 60  # cool-down long over, but the upstream still does not answer
    assert breaker.state == "open" and not breaker.allows()
    breaker.health(True)
    assert breaker.state == "half_open"
    assert breaker.take()
    breaker.answered(True)
    assert breaker.state == "healthy"


def test_a_breaker_a_health_check_opened_is_tried_as_soon_as_one_passes() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    breaker.health(False)  # not up yet
    assert breaker.state == "open"
    clock.now += 5
    breaker.health(True)  # up: tried at once, not after the cool-down
    assert breaker.state == "half_open"
    assert breaker.take()
    breaker.failed(True)  # the trial failed: now a whole cool-down
    breaker.health(True)
    assert breaker.state == "open"
    clock.now += 30
    assert breaker.state == "half_open"


def test_a_disabled_breaker_never_opens() -> None:
    breaker = _breaker(Clock(), enabled=False)
    for _ in range(10):
        breaker.failed(False)
    breaker.health(False)
    assert breaker.state == "healthy" and breaker.allows()


def test_retries_are_a_share_of_the_requests_plus_a_minimum() -> None:
    clock = Clock()
    budget = RetryBudget(0.2, 0.2, clock=clock)  # a reserve of 2 per 10 s
    for _ in range(10):
        budget.request()
    # 2 + 20% of 10 requests.
    assert [budget.try_retry() for _ in range(5)] == [True, True, True, True, False]
    for _ in range(5):
        budget.request()
    assert budget.try_retry()  # 15 requests: 5 retries
    assert not budget.try_retry()
    clock.now += 10  # the window has moved past all of them
    assert [budget.try_retry() for _ in range(3)] == [True, True, False]
