"""The pipeline's one timer: a thread that calls an action at each time someone asked for (a job's
next poll, a file's next settle look, the gate reopening) or as soon as possible (a watcher event).
Times that fall together make one call; the action runs on this thread. With nothing asked for it
sleeps, so an idle daemon costs nothing here."""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable

from loguru import logger

from ccwatch.clock import Clock


class Waker:
    def __init__(self, clock: Clock, action: Callable[[], None]) -> None:
        self._clock = clock
        self._action = action
        self._cond = threading.Condition()
        self._times: list[float] = []  # a heap
        self._asked: set[float] = set()  # the times in the heap, so each is pushed once
        self._now = False
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="ccwatch-waker", daemon=True)
        self._thread.start()

    def at(self, when: float) -> None:
        """Run the action at monotonic time ``when``."""
        with self._cond:
            if when in self._asked:
                return
            self._asked.add(when)
            heapq.heappush(self._times, when)
            if self._times[0] == when:
                self._cond.notify()

    def soon(self) -> None:
        """Run the action as soon as the thread is free (calls made meanwhile fold into one)."""
        with self._cond:
            if not self._now:
                self._now = True
                self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and not self._now:
                    wait = (self._times[0] if self._times else float("inf")) - self._clock.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(min(wait, 3600.0))
                if self._stopped:
                    return
                self._now = False
                now = self._clock.monotonic()
                while self._times and self._times[0] <= now:
                    self._asked.discard(heapq.heappop(self._times))
            try:
                self._action()
            except Exception:  # never let this thread die: it is the pipeline's only timer
                logger.exception("wake-up action failed")


class Every:
    """Named actions repeated at fixed intervals (the rescans, the credits check) on one waker.

    Each call runs on a thread of its own, so a rescan stuck on a dead share holds up nothing
    else; an action still running when it falls due again is not started twice, and runs missed
    meanwhile fold into the next one.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._jobs: dict[str, tuple[float, Callable[[], object]]] = {}  # name → (interval, action)
        self._next: dict[str, float] = {}
        self._running: set[str] = set()
        self._waker = Waker(clock, self._start_due)

    def add(self, name: str, interval_s: float, action: Callable[[], object], *,
            now: bool = False) -> None:
        """Run ``action`` every ``interval_s`` (``now``: the first run at once), replacing the
        action of that name if there was one."""
        when = self._clock.monotonic() + (0.0 if now else interval_s)
        with self._lock:
            self._jobs[name] = (interval_s, action)
            self._next[name] = when
        self._waker.at(when)

    def remove(self, name: str) -> None:
        with self._lock:
            self._jobs.pop(name, None)
            self._next.pop(name, None)

    def stop(self) -> None:
        self._waker.stop()

    def _start_due(self) -> None:
        now = self._clock.monotonic()
        starts: list[tuple[str, Callable[[], object]]] = []
        with self._lock:
            for name, when in list(self._next.items()):
                if when > now:
                    continue
                interval, action = self._jobs[name]
                self._next[name] = now + interval
                self._waker.at(now + interval)
                if name not in self._running:
                    self._running.add(name)
                    starts.append((name, action))
        for name, action in starts:
            threading.Thread(target=self._call, args=(name, action), name=f"ccwatch-{name}",
                             daemon=True).start()

    def _call(self, name: str, action: Callable[[], object]) -> None:
        try:
            action()
        except Exception:
            logger.exception("{} failed", name)
        finally:
            with self._lock:
                self._running.discard(name)
