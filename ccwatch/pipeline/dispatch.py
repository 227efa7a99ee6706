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
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from loguru import logger

from ccwatch.config import Config, FolderConfig
from ccwatch.errors import LedgerUnavailable
from ccwatch.ledger import TERMINAL, Entry, State
from ccwatch.pipeline import backoff
from ccwatch.pipeline.claims import ClaimKeeper
from ccwatch.pipeline.due import SUBMIT_STATES, Slot, Work, due
from ccwatch.pipeline.gate import SubmissionGate
from ccwatch.pipeline.outcomes import Outcomes, Verdict
from ccwatch.pipeline.waker import Waker
from ccwatch.stages import deliver, submit, track
from ccwatch.stages.context import Context
from ccwatch.stages.intake import Intake

# What a webhook delivery came to: tracked now, not ours, or nothing left to do for it.
Pushed = Literal["accepted", "unknown", "done"]


class Pipeline:
    def __init__(self, ctx: Context, *, rng: random.Random | None = None) -> None:
        self.ctx = ctx
        self._clock = ctx.clock
        self._rng = rng or random.Random()
        daemon = ctx.config.daemon
        self._lock = threading.RLock()
        self._dispatching = threading.Lock()
        self._admitting = threading.Lock()  # a reload waits for an admission in progress
        self._kicked = False
        self._last_step = ctx.clock.monotonic()
        self._slots: dict[int, Slot] = {}
        self._by_job: dict[str, int] = {}
        self._reserved = deliver.Reservations()  # final output paths of unfinished deliveries
        self._orphans: set[str] = set()  # folders of unfinished rows no longer in the config
        self.intake = Intake(ctx)
        self._waker = Waker(ctx.clock, self.kick)  # a due poll need not wait for the next step
        self._uploads = ThreadPoolExecutor(daemon.upload_workers, "ccwatch-upload")
        self._downloads = ThreadPoolExecutor(daemon.download_workers, "ccwatch-download")
        self._trackers = ThreadPoolExecutor(2, "ccwatch-track")
        self.gate = SubmissionGate(ctx.ledger, probe_s=daemon.poll_max_s,
                                   create_delay=ctx.api.create_delay, on_pause=ctx.metrics.pauses.inc)
        self._claims = ClaimKeeper(ctx.ledger, self.gate, lease_s=ctx.config.ledger.lease_s,
                                   now=self._last_step)
        self._outcomes = Outcomes(ctx, self.gate, self._rng, share_hold=self._claims.share_hold)
        self._work: dict[Work, tuple[ThreadPoolExecutor, Callable[[Slot], None]]] = {
            Work.SUBMIT: (self._uploads, self._submit),
            Work.TRACK: (self._trackers, self._track),
            Work.DELIVER: (self._downloads, self._deliver),
        }
        self._stopping = False
        self.delivered = 0
        self.failed = 0
        self._adopt(ctx.ledger.claim_active())
        if self._slots:
            logger.info("resuming {} unfinished file(s) from the ledger", len(self._slots))

    # -- intake ---------------------------------------------------------------------------------

    def note(self, folder: str, path: Path) -> None:
        """A watcher saw ``path`` change (any thread; cheap)."""
        self.intake.note(folder, path)

    def scan(self, folder: FolderConfig) -> int:
        """Note every file of a folder the ledger does not already know (startup and rescans)."""
        try:
            return self.intake.scan(folder)
        except LedgerUnavailable as exc:
            logger.bind(folder=folder.name).warning("scan postponed: {}", exc.message)
            return 0

    def _adopt(self, entries: Iterable[Entry]) -> None:
        """Track entries: resumed at start, or taken over from a host whose lease expired."""
        orphans: dict[str, int] = {}
        with self._lock:
            for entry in entries:
                if entry.folder not in self.ctx.folder_names():
                    orphans[entry.folder] = orphans.get(entry.folder, 0) + 1
                elif entry.id not in self._slots:
                    self._track_slot(Slot(entry))
        for name, count in orphans.items():
            # Left as they are in the ledger (and their jobs on the server): adding the folder
            # back finishes them. Never tracked here, so never a loop.
            if name not in self._orphans:
                self._orphans.add(name)
                logger.warning("folder {!r} is no longer in the config: its {} unfinished "
                               "file(s) are left alone until it is added back", name, count)

    def _track_slot(self, slot: Slot) -> None:
        self._slots[slot.entry.id] = slot
        self._reserved.update(self.ctx.output_path(slot.entry, o.final_path)
                              for o in slot.entry.outputs if o.final_path)
        if slot.entry.job_id:
            self._by_job[slot.entry.job_id] = slot.entry.id

    # -- the crank ------------------------------------------------------------------------------

    def step(self) -> None:
        """One turn: settle, admit, dispatch whatever is due. Called from one thread at a time."""
        now = self._clock.monotonic()
        self._last_step = now
        if not self._stopping:
            with self._admitting:
                for entry in self.intake.admitted(now):
                    with self._lock:
                        slot = self._slots.get(entry.id)
                        if slot is not None:
                            # noted again while it waits for a submission slot, or renamed
                            # in flight (its row now has the new name)
                            if not slot.busy:
                                slot.entry = entry
                            continue
                        if entry.attempt > 1:
                            logger.bind(folder=entry.folder, file=entry.relpath).info(
                                "queued again (retry)")
                        self._track_slot(Slot(entry))
        self._adopt(self._claims.tend(now, self._clock.wall()))
        self.kick()

    def reload(self, config: Config) -> None:
        """Files admitted from now on follow ``config``; those already admitted keep theirs."""
        with self._admitting, self._lock:
            self.ctx.reload(config, in_flight=list(self._slots))
            self.intake.reset()

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
        if not self._claims.fresh(now):
            return  # a shared ledger we cannot reach: start nothing another host may take over
        with self._lock:
            # Slots are kept in ledger-id order (resumed first, then as settled): oldest first.
            chosen = due(list(self._slots.values()), now, stopping=self._stopping,
                         max_in_flight=self.ctx.config.daemon.max_in_flight,
                         admits=lambda entry_id, fresh: self.gate.admits(entry_id, now, fresh=fresh))
            for slot, work in chosen:
                pool, run = self._work[work]
                self._start(slot, pool, run)

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
        # Planning serialises on the reservations' own lock: thousands of outputs never stall
        # the dispatcher, which holds the pipeline's lock.
        entry = deliver.begin(self.ctx, slot.entry, outputs, reserved=self._reserved)
        self._progress(slot, entry)
        slot.due = now

    def _deliver(self, slot: Slot) -> None:
        entry = deliver.deliver(self.ctx, slot.entry)
        self._progress(slot, entry)

    def _progress(self, slot: Slot, entry: Entry) -> None:
        self._outcomes.recorded()
        with self._lock:
            slot.entry = entry
            slot.retries = 0
            if entry.job_id:
                self._by_job[entry.job_id] = entry.id
            if entry.state in TERMINAL:
                self._retire(slot)
                if entry.state is State.DONE:
                    self.delivered += 1
                    self.ctx.metrics.finished(entry.folder, "done")

    def _retire(self, slot: Slot) -> None:
        self._slots.pop(slot.entry.id, None)
        self._reserved.difference_update(
            self.ctx.output_path(slot.entry, o.final_path) for o in slot.entry.outputs if o.final_path)
        if slot.entry.job_id:
            self._by_job.pop(slot.entry.job_id, None)

    def _guarded(self, slot: Slot, work: Callable[[Slot], None]) -> None:
        """The per-file error boundary: one bad file never stops the daemon."""
        try:
            try:
                if slot.stale:
                    self._reload(slot)
                work(slot)
            except BaseException as exc:
                self._reload(slot)
                self.ctx.metrics.error(exc)
                raise
        except Exception as exc:
            verdict = self._outcomes.handle(slot, exc)
            if verdict is not Verdict.RETRY:
                with self._lock:
                    self.failed += verdict is Verdict.FAILED
                    if verdict is Verdict.FAILED:
                        self.ctx.metrics.finished(slot.entry.folder, "failed")
                    self._retire(slot)
        finally:
            slot.busy = False
            self.kick()

    def _reload(self, slot: Slot) -> None:
        """After a failed step the ledger may be ahead of the slot (e.g. ``submitting`` written)."""
        try:
            slot.entry = self.ctx.ledger.get(slot.entry.id)
            slot.stale = False
        except KeyError:
            pass
        except LedgerUnavailable:
            slot.stale = True  # read it before the next try: the lost write may have landed

    # -- webhooks, queries, shutdown ------------------------------------------------------------

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
            slot = self._slots.get(entry_id)
            # SETTLED too: a fresh slot's entry is only refreshed when its submit returns, and a
            # fast job's webhook can arrive before that.
            if slot is None or slot.entry.state not in (*SUBMIT_STATES, State.PROCESSING):
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

    def drain(self, grace_s: float, *, tick: Callable[[], object] = lambda: None) -> bool:
        """Wait up to ``grace_s`` for running transfers; True when none is left."""
        deadline = self._clock.monotonic() + grace_s
        while self.busy_count() and self._clock.monotonic() < deadline:
            tick()
            self._clock.sleep(0.05)
        left = self.busy_count()
        if left:
            logger.warning("{} transfer(s) still running after {} s; they resume on next start",
                           left, grace_s)
            return False
        logger.info("stopped; {} file(s) left in the ledger resume on next start",
                    self.active_count())
        return True

    def stop_intake(self) -> None:
        """Finish what runs; start nothing new (SIGTERM)."""
        self._stopping = True

    def close(self, *, wait: bool) -> None:
        self._waker.stop()
        for pool in (self._uploads, self._trackers, self._downloads):
            pool.shutdown(wait=wait, cancel_futures=True)
