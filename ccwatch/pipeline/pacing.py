"""Pacing job creation at the account's rate limit: pure, the clock value is passed in.

The API counts job creations in a window (``X-RateLimit-Limit`` per window, ``X-RateLimit-Remaining``
left in it) but says neither how long the window is nor when it ends. So the pacer learns that:

- each create answer tells how many are left; creates sent but not yet answered are subtracted,
  so several uploads in parallel do not overshoot;
- a window starts (at the latest) with its first create; a 429's ``Retry-After`` says when it ends,
  which gives the window's length (measured from that create's *sending*: never too short); from
  then on each window's end is predicted from its first create's *answer* (the server began the
  window before it answered, so the prediction is never early however slow the request was), and
  creation waits for it once nothing is left;
- before the length is known, one create is let through when nothing is left: its 429 teaches it.

So a big backlog runs at the limit with one 429 to learn from (another when the window changes).
"""

from __future__ import annotations

import collections
import threading

# A predicted end a little late costs little; a little early costs a 429.
MARGIN_S = 0.05
# Asked again this soon while this window's end is about to be known.
RECHECK_S = 0.1
# An admitted create that was never answered (its file vanished first, say) stops counting then.
STALE_S = 30.0


class CreatePacer:
    """Thread-safe: the API client reports on upload threads, the gate asks at dispatch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._left: int | None = None  # creates left in the window, as last answered
        self._limit: int | None = None  # creates per window (X-RateLimit-Limit), once told
        self._outstanding: collections.deque[float] = collections.deque()  # admitted, unanswered
        self._began: float | None = None  # when this window's first create was sent
        self._anchored = False  # this window's end is predicted from its first answer
        # A predicted end passed: one create opens the next window and the others wait for its
        # answer (a prediction a little early then costs one 429, not one per upload worker).
        self._opening = False
        self._last_began: float | None = None  # the previous window's first sending
        self._end: float | None = None  # when this window ends (monotonic), once predictable
        self._window: float | None = None  # the window's length, once a 429 told an end
        self._probe_until = 0.0  # a create let through to learn the end: no other before this

    # -- reports from the API client ---------------------------------------------------------------

    def sent(self, now: float) -> None:
        with self._lock:
            if self._began is None:
                self._began = now
                self._end = now + self._window if self._window is not None else None

    def answered(self, now: float, remaining: int | None, limit: int | None = None) -> None:
        """A create was answered with ``X-RateLimit-Remaining`` and ``-Limit`` (None: absent)."""
        with self._lock:
            self._answer()
            if limit is not None and limit > 0:
                self._limit = limit
            if remaining is None:
                return
            # Answers to parallel creates arrive out of order, so Remaining may go up by as many as
            # were in flight at once; more than that, and a window began that was not foreseen
            # (it began at the latest now).
            new_window = (self._left is not None
                          and remaining > self._left + len(self._outstanding) + 1)
            if new_window:
                self._began = now
            if (new_window or not self._anchored) and self._window is not None:
                self._end = now + self._window
            self._anchored = True
            self._opening = False
            # Within a window what is left only goes down: a late answer's higher count is stale.
            self._left = remaining if new_window or self._left is None else min(self._left, remaining)

    def refused(self, now: float, retry_after_s: float | None) -> None:
        """A create was answered 429: nothing is left; ``Retry-After`` says when the window ends."""
        with self._lock:
            self._answer()
            self._left = 0
            self._probe_until = 0.0
            self._opening = False
            if retry_after_s is None:
                return
            self._end = now + retry_after_s
            if self._opening_refused():
                # The window we thought had ended still runs: it began at the latest with the
                # previous window's first create, so the length is at least that much.
                assert self._last_began is not None
                self._window = max(self._window or 0.0, self._end - self._last_began)
                self._began = None  # the next create, after this end, begins the next window
            elif self._began is not None and self._end > self._began:
                # From our first create to the end: the window, or a little more (never less).
                self._window = self._end - self._began

    def _opening_refused(self) -> bool:
        return (not self._anchored and self._window is not None and self._last_began is not None
                and self._began is not None)

    def failed(self) -> None:
        """A create got no answer (network error): it may or may not have counted."""
        with self._lock:
            self._answer()
            self._opening = False

    def _answer(self) -> None:
        if self._outstanding:
            self._outstanding.popleft()

    # -- the gate's questions ----------------------------------------------------------------------

    def admit(self, now: float) -> bool:
        """May a create be started now? Yes counts it as outstanding until answered."""
        with self._lock:
            wait = self._wait(now)
            if wait > 0:
                return False
            if self._left is not None and self._left - len(self._outstanding) <= 0:
                self._probe_until = now + 1.0  # this one finds out when the window ends
            self._outstanding.append(now)
            return True

    def delay(self, now: float) -> float:
        """Seconds before a create may be started (0: now)."""
        with self._lock:
            return self._wait(now)

    def _wait(self, now: float) -> float:
        if self._end is not None and now >= self._end + MARGIN_S:
            # The window is over: the next create begins a new one with the whole limit.
            if self._began is not None:  # (None: its opening create was refused; keep the last)
                self._last_began = self._began
            self._left, self._began, self._end = self._limit, None, None
            self._anchored = False
            self._opening = True
            self._outstanding.clear()  # unanswered ones were refused or never sent
        while self._outstanding and self._outstanding[0] < now - STALE_S:
            self._outstanding.popleft()
        if self._opening and self._outstanding:
            return RECHECK_S  # the next window's first create is out: wait for its answer
        if self._left is None or self._left - len(self._outstanding) > 0:
            return 0.0
        if self._end is not None:
            return self._end + MARGIN_S - now
        if self._window is not None:
            return RECHECK_S  # the end is known once this window's first create is sent
        return max(0.0, self._probe_until - now)  # 0: one create may go and learn the end
