"""Pacing job creation at the rate limit: plain clock values and the answers a window gives."""

from __future__ import annotations

from ccwatch.pipeline.pacing import MARGIN_S, CreatePacer


def create(pacer: CreatePacer, now: float, remaining: int | None) -> bool:
    """Admit, send and answer one create; False when the pacer did not admit it."""
    if not pacer.admit(now):
        return False
    pacer.sent(now)
    pacer.answered(now, remaining)
    return True


def test_free_until_the_window_is_used_then_one_probe_learns_the_end() -> None:
    pacer = CreatePacer()
    assert all(create(pacer, 0.1 * i, 4 - i) for i in range(5))  # 4, 3, 2, 1, 0 left
    assert pacer.delay(0.6) == 0.0  # the end is unknown: one create may find it out
    assert pacer.admit(0.6)
    assert not pacer.admit(0.6)  # and only one
    pacer.sent(0.6)
    pacer.refused(0.6, 9.4)  # the window ends at 10.0
    assert abs(pacer.delay(1.0) - (9.0 + MARGIN_S)) < 1e-9
    assert not pacer.admit(9.99)
    assert create(pacer, 10.0 + MARGIN_S, 4)  # a new window


def test_once_the_length_is_known_windows_end_without_a_429() -> None:
    """The first 429 tells the length (end minus the window's first create); later windows are
    predicted from their own first create."""
    pacer = CreatePacer()
    for i in range(3):
        create(pacer, float(i), 2 - i)
    assert pacer.admit(3.0)
    pacer.sent(3.0)
    pacer.refused(3.0, 7.0)  # window: 0.0 → 10.0
    t = 10.0 + MARGIN_S
    for i in range(3):  # the next window begins with its first create at t
        assert create(pacer, t + i, 2 - i)
    assert not pacer.admit(t + 3)  # nothing left, and its end is known: no probe
    assert abs(pacer.delay(t + 3) - (t + 10.0 + MARGIN_S - (t + 3))) < 1e-9
    assert create(pacer, t + 10.0 + MARGIN_S, 2)


def test_creates_in_flight_count_against_what_is_left() -> None:
    """Three uploads admitted at once with one create left: that one and one probe go."""
    pacer = CreatePacer()
    create(pacer, 0.0, 1)
    assert pacer.admit(0.1)
    assert pacer.admit(0.1)  # nothing left once that is answered, the end unknown: the probe
    assert not pacer.admit(0.1)
    pacer.sent(0.1)
    pacer.answered(0.2, 0)
    assert not pacer.admit(0.3)


def test_an_unforeseen_new_window_is_noticed_from_the_answers() -> None:
    pacer = CreatePacer()
    create(pacer, 0.0, 1)
    create(pacer, 1.0, 5)  # remaining went up: a window began
    assert pacer.delay(1.1) == 0.0


def test_an_admitted_create_never_sent_stops_counting() -> None:
    pacer = CreatePacer()
    create(pacer, 0.0, 1)
    assert pacer.admit(0.1)  # its file vanished before the create: never answered
    assert pacer.admit(0.2)  # the probe, also never answered
    assert not pacer.admit(0.3)
    assert pacer.admit(30.3)


def test_answers_out_of_order_are_not_a_new_window() -> None:
    """Four creates in flight answered 57, 59, 58, 56: no window began, the length learnt from the
    429 stays the whole window's."""
    pacer = CreatePacer()
    for _ in range(4):
        assert pacer.admit(0.0)
    pacer.sent(0.0)
    for remaining in (57, 59, 58, 56):
        pacer.answered(0.1, remaining)
    pacer.sent(1.0)
    pacer.refused(1.0, 9.0)  # the window (from 0.0) ends at 10.0
    assert abs(pacer.delay(2.0) - (8.0 + MARGIN_S)) < 1e-9
    assert pacer.admit(10.0 + MARGIN_S)
    pacer.sent(10.1)
    pacer.answered(10.2, 59)
    for i in range(59):
        pacer.admit(10.3)
        pacer.sent(10.3)
        pacer.answered(10.4, 58 - i)
    assert not pacer.admit(10.5)
    # From the first answer (10.2) + the 10 s learnt.
    assert abs(pacer.delay(10.5) - (20.2 + MARGIN_S - 10.5)) < 1e-9


