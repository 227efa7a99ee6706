"""One thread that calls an action at each time someone asked for (a job's next poll), so a due
poll does not wait for the next scheduled step. Times that fall together make one call; the
action runs on this thread."""

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
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="ccwatch-waker", daemon=True)
        self._thread.start()

    def at(self, when: float) -> None:
        """Run the action at monotonic time ``when``."""
        with self._cond:
            heapq.heappush(self._times, when)
            if self._times[0] == when:
                self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    wait = (self._times[0] if self._times else float("inf")) - self._clock.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(min(wait, 60.0))
                if self._stopped:
                    return
                now = self._clock.monotonic()
                while self._times and self._times[0] <= now:
                    heapq.heappop(self._times)
            try:
                self._action()
            except Exception:  # the scheduled step still runs; never let this thread die
                logger.exception("wake-up action failed")
