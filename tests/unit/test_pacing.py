"""Pacing job creation at the rate limit: plain clock values and the answers a window gives.

(tests/unit/test_pacing_windows.py runs the pacer against a model of the server's window.)
"""

from __future__ import annotations

import pytest

from ccwatch.pipeline.pacing import MARGIN_S, RECHECK_S, STALE_S, TRY_AT, CreatePacer


def create(pacer: CreatePacer, now: float, remaining: int | None, *,
           answered: float | None = None) -> bool:
    """Admit, send and answer one create; False when the pacer did not admit it."""
    if not pacer.admit(now):
        return False
    pacer.answered(now, now if answered is None else answered, remaining)
    return True


def refuse(pacer: CreatePacer, now: float, retry_after: float | None) -> None:
    """Admit one create, sent and refused at ``now``."""
    assert pacer.admit(now)
    pacer.refused(now, now, retry_after)


def use_up(pacer: CreatePacer, now: float, remaining: int) -> None:
    """``remaining`` more creates at ``now``, the last answered 0 left."""
    for left in range(remaining - 1, -1, -1):
        assert create(pacer, now, left)


def test_free_until_the_window_is_used_then_one_create_learns_the_end() -> None:
    pacer = CreatePacer()
    assert all(create(pacer, 0.1 * i, 4 - i) for i in range(5))  # 4, 3, 2, 1, 0 left
    assert pacer.delay(0.6) == 0.0  # the end is unknown: one create may find it out
    assert pacer.admit(0.6)
    assert not pacer.admit(0.6)  # and only one
    pacer.refused(0.6, 0.6, 9.4)  # not whole seconds: exact, the window ends at 10.0
    assert pacer.delay(1.0) == pytest.approx(9.0 + MARGIN_S)
    assert not pacer.admit(9.99)
    assert create(pacer, 10.0 + MARGIN_S, 4)  # a new window


def test_whole_seconds_put_the_end_in_the_last_of_them_and_are_waited_out() -> None:
    """Retry-After 7 at 3.0: the end is in (9, 10]. Our first window may have begun before
    our first create, so nothing is tried early: the next window is opened at 10."""
    pacer = CreatePacer()
    use_up(pacer, 0.0, 3)
    refuse(pacer, 3.0, 7.0)
    assert pacer.delay(3.0) == pytest.approx(7.0 + MARGIN_S)
    assert create(pacer, 10.0 + MARGIN_S, 2)


def test_once_the_length_is_known_windows_end_without_a_429() -> None:
    """The first window's 429 suggests the length; the next window, begun by our create, ends
    when it says, with no 429 asked for."""
    pacer = CreatePacer()
    use_up(pacer, 0.0, 3)
    refuse(pacer, 3.0, 7.5)  # ends at 10.5: the first window suggests 10.5 s
    t = 10.5 + MARGIN_S
    assert create(pacer, t, 2)  # begins the next window
    use_up(pacer, t + 1.0, 2)
    assert not pacer.admit(t + 3.0)  # nothing left, the end predicted: no create to learn it
    assert pacer.delay(t + 3.0) == pytest.approx(10.5 + MARGIN_S - 3.0)
    assert create(pacer, t + 10.5 + MARGIN_S, 2)


def test_a_window_is_predicted_from_its_first_answer_so_a_slow_request_is_no_429() -> None:
    """The server starts a window when its first create arrives, between its sending and its
    answer: the end is predicted from the answer, never before the server's."""
    pacer = CreatePacer()
    assert create(pacer, 0.0, 0)
    refuse(pacer, 0.5, 9.5)  # the window from 0.0 ends at 10.0
    t = 10.0 + MARGIN_S
    assert create(pacer, t, 0, answered=t + 0.8)  # slow: the window began by t + 0.8
    assert not pacer.admit(t + 10.0 + MARGIN_S)  # from the sending: up to 0.8 s early
    assert pacer.admit(t + 0.8 + 10.0 + MARGIN_S)


