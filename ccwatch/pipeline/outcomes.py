"""What a stage's error means for its file: the decisions behind the pipeline's per-file error boundary.

- the file changed or vanished before its outputs were delivered: forget that version (a new one
  is converted; its outdated job was already deleted);
- the account cannot submit (401, 402, 403): pause every submission and probe, the file waits;
- a folder is unavailable (an unmounted share): the file waits, quietly, until it returns;
- transient (network, 5xx, 429): retry with backoff, the file keeps its state, until
  ``give_up_after_s`` has passed since the first of them; then quarantine;
- the shared ledger is unreachable: back off and write nothing (nothing is done without it);
- another host holds the file (started it first, or took it over): let it go, it finishes there;
- any other ccwatch error: quarantine the file;
- anything else is a bug or an unexpected OS error: logged whole, then treated as transient;
- the ledger cannot be written (disk full, locked), even while recording one of the above: the
  file backs off (up to 30 s), said once until a write succeeds again.
"""

from __future__ import annotations

import enum
import random
import sqlite3
import threading
from collections.abc import Callable

from loguru import logger

from ccwatch.errors import (
    AccountError,
    CcwatchError,
    ClaimLost,
    CreateRateLimited,
    FileVanished,
    FolderUnavailable,
    LedgerUnavailable,
    RateLimited,
    TransientError,
)
from ccwatch.pipeline import backoff
from ccwatch.pipeline.due import Slot
from ccwatch.pipeline.gate import SubmissionGate
from ccwatch.stages.context import Context
from ccwatch.stages.quarantine import quarantine

# How often a file waiting for an unavailable folder looks again.
UNAVAILABLE_RETRY_S = 5.0
# The longest a file waits to try again while the ledger cannot be written.
LEDGER_RETRY_MAX_S = 30.0


class Verdict(enum.Enum):
    RETRY = "retry"  # the slot stays; it is due again at ``slot.due``
    DROPPED = "dropped"  # the ledger row is gone: the file changed or vanished before upload
    FAILED = "failed"  # quarantined: ``slot.entry`` is the failed row
    LOST = "lost"  # another host holds the row (a shared ledger): it is theirs to finish


