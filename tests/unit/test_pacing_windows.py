"""The pacer against a model of the server's window, run in simulated time: many creates in
parallel, answers out of order, whole-second Retry-After, windows that began before us."""

from __future__ import annotations

import functools
import heapq
import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from ccwatch.pipeline.pacing import MARGIN_S, PRECISION_S, CreatePacer


@dataclass
class FixedWindow:
    """``limit`` creates per ``length`` s; a window begins with the first create after the last
    one ended (as the emulator's), or on the clock's boundaries (``aligned``). A 429 says
    ``Retry-After`` in whole seconds, rounded up."""

    limit: int
    length: float
    start: float  # the first window's beginning: before our first create, as a rule
    aligned: bool = False
    count: int = 0
    starts: list[float] = field(default_factory=list)

    def take(self, now: float) -> tuple[int | None, float]:
        """(creates left after this one, or None when refused; Retry-After)."""
        if now - self.start >= self.length:
            passed = math.floor((now - self.start) / self.length) * self.length
            self.start, self.count = (self.start + passed) if self.aligned else now, 0
            self.starts.append(self.start)
        if self.count >= self.limit:
            return None, float(math.ceil(self.length - (now - self.start)))
        self.count += 1
        return self.limit - self.count, 0.0


@dataclass
class Run:
    created: list[float]  # when each successful create reached the server
    refused: list[float]  # when each refused one did
    retry_after: list[float]  # and the Retry-After each was answered
    server: FixedWindow

    def refused_share(self) -> float:
        return len(self.refused) / (len(self.created) + len(self.refused))

    def share(self, limit: int) -> float:
        """Creates per second from the second window's opening to the last one's, against the
        limit (the first window began before us: it is left out)."""
        opened = self.created[limit::limit]
        return (len(opened) - 1) * limit / (opened[-1] - opened[0]) / (limit / self.server.length)


def backlog(server: FixedWindow, windows: int, *, workers: int = 8, send_s: float = 0.02,
            latency_s: float = 0.005, seed: int = 0) -> Run:
    """``windows x limit + 1`` creates through ``workers`` upload threads: each admitted create
    is sent a little later, reaches the server, and is answered, all with random delays."""
    rnd = random.Random(seed)
    pacer, n = CreatePacer(), windows * server.limit + 1
    now, ask_at, busy = 0.0, 0.0, 0
    created: list[float] = []
    refused: list[float] = []
    retry_afters: list[float] = []
    events: list[tuple[float, int, Callable[[], None]]] = []
    order = 0

    def at(when: float, action: Callable[[], None]) -> None:
        nonlocal order
        order += 1
        heapq.heappush(events, (when, order, action))

    def send(sent: float) -> None:
        left, retry_after = server.take(now)
        reached = now
        at(now + rnd.uniform(0, latency_s), lambda: answer(sent, reached, left, retry_after))

    def answer(sent: float, reached: float, left: int | None, retry_after: float) -> None:
        nonlocal busy
        busy -= 1
        if left is None:
            refused.append(reached)
            retry_afters.append(retry_after)
            pacer.refused(sent, now, retry_after)
        else:
            created.append(reached)
            pacer.answered(sent, now, left)

    while len(created) < n:
        while busy < workers and now >= ask_at:
            if not pacer.admit(now):
                ask_at = now + max(pacer.delay(now), 0.001)
                break
            busy += 1
            sent = now + rnd.uniform(0, send_s)
            at(sent + rnd.uniform(0, latency_s), functools.partial(send, sent))
        if events and (events[0][0] <= ask_at or busy >= workers):
            when, _, action = heapq.heappop(events)
            now = max(now, when)
            action()
            ask_at = min(ask_at, now)
        else:
            now = max(now, ask_at)
    return Run(created, refused, retry_afters, server)


@pytest.mark.parametrize("began_before_s", [0.0, 1.3, 5.0, 9.9])
@pytest.mark.parametrize("length", [10.0, 60.0])
def test_a_backlog_runs_at_the_limit_with_few_429s(began_before_s: float, length: float) -> None:
    """The issue's bar, 5 windows of 120: >= 95 % of the limit, < 1 % of creates refused."""
    for seed in range(3):
        run = backlog(FixedWindow(120, length, -began_before_s), 5, seed=seed)
        assert run.share(120) >= 0.95, (seed, run.share(120))
        assert run.refused_share() < 0.01, (seed, run.refused)


def test_the_length_is_learnt_then_each_window_opens_on_time_without_429s() -> None:
    """A 10 s window that began 1.3 s before our first create, one create at a time: the 429s
    are over by the fifth window, the last five open within PRECISION_S of the server's end,
    and no create goes before a 429's Retry-After has passed."""
    for seed in range(4):
        server = FixedWindow(60, 10.0, -1.3)
        run = backlog(server, 14, workers=1, seed=seed)
        begins = [-1.3, *server.starts]
        late = [b - (a + 10.0) for a, b in itertools.pairwise(begins)]
        assert len(late) == 14
        assert all(gap <= PRECISION_S + MARGIN_S + 0.05 for gap in late[-5:]), (seed, late)
        assert len(run.refused) <= 4 and all(at < begins[5] for at in run.refused), run.refused
        for refused, retry_after in zip(run.refused, run.retry_after, strict=True):
            after = [at for at in [*run.created, *run.refused] if at > refused]
            assert not after or min(after) >= refused + retry_after, (seed, refused)


def test_windows_on_the_clocks_boundaries_are_learnt_too() -> None:
    """Windows that begin on fixed boundaries, not with a create: where the pacer thinks a
    window began is a little late each time, and its bounds give way; it keeps the rate."""
    for seed in range(3):
        run = backlog(FixedWindow(120, 10.0, -3.7, aligned=True), 8, seed=seed)
        assert run.share(120) >= 0.95
        assert run.refused_share() < 0.015, run.refused
