"""Pacing job creation at the account's rate limit: pure, the clock values are passed in.

The API counts job creations in a window (``X-RateLimit-Limit`` per window, ``X-RateLimit-Remaining``
left in it) but says neither how long the window is nor when it ends. So the pacer learns that:

- each create answer tells how many are left; creates admitted but not yet answered are
  subtracted, so several uploads in parallel do not overshoot (and the very first create goes
  alone: the window may be used up already, by an earlier run or another host);
- a window begins with the first create that reaches the server after the last one ended:
  between that create's sending and its answer. Its end is held as an interval: a 429's
  ``Retry-After`` bounds it (whole seconds are taken as rounded up, so the end is within the
  last of them), a create that succeeds after the server said "none left" proves it passed;
- so each window we began bounds the window's *length*, and the length predicts the next end;
- while the length is known to no better than ``PRECISION_S``, the next window is tried early
  (``TRY_AT`` into its interval): a success proves the end earlier, a 429 later. That is
  remembered in the length, so within a few windows each one ends with no 429 and at most
  ``PRECISION_S`` idle;
- before anything bounds the end, one create is let through when nothing is left: its 429 says.
  Our first window may have begun long before our first create: what it suggests is used, but
  not tried early on;
- no create goes before a 429's ``Retry-After`` has passed (a try refused costs the rest of
  that second).

So a backlog runs at the limit with two or three 429s while the length is learnt (more if the
server's window changes, or if it rounds ``Retry-After`` down).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator

# A window end held to within this is opened at its late edge: no more tries, no 429s.
PRECISION_S = 0.3
# Tried this far into the interval: a success shrinks it to this share, a 429 to the rest, so
# an interval of a second or so is learnt with at most one 429.
TRY_AT = 0.7
# Opened this long after the latest possible end: a clock tick's slack.
MARGIN_S = 0.05
# Asked again this soon while a create that may open the next window is out.
RECHECK_S = 0.1
# With no bound on the end, one create a second may go to find it.
PROBE_EVERY_S = 1.0
# An admitted create that was never answered (its file vanished first, say) stops counting then.
STALE_S = 30.0


@dataclasses.dataclass(slots=True)
class _Window:
    """What the answers prove of one window: it began in [start_lo, start_hi] (``guessed``: or
    perhaps before), and ends after ``end_lo``, by ``end_hi`` (None: not bounded so yet)."""

    start_lo: float | None
    start_hi: float
    guessed: bool = False
    end_lo: float | None = None
    end_hi: float | None = None


class CreatePacer:
    """Thread-safe: the API client reports on upload threads, the gate asks at dispatch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._left: int | None = None  # creates left in the window, as last answered
        self._heard = False  # any create answered yet (before that, one at a time)
        self._held_back = False  # a create was refused admission since the last answer
        self._on_answer: Callable[[], None] | None = None
        self._here = threading.local()  # answers heard on this thread (see ``creating``)
        self._outstanding: collections.deque[float] = collections.deque()  # admitted, unanswered
        self._trying = False  # a create sent with nothing left is out: the others wait for it
        self._last_try = float("-inf")  # when a create was last let through with nothing left
        self._not_before = float("-inf")  # the last 429's Retry-After: no create before it ends
        # (when, creates left): what the answers told, for telling old answers from a new window
        self._told_left: collections.deque[tuple[float, int]] = collections.deque()
        self._window: _Window | None = None  # the window creates go into now
        # The window's length lies in [length_lo, length_hi], as far as the windows seen tell.
        self._length_lo = 0.0
        self._length_hi: float | None = None
        self._length_guessed = False  # the upper bound rests on a guessed start: no early tries

    # -- reports from the API client ---------------------------------------------------------------

    def answered(self, sent: float, now: float, remaining: int | None) -> None:
        """A create sent at ``sent`` succeeded with ``X-RateLimit-Remaining`` (None: absent)."""
        with self._answering(sent):
            # Every create answered before this one was sent reached the server first: in the
            # same window this one's Remaining is lower. (Answers to parallel creates arrive out
            # of order, so what is left is the least answered.)
            before = self._left_before(sent)
            if remaining is None:
                if before == 0:
                    self._left = None  # it went after "none left", but says nothing: run free
                return
            if self._window is None or (before is not None and remaining >= before):
                # A new window; if this create followed a "none left", it is the one that began
                # it. Our first may have been, or the window began long before: a guess.
                first = self._window is None
                self._begin_window(sent if before == 0 or first else None, now, guessed=first)
                self._left = remaining
            else:
                self._left = remaining if self._left is None else min(self._left, remaining)
            self._tell(now, self._left)

    def refused(self, sent: float, now: float, retry_after_s: float | None) -> None:
        """A create sent at ``sent`` was answered 429: nothing is left; ``Retry-After`` says when
        the window ends."""
        with self._answering(sent):
            window = self._window
            if window is None:
                window = self._window = _Window(None, now)  # it had begun by now
            elif self._left and sent < window.start_hi:
                return  # sent before this window began: refused in the one before
            self._left = 0
            self._tell(now, 0)
            lowest = sent  # refused after it was sent: the end is later
            if retry_after_s is not None:
                # Whole seconds are taken as rounded up: the end is within the last of them.
                whole = retry_after_s >= 1 and float(retry_after_s).is_integer()
                lowest = max(lowest, sent + retry_after_s - (1.0 if whole else 0.0))
                latest = now + max(retry_after_s, RECHECK_S)
                self._not_before = max(self._not_before, now + retry_after_s)  # as the server asks
                held = window.end_hi  # (a bound this refusal proves wrong gives way)
                window.end_hi = latest if held is None or held <= lowest else min(held, latest)
            window.end_lo = lowest if window.end_lo is None else max(window.end_lo, lowest)
            self._learn(window)

    def failed(self, sent: float) -> None:
        """A create sent at ``sent`` got no answer (network error): it may or may not have counted."""
        with self._answering(sent):
            pass

    def wake_on_answer(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the answering thread) after an answer when a create was held
        back since the last one: what held it may be over."""
        self._on_answer = callback

    @contextlib.contextmanager
    def creating(self) -> Iterator[None]:
        """Around the work of one admitted create, on its thread: if it sent no create after all
        (its job found by its tag, its file unreadable), the create is withdrawn."""
        before = getattr(self._here, "answers", 0)
        try:
            yield
        finally:
            if getattr(self._here, "answers", 0) == before:
                self.withdraw()

    @contextlib.contextmanager
    def _answering(self, sent: float) -> Iterator[None]:
        self._here.answers = getattr(self._here, "answers", 0) + 1
        with self._lock:
            self._heard = True
            if sent >= self._last_try:  # (sent no earlier than the try was let through: may be it)
                self._trying = False
            if self._outstanding:
                self._outstanding.popleft()
            yield
            held_back, self._held_back = self._held_back, False
        if held_back and self._on_answer is not None:
            self._on_answer()

    def _tell(self, now: float, left: int) -> None:
        """Remember what was left as of ``now``, for answers to creates sent after it."""
        oldest = self._outstanding[0] if self._outstanding else now
        while len(self._told_left) > 1 and self._told_left[1][0] <= oldest:
            self._told_left.popleft()  # no create still out was sent before the next one
        self._told_left.append((now, left))

    def _left_before(self, sent: float) -> int | None:
        """What was left as the answers before ``sent`` told (None: none came before it)."""
        for told_at, left in reversed(self._told_left):
            if told_at < sent:
                return left
        return None

    def _begin_window(self, opener_sent: float | None, now: float, *, guessed: bool) -> None:
        """A window began by ``now``: with the create sent at ``opener_sent``, when known."""
        ended = self._window
        # The window before ended by now. (Unless we used it up, a guessed start says nothing.)
        if ended is not None and not (ended.guessed and opener_sent is None):
            ended.end_hi = now if ended.end_hi is None else min(ended.end_hi, now)
            self._learn(ended)
        self._window = _Window(opener_sent, now, guessed)
        self._told_left.clear()
        self._last_try = float("-inf")

    def _learn(self, window: _Window) -> None:
        """Narrow the length by a window's proven bounds; if they contradict what was learnt (the
        server's window changed, or a guessed start was wrong), its own bounds replace it."""
        shortest = None if window.end_lo is None else window.end_lo - window.start_hi
        longest = (None if window.start_lo is None or window.end_hi is None
                   else window.end_hi - window.start_lo)
        length_lo = self._length_lo if shortest is None else max(self._length_lo, shortest)
        length_hi = (self._length_hi if longest is None
                     else longest if self._length_hi is None else min(self._length_hi, longest))
        if length_hi is not None and length_hi < length_lo:
            length_lo, length_hi = shortest or 0.0, longest
        if longest is not None:
            self._length_guessed = window.guessed
        self._length_lo, self._length_hi = length_lo, length_hi

    # -- the gate's questions ----------------------------------------------------------------------

    def admit(self, now: float) -> bool:
        """May a create be started now? Yes counts it as outstanding until answered."""
        with self._lock:
            if self._wait(now) > 0:
                self._held_back = True
                return False
            if self._left is not None and self._left - len(self._outstanding) <= 0:
                self._trying, self._last_try = True, now  # it opens the next window, or learns
            self._outstanding.append(now)
            return True

    def held_until(self, now: float) -> float | None:
        """Just before a create admitted earlier is sent: until when a 429 since asks it to wait
        (None: send it)."""
        with self._lock:
            return self._not_before if self._not_before > now else None

    def withdraw(self) -> None:
        """A create admitted earlier is not sent after all: uncount it (see ``creating``)."""
        with self._lock:
            if self._outstanding and self._outstanding.pop() >= self._last_try:
                self._trying = False

    def delay(self, now: float) -> float:
        """Seconds before a create may be started (0: now)."""
        with self._lock:
            return self._wait(now)

    def _wait(self, now: float) -> float:
        while self._outstanding and self._outstanding[0] < now - STALE_S:
            self._outstanding.popleft()
            self._trying = False
        if self._left is None:  # (the first create alone: the window may be used up already)
            return 0.0 if self._heard or not self._outstanding else RECHECK_S
        if self._left - len(self._outstanding) > 0:
            return 0.0
        if self._trying or self._left > 0:
            return RECHECK_S  # what is left is spoken for: the answers out tell what next
        lo, hi = self._end_bounds()
        if hi is None:  # nothing bounds the end: one create a second finds out
            at = self._last_try + PROBE_EVERY_S
        elif lo is None or hi - lo <= PRECISION_S or not self._length_unsure():
            at = hi + MARGIN_S
        else:
            at = lo + TRY_AT * (hi - lo)
        return max(0.0, at - now, self._not_before - now)

    def _end_bounds(self) -> tuple[float | None, float | None]:
        """When this window ends: after the first, by the second (None: unbounded); what the
        answers proved, narrowed by what the length predicts."""
        window = self._window
        if window is None:
            return None, None
        lo, hi = window.end_lo, window.end_hi
        if window.start_lo is not None:
            predicted = window.start_lo + self._length_lo
            lo = predicted if lo is None else max(lo, predicted)
        if self._length_hi is not None:
            predicted = window.start_hi + self._length_hi
            if lo is None or predicted >= lo:  # (a prediction the answers disproved is dropped)
                hi = predicted if hi is None else min(hi, predicted)
        return lo, hi

    def _length_unsure(self) -> bool:
        """Trying early teaches the length; the rest of the interval (when the window began,
        the answer's delay) no try can narrow."""
        return (self._length_hi is not None and not self._length_guessed
                and self._length_hi - self._length_lo > PRECISION_S)
