"""Time as the daemon reads it: ``SystemClock``, and ``FakeClock`` that tests step by hand.

The API client, the pipeline, the stages and the commands take a :class:`Clock` instead of calling
``time``, so their timing (backoff, polls, timestamps) is testable without sleeping. Threads that
only wait for something (folder pollers, the waker, the daemon loop) wait on their events.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def now(self) -> dt.datetime: ...

    def wall(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Real time."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def wall(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


class FakeClock:
    """A clock tests step by hand; ``sleep`` advances it instead of waiting."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self._t = start
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self._t

    def wall(self) -> float:
        return self.monotonic()

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.monotonic(), dt.UTC)

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._t += max(0.0, seconds)


def iso(ts: float) -> str:
    """Seconds since the epoch as the API's ISO-8601 form (``+00:00``)."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")
