"""The waker calls its action at the times asked for, folding times that fall together."""

from __future__ import annotations

import itertools
import threading

from ccwatch.clock import SystemClock
from ccwatch.pipeline.waker import Every, Waker
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


def test_every_repeats_at_its_interval_until_removed() -> None:
    clock = SystemClock()
    runs: list[float] = []
    every = Every(clock)
    try:
        start = clock.monotonic()
        every.add("tick", 0.1, lambda: runs.append(clock.monotonic()), now=True)
        wait_for(lambda: len(runs) >= 3, timeout=5, message="three runs")
        assert runs[0] - start < 0.1  # now=True: the first at once
        assert all(b - a >= 0.09 for a, b in itertools.pairwise(runs))
        every.remove("tick")
        stopped_at = len(runs)
        done = threading.Event()
        every.add("marker", 0.3, done.set)  # a later run of another action: "tick" stayed gone
        wait_for(done.is_set, timeout=5, message="the marker run")
        assert len(runs) <= stopped_at + 1  # at most one run already started when removed
    finally:
        every.stop()


def test_every_never_runs_an_action_twice_at_once_and_survives_its_failure() -> None:
    """A run longer than the interval: the due runs meanwhile fold into none (one at a time);
    an action that raises is still repeated."""
    clock = SystemClock()
    release = threading.Event()
    lock = threading.Lock()
    state = {"running": 0, "most": 0, "runs": 0}

    def slow() -> None:
        with lock:
            state["running"] += 1
            state["most"] = max(state["most"], state["running"])
            state["runs"] += 1
            first = state["runs"] == 1
        try:
            if first:
                release.wait(5)
            raise RuntimeError("the action failed")
        finally:
            with lock:
                state["running"] -= 1

    every = Every(clock)
    try:
        every.add("slow", 0.05, slow, now=True)
        wait_for(lambda: state["runs"] == 1, timeout=5, message="the first run")
        # Several intervals pass while the first run is held: none of them starts another.
        deadline = clock.monotonic() + 0.3
        wait_for(lambda: clock.monotonic() >= deadline, timeout=5, message="intervals passing")
        assert state["runs"] == 1
        release.set()
        wait_for(lambda: state["runs"] >= 3, timeout=5, message="runs after a failure")
        assert state["most"] == 1
    finally:
        every.stop()
