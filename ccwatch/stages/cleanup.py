"""``delete_jobs``: once a file is delivered or quarantined, its job is deleted on CloudConvert, so
its files leave CloudConvert's storage at once instead of after 24 hours.

A deletion never holds up a delivery: finishing a file only records the job id (in the ledger's
meta table, so a restart still deletes it); :meth:`JobCleanup.sweep`, run on the daemon's
scheduler, deletes what is due. A failed deletion is retried later (after ``poll_max_s``, then
twice as long each time, up to 10 minutes); ``ccwatch status`` counts the jobs still to delete.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from loguru import logger

from ccwatch.api import CloudConvertClient
from ccwatch.clock import Clock
from ccwatch.errors import CcwatchError
from ccwatch.ledger import Ledger

META_KEY = "jobs_to_delete"
RETRY_MAX_S = 600.0


def meta_key(ledger: Ledger) -> str:
    """Where the list is kept: a ledger shared by several hosts keeps one list per host, so no
    host overwrites another's."""
    return f"{META_KEY}@{ledger.host}" if ledger.shared else META_KEY


def pending_in(ledger: Ledger) -> list[str]:
    """The job ids recorded as still to delete by this host (``ccwatch status`` reads this)."""
    value = ledger.get_meta(meta_key(ledger))
    return [str(v) for v in value] if isinstance(value, list) else []


class JobCleanup:
    def __init__(self, ledger: Ledger, api: CloudConvertClient, clock: Clock, *, retry_s: float,
                 on_deleted: Callable[[], None] = lambda: None) -> None:
        self._ledger = ledger
        self._retry_s = retry_s  # the first retry's delay; it doubles up to RETRY_MAX_S
        self._api = api
        self._clock = clock
        self._on_deleted = on_deleted
        self._lock = threading.Lock()
        # job id → (monotonic time it is due, failed attempts so far); restored from the ledger
        self._due: dict[str, tuple[float, int]] = {j: (0.0, 0) for j in pending_in(ledger)}

    def add(self, job_id: str) -> None:
        """A file is finished: its job is to be deleted (soon, on the next sweep)."""
        with self._lock:
            self._due.setdefault(job_id, (0.0, 0))
            self._save()

    def pending(self) -> int:
        with self._lock:
            return len(self._due)

    def sweep(self) -> None:
        """Delete every job that is due; one that cannot be deleted now is tried again later."""
        now = self._clock.monotonic()
        with self._lock:
            due = [j for j, (at, _) in self._due.items() if at <= now]
        for job_id in due:
            try:
                self._api.delete_job(job_id, path="")
            except CcwatchError as exc:
                if exc.http_status != 404:  # 404: already gone, which is all we wanted
                    self._later(job_id, exc)
                    continue
            with self._lock:
                self._due.pop(job_id, None)
                self._save()
            self._on_deleted()
            logger.bind(job=job_id).debug("job deleted on CloudConvert")

    def _later(self, job_id: str, exc: CcwatchError) -> None:
        with self._lock:
            _, failures = self._due.get(job_id, (0.0, 0))
            delay = min(RETRY_MAX_S, self._retry_s * 2 ** failures)
            self._due[job_id] = (self._clock.monotonic() + delay, failures + 1)
        logger.bind(job=job_id).warning("could not delete the finished job ({}); trying again in "
                                        "{:.0f} s", exc.message, delay)

    def _save(self) -> None:
        self._ledger.set_meta(meta_key(self._ledger), sorted(self._due))
