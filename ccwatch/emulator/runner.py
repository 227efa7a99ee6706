"""Runs task work on a small pool; delayed work waits in a heap watched by one timer thread.

A sleeping thread per job would make 500 slow jobs cost 500 threads; the heap makes them cost none.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor


class Runner:
    def __init__(self, work: Callable[[str], None], workers: int = 4) -> None:
        self._work = work
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="emulator-engine")
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._timer = threading.Thread(target=self._loop, name="emulator-timer", daemon=True)
        self._timer.start()

    def submit(self, task_id: str, delay_s: float = 0.0) -> None:
        if delay_s <= 0:
            self._start(task_id)
            return
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay_s, next(self._seq), task_id))
            self._cond.notify()

    def _start(self, task_id: str) -> None:
        if not self._closed:
            self._pool.submit(self._work, task_id)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (
                    not self._heap or self._heap[0][0] > time.monotonic()
                ):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                if self._closed:
                    return
                due: list[str] = []
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap)[2])
            for task_id in due:
                self._start(task_id)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify_all()
        self._timer.join(timeout=5)
        self._pool.shutdown(wait=True, cancel_futures=True)