def test_a_wrong_first_guess_costs_one_429_and_is_replaced() -> None:
    """Our first window began 1 s before our first create: the length it suggests is 1 s short.
    The next window's opening is refused; Retry-After is waited out; the pacer takes that
    window's own bounds for the length and tries the one after early, within them."""
    pacer = CreatePacer()
    use_up(pacer, 0.0, 10)
    refuse(pacer, 0.5, 8.5)  # the server's window began at -1.0, ends at 9.0: suggests 9 s
    t = 9.0 + MARGIN_S
    assert create(pacer, t, 9)  # the server: t → t + 10
    use_up(pacer, t + 0.1, 9)
    opening = t + 9.0 + MARGIN_S
    assert pacer.admit(opening)
    pacer.refused(opening, opening, 1.0)  # Retry-After 1 (0.95 rounded up)
    assert pacer.delay(opening) == pytest.approx(1.0)
    start = opening + 1.0
    assert create(pacer, start, 9)  # a new window
    use_up(pacer, start + 0.1, 9)
    # The length is now known within (9.05, 10.05]: the next is tried 70 % into that interval.
    lo, hi = start + (opening - t), start + (start - t)
    assert pacer.delay(start + 1.0) == pytest.approx(lo + TRY_AT * (hi - lo) - (start + 1.0))


def test_a_try_that_succeeds_narrows_the_length_and_one_refused_waits_retry_after() -> None:
    pacer = CreatePacer()
    use_up(pacer, 0.0, 2)
    refuse(pacer, 1.0, 8.0)  # the first window suggests (8, 9] for its end
    begun = 9.0 + MARGIN_S
    assert create(pacer, begun, 1)  # the server's window: begun → begun + 9.5
    use_up(pacer, begun + 0.1, 1)
    early = begun + 9.0 + MARGIN_S  # what the first window suggested: early
    refuse(pacer, early, 1.0)  # the end is in (early, early + 1]
    assert pacer.delay(early) == pytest.approx(1.0)  # Retry-After, though a try would go sooner
    opened = early + 1.0
    assert create(pacer, opened, 1)
    use_up(pacer, opened + 0.1, 1)
    lo, hi = early - begun, opened - begun  # the length, as that window proved
    tried = opened + lo + TRY_AT * (hi - lo)
    assert pacer.delay(opened + 1.0) == pytest.approx(tried - (opened + 1.0))
    assert create(pacer, tried, 1)  # it succeeds: the length is at most tried - opened now
    use_up(pacer, tried + 0.1, 1)
    hi = tried - opened
    assert pacer.delay(tried + 1.0) == pytest.approx(lo + TRY_AT * (hi - lo) - 1.0)


def test_creates_in_flight_count_against_what_is_left() -> None:
    """One create left and three uploads ready: one goes; the rest wait for its answer rather
    than guess at the next window."""
    pacer = CreatePacer()
    create(pacer, 0.0, 1)
    assert pacer.admit(0.1)
    assert not pacer.admit(0.1)
    assert pacer.delay(0.1) == RECHECK_S
    pacer.answered(0.1, 0.2, 0)
    assert pacer.admit(0.3)  # nothing left, the end unknown: now one may find it out
    assert not pacer.admit(0.3)


def test_a_new_window_starts_from_one_opener_not_unbounded() -> None:
    """Sixteen files ready when a window of 10 opens: one opens it, the rest wait for its
    answer, then the other nine go."""
    pacer = CreatePacer()
    create(pacer, 0.0, 0)
    refuse(pacer, 0.1, 4.9)  # ends at 5.0
    t = 5.0 + MARGIN_S
    assert sum(pacer.admit(t) for _ in range(16)) == 1
    pacer.answered(t, t + 0.01, 9)
    assert sum(pacer.admit(t + 0.02) for _ in range(16)) == 9


def test_answers_out_of_order_are_not_a_new_window() -> None:
    """Four creates in flight answered 57, 59, 58, 56: no window began; but a create sent
    after an answer that says fewer are left, answered with more, began one."""
    pacer = CreatePacer()
    assert create(pacer, 0.0, 60)
    for _ in range(4):
        assert pacer.admit(0.0)
    for remaining in (57, 59, 58, 56):
        pacer.answered(0.0, 0.1, remaining)
    refuse(pacer, 1.0, 9.0)
    assert pacer.delay(2.0) > 7.0  # the window still runs: the late 59 did not reopen it
    pacer = CreatePacer()
    create(pacer, 0.0, 1)
    create(pacer, 1.0, 5)  # sent after "1 left" and told 5: a window began
    assert pacer.delay(1.1) == 0.0
    assert sum(pacer.admit(1.1) for _ in range(8)) == 5


