"""Jobs handed to the pipeline from outside its worker pools: a verified webhook delivery
(``job_pushed``) and the sync host's waits (``_wait`` hands a processing job to the waiter,
``_waited`` takes it back). Mixed into :class:`~ccwatch.pipeline.dispatch.Pipeline`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from ccwatch.client.syncwait import JobWaiter, Waited
from ccwatch.clock import Clock
from ccwatch.ledger import State
from ccwatch.pipeline.due import SUBMIT_STATES, Agenda, Slot
from ccwatch.stages.context import Context

# What a webhook delivery came to: tracked now, not ours, or nothing left to do for it.
Pushed = Literal["accepted", "unknown", "done"]


class JobHandoff:
    # Set by the pipeline (the class this is mixed into).
    ctx: Context
    _clock: Clock
    _lock: threading.RLock
    _agenda: Agenda
    _by_job: dict[str, int]
    _trackers: ThreadPoolExecutor
    _downloads: ThreadPoolExecutor
    _waiter: JobWaiter | None
    _stopping: bool

    def kick(self) -> None:
        raise NotImplementedError

    def _track(self, slot: Slot) -> None:
        raise NotImplementedError

    def _deliver(self, slot: Slot) -> None:
        raise NotImplementedError

    def _guarded(self, slot: Slot, work: Callable[[Slot], None]) -> None:
        raise NotImplementedError

    def job_pushed(self, job: dict[str, Any]) -> Pushed:
        """A verified webhook delivery: "accepted" (tracked now), "unknown" or "done" (handled)."""
        job_id = str(job.get("id"))
        with self._lock:
            entry_id = self._by_job.get(job_id)
        if entry_id is None:
            # The delivery can overtake our own bookkeeping right after the upload: ask the ledger.
            entry = self.ctx.ledger.by_job_id(job_id)
            if entry is None:
                return "unknown"
            entry_id = entry.id
        with self._lock:
            slot = self._agenda.slots.get(entry_id)
            # SETTLED too: a fresh slot's entry is only refreshed when its submit returns, and a
            # fast job's webhook can arrive before that.
            if slot is None or slot.entry.state not in (*SUBMIT_STATES, State.PROCESSING):
                return "done"
            if slot.pushed_job is not None:
                return "done"
            slot.pushed_job = job
            self._agenda.wake(slot)  # a processing job's delivery is read at once
        self.kick()
        return "accepted"

    def _wait(self, slot: Slot) -> bool:
        """Hand a processing job to the waiter; False: read it on the tracking pool instead."""
        job_id = slot.entry.job_id
        if (self._waiter is None or self._stopping or slot.poll_only or not job_id
                or slot.pushed_job is not None):
            return False
        # Never past the job's job_timeout_s: the read at a wait's deadline is what checks it.
        left = self.ctx.config.daemon.job_timeout_s - (self._clock.wall() - slot.entry.updated_at)
        return self._waiter.wait(slot.entry.id, job_id, deadline_s=left)

    def _waited(self, entry_id: int, job: Waited) -> None:
        """A wait ended (on the waiter's loop): read the job at once (then, still running, wait
        again), or poll it from now on."""
        with self._lock:
            slot = self._agenda.slots.get(entry_id)
        if slot is None:
            return
        work: Callable[[Slot], None] = self._track
        pool = self._trackers
        if job is None:
            slot.poll_only = True
            slot.due = self._clock.monotonic() + self.ctx.config.daemon.poll_interval_s
            work = _nothing
        elif job != "running" and isinstance(job.get("tasks"), list):
            slot.pushed_job = job
            pool, work = self._downloads, self._finish
        # (An ended job without its tasks is read again with them; so is one still running at the
        # wait's deadline, which also checks on it.)
        try:
            pool.submit(self._guarded, slot, work)
        except RuntimeError:
            pass  # stopping: the file resumes from the ledger on the next start

    def _finish(self, slot: Slot) -> None:
        """A job the waiter saw end: its outputs are planned and delivered on this download
        thread, one hand-off instead of two (tracking pool, then download pool)."""
        self._track(slot)
        if slot.entry.state is State.DELIVERING and not self._stopping:
            self._deliver(slot)


def _nothing(slot: Slot) -> None:
    """The work of a job handed back by the waiter: none now, its next poll is set."""