def test_a_window_is_predicted_from_its_first_answer_so_a_slow_request_is_no_429() -> None:
    """The server starts a window when the first create arrives, somewhere between its sending and
    its answer: predicted from the answer, the end is never before the server's, however long
    that request took; the length was learnt from a sending, so it is never too short either."""
    pacer = CreatePacer()
    assert create(pacer, 0.0, 0)
    assert pacer.admit(0.5)
    pacer.sent(0.5)
    pacer.refused(0.5, 9.5)  # the window from 0.0 ends at 10.0: 10 s long
    t = 10.0 + MARGIN_S
    assert pacer.admit(t)
    pacer.sent(t)
    pacer.answered(t + 0.8, 0)  # a slow answer: the server's window began at t + 0.8 at the latest
    assert not pacer.admit(t + 10.0 + MARGIN_S)  # sent-based: would be early by up to 0.8 s
    assert abs(pacer.delay(t + 1.0) - (t + 0.8 + 10.0 + MARGIN_S - (t + 1.0))) < 1e-9
    assert pacer.admit(t + 0.8 + 10.0 + MARGIN_S)


def test_a_new_window_starts_from_the_limit_not_unbounded() -> None:
    """Sixteen files ready when a window of 10 opens: ten go before any answer, not sixteen."""
    pacer = CreatePacer()
    pacer.admit(0.0)
    pacer.sent(0.0)
    pacer.answered(0.0, 0, 10)
    pacer.admit(0.1)
    pacer.sent(0.1)
    pacer.refused(0.1, 4.9)  # ends at 5.0
    t = 5.0 + MARGIN_S
    assert sum(pacer.admit(t) for _ in range(16)) == 1  # one opens the window; the rest wait
    pacer.sent(t)
    pacer.answered(t + 0.01, 9, 10)
    assert sum(pacer.admit(t + 0.02) for _ in range(16)) == 9  # then the rest of the ten


def test_an_early_prediction_costs_one_429_and_teaches_a_longer_window() -> None:
    """The length learnt was short (the server's window began before our first create): the
    next window's opening create is refused, alone; the length grows to cover the true one."""
    pacer = CreatePacer()
    assert create(pacer, 0.0, 0)  # the server's window really began at -1.0: it ends at 9.0
    assert pacer.admit(0.5)
    pacer.sent(0.5)
    pacer.refused(0.5, 8.5)  # ends at 9.0: learnt 9 s (the true window is 10 s)
    t = 9.0 + MARGIN_S
    assert create(pacer, t, 9)  # server: a new window, 9.05 → 19.05
    for i in range(9):
        assert create(pacer, t + 0.1, 8 - i)
    opening = t + 9.0 + MARGIN_S  # predicted from the answer at t: 18.1, early
    assert sum(pacer.admit(opening) for _ in range(4)) == 1
    pacer.sent(opening)
    pacer.refused(opening, 0.95)  # still the old window: it ends at 19.05
    assert not pacer.admit(19.0)
    assert create(pacer, 19.05 + MARGIN_S, 9)  # the next window
    for i in range(9):
        assert create(pacer, 19.2, 8 - i)
    # Learnt now: at least 19.05 - 9.05 = 10 s from the last window's first sending.
    assert not pacer.admit(19.1 + 9.0 + MARGIN_S)
    assert pacer.delay(29.0) > 0


def test_a_late_answer_with_more_left_does_not_open_a_place() -> None:
    """Two creates answered 0 then (late) 1 left: nothing is left, whatever came last."""
    pacer = CreatePacer()
    assert create(pacer, 0.0, 5)
    for _ in range(2):
        assert pacer.admit(0.1)
        pacer.sent(0.1)
    pacer.answered(0.2, 3)
    pacer.answered(0.2, 4)  # the earlier create's answer, arriving last
    assert sum(pacer.admit(0.3) for _ in range(8)) == 4  # the 3 left, then one probe (not 4 + 1)


def test_a_second_refused_opening_still_learns_from_the_window_that_ran() -> None:
    """Two early predictions in a row: the second refusal lengthens the window from the same
    window's first sending, never shortens it to the refused create's."""
    pacer = CreatePacer()
    assert create(pacer, 0.0, 0)
    assert pacer.admit(0.5)
    pacer.sent(0.5)
    pacer.refused(0.5, 8.5)  # learnt 9 s
    t = 9.0 + MARGIN_S
    assert create(pacer, t, 0)  # the server's window: t → t + 12 (longer than learnt)
    opening = t + 9.0 + MARGIN_S
    assert pacer.admit(opening)
    pacer.sent(opening)
    pacer.refused(opening, 1.0)  # ends at opening + 1.0 (still early)
    second = opening + 1.0 + MARGIN_S
    assert pacer.admit(second)
    pacer.sent(second)
    pacer.refused(second, t + 12.0 - second)  # the window from t really ends at t + 12
    assert not pacer.admit(t + 11.9)
    assert create(pacer, t + 12.0 + MARGIN_S, 0)  # the next window
    # Learnt at least 12 s (from t), not the ~2 s a refused opening create would give.
    assert not pacer.admit(t + 12.0 + MARGIN_S + 11.0)