def test_a_refusal_from_the_window_before_is_not_this_ones() -> None:
    pacer = CreatePacer()
    create(pacer, 0.0, 0)
    refuse(pacer, 0.2, 9.8)
    assert create(pacer, 10.1, 5)  # a new window
    pacer.refused(0.1, 10.2, 0.0)  # a late answer to a create sent before it: the old window's
    assert pacer.admit(10.2)  # this window still has 5


def test_the_try_is_released_by_its_own_answer_only() -> None:
    """An older create's late answer does not let a second create go after the window's end."""
    pacer = CreatePacer()
    create(pacer, 0.0, 1)
    assert pacer.admit(0.1)  # the last one; sent, slow to answer
    pacer.answered(0.1, 0.2, 0)
    assert pacer.admit(0.3)  # the try: learns the end
    pacer.answered(0.05, 0.4, 0)  # a late answer to a create sent before the try
    assert not pacer.admit(0.5)
    pacer.refused(0.3, 0.6, 5.0)
    assert not pacer.admit(0.7)


def test_an_admitted_create_never_sent_stops_counting() -> None:
    pacer = CreatePacer()
    create(pacer, 0.0, 1)
    assert pacer.admit(0.1)  # its file vanished before the create: never answered
    assert not pacer.admit(0.2)  # the one left is spoken for
    assert pacer.admit(STALE_S + 0.2)


def test_a_network_error_releases_the_try() -> None:
    pacer = CreatePacer()
    create(pacer, 0.0, 0)
    assert pacer.admit(0.1)
    pacer.failed(0.1)
    assert pacer.admit(1.2)  # one a second while nothing bounds the end


def test_answers_without_a_count_run_free_and_do_not_stall_after_a_429() -> None:
    pacer = CreatePacer()
    assert all(create(pacer, 0.0, None) for _ in range(20))  # no X-RateLimit-Remaining at all
    refuse(pacer, 0.1, 2.0)
    assert not pacer.admit(1.0)
    assert create(pacer, 2.2, None)  # went through after the 429, still no count: free again
    assert all(pacer.admit(2.3) for _ in range(10))


def test_the_first_create_goes_alone() -> None:
    """Before any answer the window may be used up already (a restart, another host): one
    create asks; with its answer the others go."""
    pacer = CreatePacer()
    assert pacer.admit(0.0)
    assert not pacer.admit(0.0)
    assert pacer.delay(0.0) == RECHECK_S
    pacer.answered(0.0, 0.01, 40)
    assert sum(pacer.admit(0.02) for _ in range(50)) == 40


def test_an_answer_wakes_whoever_was_held_back() -> None:
    """A create held for another's answer is asked again when that answer comes, not a recheck
    later; answers while nobody waits wake no one."""
    woken: list[int] = []
    pacer = CreatePacer()
    pacer.wake_on_answer(lambda: woken.append(1))
    assert pacer.admit(0.0)
    assert not pacer.admit(0.0)  # the first create goes alone
    pacer.answered(0.0, 0.01, 5)
    assert woken == [1]
    assert pacer.admit(0.02)
    pacer.answered(0.02, 0.03, 4)
    assert woken == [1]


def test_an_admitted_create_that_sends_nothing_is_withdrawn() -> None:
    """The first create's file turned out unreadable (or its job was found by its tag): nothing
    was sent, so the creates behind it do not wait for an answer that never comes."""
    pacer = CreatePacer()
    assert pacer.admit(0.0)
    with pytest.raises(PermissionError), pacer.creating():
        raise PermissionError("unreadable")
    assert pacer.admit(0.1)  # the first create again, alone
    with pacer.creating():
        pacer.answered(0.1, 0.2, 3)  # this one was sent: it stays answered, not withdrawn
    assert sum(pacer.admit(0.3) for _ in range(5)) == 3
