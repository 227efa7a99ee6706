"""The waker calls its action at the times asked for, folding times that fall together."""

from __future__ import annotations

import threading

from ccwatch.clock import SystemClock
from ccwatch.pipeline.waker import Waker
from ccwatch.testing import wait_for


def test_calls_at_each_requested_time_and_survives_a_failing_action() -> None:
    """Two separate times → two calls, in order; an exception does not stop the thread."""
    clock = SystemClock()
    calls: list[float] = []
    lock = threading.Lock()

    def action() -> None:
        with lock:
            calls.append(clock.monotonic())
        if len(calls) == 1:
            raise RuntimeError("boom")

    waker = Waker(clock, action)
    try:
        start = clock.monotonic()
        waker.at(start + 0.30)
        waker.at(start + 0.05)
        waker.at(start + 0.05)  # the same moment: one call
        wait_for(lambda: len(calls) >= 2, timeout=5, message="two wake-ups")
        assert calls[0] >= start + 0.05
        assert calls[1] >= start + 0.30
        assert len(calls) == 2
    finally:
        waker.stop()
