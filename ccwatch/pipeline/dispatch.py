"""The pipeline: the only module that knows the order of the stages.

    note (watch/scan) → settle → ledger → submit → track → deliver → done
                                              ╰──────────────┴──────→ quarantine

``step()`` is one turn of the crank: it moves noted paths into the settlers, admits settled files to
the ledger, and hands due entries to bounded worker pools (uploads, tracking, downloads). Everything a
file waits for (its next poll, a retry backoff, an account pause) is a time on its slot, not a
sleeping thread, so thousands of long conversions cost no threads. The daemon calls ``step()`` from
one scheduled job; ``run --once`` and tests call it in a loop.
"""

from __future__ import annotations

import random
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from loguru import logger

from ccwatch import fs, watch
from ccwatch.config import FolderConfig
from ccwatch.errors import AccountError, CcwatchError, FileVanished, RateLimited, TransientError
from ccwatch.ledger import TERMINAL, Entry, State
from ccwatch.pipeline import backoff
from ccwatch.pipeline.gate import SubmissionGate
from ccwatch.pipeline.waker import Waker
from ccwatch.stages import deliver, submit, track
from ccwatch.stages.context import Context
from ccwatch.stages.intake import Intake
from ccwatch.stages.quarantine import quarantine


@dataclass
class Slot:
    """Runtime bookkeeping for one active ledger entry (rebuilt from the ledger on start)."""

    entry: Entry
    due: float = 0.0  # monotonic time it may next be worked on
    polls: int = 0
    retries: int = 0
    busy: bool = False
    pushed_job: dict[str, Any] | None = None  # a verified webhook delivery waiting to be read


