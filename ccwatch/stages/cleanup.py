"""``delete_jobs``: once a file is delivered or quarantined, its job is deleted on CloudConvert, so
its files leave CloudConvert's storage at once instead of after 24 hours.

A deletion never holds up a delivery: finishing a file only records the job id (in the ledger's
meta table, one row per job, so a restart still deletes it); :meth:`JobCleanup.sweep`, run on its
own waker thread a moment after a job is added (jobs finishing together share a sweep) or when a
retry falls due, deletes what is due. A failed deletion is retried later (after ``poll_max_s``,
then twice as long each time, up to 10 minutes); ``ccwatch status`` counts the jobs still to
delete.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from loguru import logger

from ccwatch.client.api import CloudConvertClient
from ccwatch.clock import Clock
from ccwatch.errors import CcwatchError
from ccwatch.ledger import Ledger

META_KEY = "jobs_to_delete"
RETRY_MAX_S = 600.0
GATHER_S = 0.25  # the longest a finished job waits for its deletion to start


def meta_key(ledger: Ledger) -> str:
    """Where the list is kept: a ledger shared by several hosts keeps one list per host, so no
    host overwrites another's."""
    return f"{META_KEY}@{ledger.host}" if ledger.shared else META_KEY


def _job_key(ledger: Ledger, job_id: str = "") -> str:
    # One meta row per job: recording or forgetting one costs the same at any backlog (a single
    # list rewritten on each change cost O(n) per file, O(n²) over a run --once of n files).
    return f"{meta_key(ledger)}/{job_id}"


def pending_in(ledger: Ledger) -> list[str]:
    """The job ids recorded as still to delete by this host (``ccwatch status`` reads this)."""
    legacy = ledger.get_meta(meta_key(ledger))  # the one list older versions kept
    jobs = {str(v) for v in legacy} if isinstance(legacy, list) else set()
    prefix = _job_key(ledger)
    jobs.update(key[len(prefix):] for key in ledger.meta_under(prefix))
    return sorted(jobs)


class Timer(Protocol):
    """Calls an action on its own thread: as soon as it can, or at a monotonic time."""

    def soon(self) -> None: ...
    def at(self, when: float) -> None: ...
    def stop(self) -> None: ...


class JobCleanup:
    """``timer`` (given :meth:`sweep`) makes the thread deletions run on, woken when a job is added
    or a retry falls due, so nothing polls on a fixed tick; without one, the owner sweeps."""

    def __init__(self, ledger: Ledger, api: CloudConvertClient, clock: Clock, *, retry_s: float,
                 on_deleted: Callable[[], None] = lambda: None,
                 timer: Callable[[Callable[[], None]], Timer] | None = None) -> None:
        self._ledger = ledger
        self._retry_s = retry_s  # the first retry's delay; it doubles up to RETRY_MAX_S
        self._api = api
        self._clock = clock
        self._on_deleted = on_deleted
        self._lock = threading.Lock()
        # job id → (monotonic time it is due, failed attempts so far); restored from the ledger
        self._due: dict[str, tuple[float, int]] = {j: (0.0, 0) for j in pending_in(ledger)}
        legacy = meta_key(ledger)
        if ledger.get_meta(legacy) is not None:  # move an older version's list to one row per job
            for job_id in self._due:
                ledger.set_meta(_job_key(ledger, job_id), True)
            ledger.set_meta(legacy, None)
        self._timer = timer(self.sweep) if timer is not None else None
        if self._due and self._timer is not None:
            self._timer.soon()  # what an earlier run left

    def stop(self) -> None:
        """No more sweeps on the timer's thread (the owner may still call :meth:`sweep`)."""
        if self._timer is not None:
            self._timer.stop()

    def record(self, job_id: str) -> dict[str, Any]:
        """The meta row that records ``job_id`` as to delete, for a caller to write in the same
        transaction as the file's last state (then ``add(job_id, recorded=True)``)."""
        return {_job_key(self._ledger, job_id): True}

    def add(self, job_id: str, *, recorded: bool = False) -> None:
        """A file is finished: its job is to be deleted (soon, on the next sweep)."""
        with self._lock:
            if job_id in self._due:
                return
            self._due[job_id] = (0.0, 0)
        if not recorded:
            self._ledger.set_metas(self.record(job_id))
        if self._timer is not None:
            # At the next multiple of GATHER_S: jobs finishing meanwhile ask for the same time,
            # so one sweep (one ledger write, one wake) takes them all, not one sweep a job.
            self._timer.at((self._clock.monotonic() // GATHER_S + 1) * GATHER_S)

    def pending(self) -> int:
        with self._lock:
            return len(self._due)

    def sweep(self, *, final: bool = False) -> None:
        """Delete every job that is due; one that cannot be deleted now is tried again later.

        ``final`` (``run --once`` ending): also those not due yet that were never tried; those
        that failed this run are left for the next."""
        now = self._clock.monotonic()
        with self._lock:
            due = [j for j, (at, failures) in self._due.items()
                   if at <= now or (final and failures == 0)]
        deleted: list[str] = []
        try:
            for job_id in due:
                try:
                    self._api.delete_job(job_id, path="")
                except CcwatchError as exc:
                    if exc.http_status != 404:  # 404: already gone, which is all we wanted
                        self._later(job_id, exc)
                        continue
                with self._lock:
                    self._due.pop(job_id, None)
                deleted.append(job_id)
        finally:  # one transaction for the whole sweep (a crash before it only deletes again)
            if deleted:
                self._ledger.set_metas({_job_key(self._ledger, j): None for j in deleted})
                for _ in deleted:
                    self._on_deleted()
                logger.debug("{} job(s) deleted on CloudConvert", len(deleted))

    def _later(self, job_id: str, exc: CcwatchError) -> None:
        with self._lock:
            _, failures = self._due.get(job_id, (0.0, 0))
            delay = min(RETRY_MAX_S, self._retry_s * 2 ** failures)
            when = self._clock.monotonic() + delay
            self._due[job_id] = (when, failures + 1)
        if self._timer is not None:
            self._timer.at(when)
        logger.bind(job=job_id).warning("could not delete the finished job ({}); trying again in "
                                        "{:.0f} s", exc.message, delay)