class Outcomes:
    def __init__(self, ctx: Context, gate: SubmissionGate, rng: random.Random, *,
                 share_hold: Callable[[float], None]) -> None:
        self.ctx = ctx
        self.gate = gate
        self._share_hold = share_hold  # tells the hosts sharing the ledger about a 429
        self._clock = ctx.clock
        self._rng = rng
        self._lock = threading.Lock()
        self._ledger_trouble: str | None = None  # said once; cleared by the next success

    def handle(self, slot: Slot, exc: Exception) -> Verdict:
        """:meth:`decide`, and if deciding fails too (the ledger cannot be written: its disk is
        full, another process holds its lock), back off instead of trying again at once."""
        if isinstance(exc, sqlite3.Error):  # the ledger itself: nothing can be recorded
            return self._cannot_record(slot, exc)
        try:
            return self.decide(slot, exc)
        except Exception as failure:
            return self._cannot_record(slot, failure)

    def _cannot_record(self, slot: Slot, failure: Exception) -> Verdict:
        slot.retries += 1
        delay = min(LEDGER_RETRY_MAX_S, backoff.retry_delay(slot.retries, None, rng=self._rng))
        slot.due = self._clock.monotonic() + delay
        message = f"{type(failure).__name__}: {failure}"
        with self._lock:
            first, self._ledger_trouble = self._ledger_trouble is None, message
        if first:  # one line for the whole trouble, not one per file and attempt
            logger.opt(exception=failure).error(
                "cannot record progress in the ledger ({}); files wait and are tried again with "
                "backoff (up to {:.0f} s). Is the state dir's disk full, or another process "
                "holding the ledger?", message, LEDGER_RETRY_MAX_S)
        return Verdict.RETRY

    def recorded(self) -> None:
        """A stage wrote the ledger again: the trouble (if any) is over."""
        if self._ledger_trouble is None:
            return
        with self._lock:
            was, self._ledger_trouble = self._ledger_trouble, None
        if was is not None:
            logger.info("the ledger can be written again; files resume")

    def decide(self, slot: Slot, exc: Exception) -> Verdict:
        """Decide and record what ``exc``, raised by the slot's stage work, means for its file.

        The caller (the pipeline) owns its bookkeeping: it retires the slot unless ``RETRY``.
        """
        if isinstance(exc, FileVanished):
            return self._vanished(slot, exc)
        if isinstance(exc, ClaimLost):
            # Normal for a settled file two hosts reached together; after a takeover, our
            # lease had expired (this host stalled), and the new owner resumes it.
            logger.bind(folder=slot.entry.folder, file=slot.entry.relpath).info(
                "{}; it finishes there", exc.message)
            return Verdict.LOST
        if isinstance(exc, AccountError):
            slot.due = self.gate.paused(exc, now=self._clock.monotonic(), wall=self._clock.wall())
            return Verdict.RETRY
        if isinstance(exc, FolderUnavailable):
            # Said once by the folder's root, not per file; not a failure of this file either,
            # so it does not count towards give_up_after_s.
            slot.due = self._clock.monotonic() + UNAVAILABLE_RETRY_S
            return Verdict.RETRY
        if isinstance(exc, TransientError):
            return self._transient(slot, exc)
        if isinstance(exc, CcwatchError):
            return self._fail(slot, exc)
        logger.bind(folder=slot.entry.folder, file=slot.entry.relpath, job=slot.entry.job_id).opt(
            exception=exc).error("unexpected error: {}", exc)
        # So the file is retried and, if it keeps failing, quarantined after give_up_after_s.
        return self._transient(slot, TransientError(f"unexpected error: {exc!r}", code="INTERNAL"))

    def _vanished(self, slot: Slot, exc: FileVanished) -> Verdict:
        entry = slot.entry
        logger.bind(folder=entry.folder, file=entry.relpath, job=entry.job_id).info(exc.message)
        self.ctx.ledger.forget(entry.id)
        return Verdict.DROPPED

    def _transient(self, slot: Slot, exc: TransientError) -> Verdict:
        entry = slot.entry
        wall = self._clock.wall()
        if isinstance(exc, LedgerUnavailable):
            # Nothing can be recorded, so nothing is done: wait for the database, never give up.
            slot.due = self._clock.monotonic() + backoff.retry_delay(slot.retries, None, rng=self._rng)
            slot.retries += 1
            return Verdict.RETRY
        if entry.transient_since is None:
            entry = self.ctx.ledger.update(entry.id, now=wall, transient_since=wall)
            slot.entry = entry
        assert entry.transient_since is not None
        if wall - entry.transient_since >= self.ctx.config.daemon.give_up_after_s:
            return self._fail(slot, exc)
        now = self._clock.monotonic()
        log = logger.bind(folder=entry.folder, file=entry.relpath, job=entry.job_id)
        if isinstance(exc, CreateRateLimited):
            # The create pacer heard it and holds creation (only) until the window reopens; the
            # file waits for the pacer like any other create.
            slot.due = now
            log.warning("{} (job creation waits for the rate window, Retry-After {} s)",
                        exc.message, "none" if exc.retry_after_s is None else f"{exc.retry_after_s:g}")
            return Verdict.RETRY
        delay = backoff.retry_delay(slot.retries, exc.retry_after_s, rng=self._rng)
        if isinstance(exc, RateLimited):
            # The whole account is throttled, not this file: hold every submission, do not let
            # the file's own backoff grow.
            self.gate.hold(now + delay)
            self._share_hold(wall + delay)
        else:
            slot.retries += 1
        slot.due = now + delay
        log.warning("{} (retrying in {:.1f} s)", exc.message, delay)
        return Verdict.RETRY

    def _fail(self, slot: Slot, exc: CcwatchError) -> Verdict:
        try:
            slot.entry = quarantine(self.ctx, slot.entry, exc)
        except FolderUnavailable:
            slot.due = self._clock.monotonic() + UNAVAILABLE_RETRY_S
            return Verdict.RETRY
        except OSError as err:
            logger.bind(folder=slot.entry.folder, file=slot.entry.relpath).error(
                "cannot quarantine ({}); will try again: {}", exc.message, err)
            slot.due = self._clock.monotonic() + backoff.RETRY_MAX_S
            return Verdict.RETRY
        return Verdict.FAILED