class Pipeline:
    def __init__(self, ctx: Context, *, rng: random.Random | None = None) -> None:
        self.ctx = ctx
        self._clock = ctx.clock
        self._rng = rng or random.Random()
        daemon = ctx.config.daemon
        self._lock = threading.RLock()
        self._dispatching = threading.Lock()
        self._kicked = False
        self._last_step = ctx.clock.monotonic()
        self._slots: dict[int, Slot] = {}
        self._by_job: dict[str, int] = {}
        self._reserved: set[Path] = set()  # final output paths chosen by unfinished deliveries
        self.intake = Intake(ctx)
        self._waker = Waker(ctx.clock, self.kick)  # a due poll need not wait for the next step
        self._uploads = ThreadPoolExecutor(daemon.upload_workers, "ccwatch-upload")
        self._downloads = ThreadPoolExecutor(daemon.download_workers, "ccwatch-download")
        self._trackers = ThreadPoolExecutor(2, "ccwatch-track")
        self.gate = SubmissionGate(ctx.ledger, probe_s=daemon.poll_max_s,
                                   create_delay=ctx.api.create_delay)
        self._stopping = False
        self.delivered = 0
        self.failed = 0
        for entry in ctx.ledger.active():
            self._track_slot(Slot(entry))
        if self._slots:
            logger.info("resuming {} unfinished file(s) from the ledger", len(self._slots))

    # -- intake ---------------------------------------------------------------------------------

    def note(self, folder: str, path: Path) -> None:
        """A watcher saw ``path`` change (any thread; cheap)."""
        self.intake.note(folder, path)

    def scan(self, folder: FolderConfig) -> int:
        """Note every file of a folder the ledger does not already know (startup and rescans)."""
        return self.intake.scan(folder)

    def _admit(self, folder: FolderConfig, relpath: PurePosixPath, st: fs.FileStat) -> None:
        rule = watch.match_rule(relpath, folder.rules)
        if rule is None:
            return
        entry = self.intake.admit(folder, relpath, st, rule)
        if entry is None:
            return
        with self._lock:
            if entry.id not in self._slots:
                if entry.attempt > 1:
                    logger.bind(folder=folder.name, file=str(relpath)).info("queued again (retry)")
                self._track_slot(Slot(entry))

    def _track_slot(self, slot: Slot) -> None:
        self._slots[slot.entry.id] = slot
        self._reserved.update(Path(o.final_path) for o in slot.entry.outputs if o.final_path)
        if slot.entry.job_id:
            self._by_job[slot.entry.job_id] = slot.entry.id

    # -- the crank ------------------------------------------------------------------------------

    def step(self) -> None:
        """One turn: settle, admit, dispatch whatever is due. Called from one thread at a time."""
        now = self._clock.monotonic()
        self._last_step = now
        if not self._stopping:
            for folder, relpath, st in self.intake.settled(now):
                try:
                    self._admit(folder, relpath, st)
                except (OSError, sqlite3.Error) as exc:
                    logger.bind(folder=folder.name, file=str(relpath)).error("cannot admit: {}", exc)
        self.kick()

    def kick(self) -> None:
        """Dispatch now (any thread). Called when a stage finishes, so the next one starts at once
        instead of at the next scheduled step; concurrent kicks fold into one running dispatch."""
        self._kicked = True
        while self._kicked:
            if not self._dispatching.acquire(blocking=False):
                return  # the thread dispatching now sees the flag and goes round once more
            try:
                while self._kicked:
                    self._kicked = False
                    self._dispatch(self._clock.monotonic())
            finally:
                self._dispatching.release()

    def _dispatch(self, now: float) -> None:
        with self._lock:
            # Slots are kept in ledger-id order (resumed first, then as settled): oldest first.
            slots = list(self._slots.values())
            in_flight = -1  # counted when first needed: most turns start nothing new
            for slot in slots:
                # A webhook that arrived while this job was being polled must not wait a whole
                # safety interval: a pushed, processing job is due at once.
                if slot.busy or (slot.due > now and slot.pushed_job is None):
                    continue
                state = slot.entry.state
                if slot.due > now and state is not State.PROCESSING:
                    continue
                if in_flight < 0:
                    # A settled slot already handed to the upload pool counts too.
                    in_flight = sum(1 for s in slots if s.busy or s.entry.state is not State.SETTLED)
                if state in (State.SETTLED, State.SUBMITTING, State.UPLOADING):
                    fresh = state is State.SETTLED
                    if self._stopping or (fresh and in_flight >= self.ctx.config.daemon.max_in_flight):
                        continue
                    if not self.gate.admits(slot.entry.id, now, fresh=fresh):
                        continue
                    in_flight += fresh
                    self._start(slot, self._uploads, self._submit)
                elif state is State.PROCESSING:
                    self._start(slot, self._trackers, self._track)
                elif state is State.DELIVERING and not self._stopping:
                    self._start(slot, self._downloads, self._deliver)

    def _start(self, slot: Slot, pool: ThreadPoolExecutor, work: Callable[[Slot], None]) -> None:
        slot.busy = True
        try:
            pool.submit(self._guarded, slot, work)
        except RuntimeError:  # pool shut down during a stop
            slot.busy = False

    # -- stage work (pool threads) --------------------------------------------------------------

    def _submit(self, slot: Slot) -> None:
        # The pool may have queued this before a 429 or an account pause arrived: look again.
        held = self.gate.held_until(slot.entry.id, self._clock.monotonic())
        if held is not None:
            slot.due = held
            return
        entry = submit.advance(self.ctx, slot.entry)
        self._progress(slot, entry)
        self.gate.succeeded()
        # A webhook may have arrived while the upload was finishing: then track at once.
        slot.due = self._clock.monotonic() + (0.0 if slot.pushed_job else self._first_poll_s())
        self._waker.at(slot.due)

    def _first_poll_s(self) -> float:
        hook = self.ctx.config.webhook
        return hook.safety_poll_s if hook else self.ctx.config.daemon.poll_interval_s

    def _track(self, slot: Slot) -> None:
        pushed, slot.pushed_job = slot.pushed_job, None
        outputs = track.check(self.ctx, slot.entry, pushed)
        if pushed is None:
            self.gate.succeeded(only_auth=True)
        now = self._clock.monotonic()
        if outputs is None:
            slot.polls += 1
            daemon = self.ctx.config.daemon
            if self.ctx.config.webhook:
                # With webhooks this poll is only the safety net for a lost delivery.
                slot.due = now + self.ctx.config.webhook.safety_poll_s
            else:
                slot.due = now + backoff.poll_delay(slot.polls - 1, daemon.poll_interval_s,
                                                  daemon.poll_max_s, rng=self._rng)
                self._waker.at(slot.due)
            return
        with self._lock:  # one planner at a time, so reservations cannot race
            entry = deliver.begin(self.ctx, slot.entry, outputs, reserved=self._reserved)
        self._progress(slot, entry)
        slot.due = now

    def _deliver(self, slot: Slot) -> None:
        entry = deliver.deliver(self.ctx, slot.entry)
        self._progress(slot, entry)

    def _progress(self, slot: Slot, entry: Entry) -> None:
        with self._lock:
            slot.entry = entry
            slot.retries = 0
            if entry.job_id:
                self._by_job[entry.job_id] = entry.id
            if entry.state in TERMINAL:
                self._retire(slot)
                if entry.state is State.DONE:
                    self.delivered += 1

    def _retire(self, slot: Slot) -> None:
        self._slots.pop(slot.entry.id, None)
        self._reserved.difference_update(
            Path(o.final_path) for o in slot.entry.outputs if o.final_path)
        if slot.entry.job_id:
            self._by_job.pop(slot.entry.job_id, None)

    def _guarded(self, slot: Slot, work: Callable[[Slot], None]) -> None:
        """The per-file error boundary: one bad file never stops the daemon."""
        log = logger.bind(folder=slot.entry.folder, file=slot.entry.relpath, job=slot.entry.job_id)
        try:
            try:
                work(slot)
            except BaseException:
                self._reload(slot)
                raise
        except FileVanished:
            self._vanished(slot)
        except AccountError as exc:
            self._account(slot, exc)
        except TransientError as exc:
            self._transient(slot, exc)
        except CcwatchError as exc:
            self._fail(slot, exc)
        except Exception as exc:
            # A bug or an unexpected OS error: log it whole, then treat it as transient so the
            # file is retried and, if it keeps failing, quarantined after give_up_after_s.
            log.opt(exception=exc).error("unexpected error: {}", exc)
            self._transient(slot, TransientError(f"unexpected error: {exc!r}", code="INTERNAL"))
        finally:
            slot.busy = False
            self.kick()

    def _reload(self, slot: Slot) -> None:
        """After a failed step the ledger may be ahead of the slot (e.g. ``submitting`` written)."""
        try:
            slot.entry = self.ctx.ledger.get(slot.entry.id)
        except KeyError:
            pass

    # -- outcomes -------------------------------------------------------------------------------

    def _vanished(self, slot: Slot) -> None:
        entry = slot.entry
        logger.bind(folder=entry.folder, file=entry.relpath).info(
            "file changed or vanished before upload; dropped (a new version is converted)")
        self.ctx.ledger.forget(entry.id)
        with self._lock:
            self._retire(slot)

    def _account(self, slot: Slot, exc: AccountError) -> None:
        slot.due = self.gate.paused(exc, now=self._clock.monotonic(), wall=self._clock.wall())

    def _transient(self, slot: Slot, exc: TransientError) -> None:
        entry = slot.entry
        wall = self._clock.wall()
        if entry.transient_since is None:
            entry = self.ctx.ledger.update(entry.id, now=wall, transient_since=wall)
            slot.entry = entry
        assert entry.transient_since is not None
        if wall - entry.transient_since >= self.ctx.config.daemon.give_up_after_s:
            self._fail(slot, exc)
            return
        now = self._clock.monotonic()
        delay = backoff.retry_delay(slot.retries, exc.retry_after_s, rng=self._rng)
        if isinstance(exc, RateLimited):
            # The whole account is throttled, not this file: hold every submission, do not let
            # the file's own backoff grow.
            self.gate.hold(now + delay)
        else:
            slot.retries += 1
        slot.due = now + delay
        logger.bind(folder=entry.folder, file=entry.relpath, job=entry.job_id).warning(
            "{} (retrying in {:.1f} s)", exc.message, delay)

    def _fail(self, slot: Slot, exc: CcwatchError) -> None:
        try:
            entry = quarantine(self.ctx, slot.entry, exc)
        except OSError as err:
            logger.bind(folder=slot.entry.folder, file=slot.entry.relpath).error(
                "cannot quarantine ({}); will try again: {}", exc.message, err)
            slot.due = self._clock.monotonic() + backoff.RETRY_MAX_S
            return
        with self._lock:
            slot.entry = entry
            self.failed += 1
            self._retire(slot)

    # -- webhooks, queries, shutdown ------------------------------------------------------------

    def job_pushed(self, job: dict[str, Any]) -> str:
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
            slot = self._slots.get(entry_id)
            # SETTLED too: a fresh slot's entry is only refreshed when its submit returns, and a
            # fast job's webhook can arrive before that.
            if slot is None or slot.entry.state not in (State.SETTLED, State.SUBMITTING,
                                                        State.UPLOADING, State.PROCESSING):
                return "done"
            if slot.pushed_job is not None:
                return "done"
            slot.pushed_job = job
            if not slot.busy:
                slot.due = 0.0
        return "accepted"

    def idle(self) -> bool:
        """Nothing in flight, nothing settling (empty files that wait forever do not count)."""
        with self._lock:
            if self._slots:
                return False
        return self.intake.idle()

    def seconds_since_step(self) -> float:
        return self._clock.monotonic() - self._last_step

    def active_count(self) -> int:
        with self._lock:
            return len(self._slots)

    def busy_count(self) -> int:
        with self._lock:
            return sum(1 for s in self._slots.values() if s.busy)

    def stop_intake(self) -> None:
        """Finish what runs; start nothing new (SIGTERM)."""
        self._stopping = True

    def close(self, *, wait: bool) -> None:
        self._waker.stop()
        for pool in (self._uploads, self._trackers, self._downloads):
            pool.shutdown(wait=wait, cancel_futures=True)
