"""The pipeline: the only module that knows the order of the stages.

    note (watch/scan) → settle → ledger → submit → track → deliver → done
                                              ╰──────────────┴──────→ quarantine

``step()`` is one turn of the crank: it moves noted paths into the settlers, admits settled files to
the ledger, and hands due entries to bounded worker pools (uploads, tracking, downloads). Everything a
file waits for (its next poll, a retry backoff, an account pause) is a time on its slot, not a
sleeping thread, so thousands of long conversions cost no threads. Nothing ticks: the waker runs
``step()`` when a watcher notes a path and at the next time something is due (a settle look, a poll,
the gate reopening), and a finishing stage dispatches the next work at once (``kick``). A turn
touches only what is due (:class:`~ccwatch.pipeline.due.Agenda`), so its cost does not grow with
the backlog.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from loguru import logger

from ccwatch.client.syncwait import Done, JobWaiter
from ccwatch.config import Config, FolderConfig
from ccwatch.errors import LedgerUnavailable
from ccwatch.ledger import TERMINAL, Entry, State
from ccwatch.pipeline import backoff
from ccwatch.pipeline.claims import ClaimKeeper
from ccwatch.pipeline.due import Agenda, Slot, Work, creates_job
from ccwatch.pipeline.gate import SubmissionGate
from ccwatch.pipeline.handoff import JobHandoff
from ccwatch.pipeline.outcomes import Outcomes, Verdict
from ccwatch.pipeline.pacing import CreatePacer
from ccwatch.pipeline.waker import Waker
from ccwatch.stages import deliver, submit, track
from ccwatch.stages.context import Context
from ccwatch.stages.intake import Intake

# The shortest wait the pipeline asks the waker for when the gate holds submissions back.
MIN_WAIT_S = 0.01


class Pipeline(JobHandoff):
    def __init__(self, ctx: Context, *, rng: random.Random | None = None,
                 waiter: Callable[[Done], JobWaiter] | None = None,
                 pacer: CreatePacer | None = None) -> None:
        self.ctx = ctx
        self._clock = ctx.clock
        self._rng = rng or random.Random()
        daemon = ctx.config.daemon
        self._lock = threading.RLock()
        self._dispatching = threading.Lock()
        # A reload, and idle() (not between settling and admitting), wait for an admission.
        self._admitting = threading.Lock()
        self._kicked = False
        self._last_step = ctx.clock.monotonic()
        self._agenda = Agenda()
        self._progressed = threading.Event()  # a file finished or the account paused
        self._by_job: dict[str, int] = {}
        self._reserved = deliver.Reservations()  # final output paths of unfinished deliveries
        self._orphans: set[str] = set()  # folders of unfinished rows no longer in the config
        self.intake = Intake(ctx)
        self._waker = Waker(ctx.clock, self.step)
        self._uploads = ThreadPoolExecutor(daemon.upload_workers, "ccwatch-upload")
        self._downloads = ThreadPoolExecutor(daemon.download_workers, "ccwatch-download")
        self._trackers = ThreadPoolExecutor(2, "ccwatch-track")
        pacer = pacer or CreatePacer()
        pacer.wake_on_answer(self._waker.soon)  # a create held for another's answer goes at once
        self.gate = SubmissionGate(ctx.ledger, probe_s=daemon.poll_max_s, pacer=pacer,
                                   on_pause=ctx.metrics.pauses.inc)
        self._claims = ClaimKeeper(ctx.ledger, self.gate, lease_s=ctx.config.ledger.lease_s,
                                   now=self._last_step)
        self._outcomes = Outcomes(ctx, self.gate, self._rng, share_hold=self._claims.share_hold)
        # Wait-based tracking: each processing job waits on the sync host (a coroutine, no thread).
        self._waiter = waiter(self._waited) if waiter else None
        self._work: dict[Work, tuple[ThreadPoolExecutor, Callable[[Slot], None]]] = {
            Work.SUBMIT: (self._uploads, self._submit),
            Work.TRACK: (self._trackers, self._track),
            Work.DELIVER: (self._downloads, self._deliver),
        }
        self._stopping = False
        self.delivered = 0
        self.failed = 0
        self._adopt(ctx.ledger.claim_active())
        if self._agenda:
            logger.info("resuming {} unfinished file(s) from the ledger", len(self._agenda))
        self._waker.soon()  # a first turn: resumed files, and a shared ledger's renewals begin

    # -- intake ---------------------------------------------------------------------------------

    def note(self, folder: str, path: Path) -> None:
        """A watcher saw ``path`` change (any thread; cheap)."""
        self.intake.note(folder, path)
        self._waker.soon()

    def scan(self, folder: FolderConfig) -> int:
        """Note every file of a folder the ledger does not already know (startup and rescans)."""
        try:
            found = self.intake.scan(folder)
        except LedgerUnavailable as exc:
            logger.bind(folder=folder.name).warning("scan postponed: {}", exc.message)
            return 0
        if found:
            self._waker.soon()
        return found

    def nudge(self) -> None:
        """Turn the crank soon (the daemon's health check: a pipeline that stops turning is hung)."""
        self._waker.soon()

    def _adopt(self, entries: Iterable[Entry]) -> None:
        """Track entries: resumed at start, or taken over from a host whose lease expired."""
        orphans: dict[str, int] = {}
        with self._lock:
            for entry in entries:
                if entry.folder not in self.ctx.folder_names():
                    orphans[entry.folder] = orphans.get(entry.folder, 0) + 1
                elif entry.id not in self._agenda.slots:
                    self._track_slot(Slot(entry))
        for name, count in orphans.items():
            # Left as they are in the ledger (and their jobs on the server): adding the folder
            # back finishes them. Never tracked here, so never a loop.
            if name not in self._orphans:
                self._orphans.add(name)
                logger.warning("folder {!r} is no longer in the config: its {} unfinished "
                               "file(s) are left alone until it is added back", name, count)

    def _track_slot(self, slot: Slot) -> None:
        self._agenda.add(slot)
        self._reserved.update(self.ctx.output_path(slot.entry, o.final_path)
                              for o in slot.entry.outputs if o.final_path)
        if slot.entry.job_id:
            self._by_job[slot.entry.job_id] = slot.entry.id

    # -- the crank ------------------------------------------------------------------------------

    def step(self) -> None:
        """One turn: settle, admit, dispatch whatever is due (on the waker's thread)."""
        with self._admitting:
            self._admit()
        self.kick()

    def _admit(self) -> None:
        now = self._clock.monotonic()
        self._last_step = now
        if not self._stopping:
            for entry in self.intake.admitted(now):
                with self._lock:
                    slot = self._agenda.slots.get(entry.id)
                    if slot is not None:
                        # noted again while it waits for a submission slot, or renamed in
                        # flight (its row now has the new name)
                        if not slot.busy:
                            slot.entry = entry
                        continue
                    if entry.attempt > 1:
                        logger.bind(folder=entry.folder, file=entry.relpath).info(
                            "queued again (retry)")
                    self._track_slot(Slot(entry))
            settling = self.intake.next_due()
            if settling is not None:
                self._waker.at(settling)
        self._adopt(self._claims.tend(now, self._clock.wall()))
        renewal = self._claims.next_due()
        if renewal is not None:
            self._waker.at(renewal)

    def reload(self, config: Config) -> None:
        """Files admitted from now on follow ``config``; those already admitted keep theirs."""
        with self._admitting, self._lock:
            self.ctx.reload(config, in_flight=list(self._agenda.slots))
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
            agenda = self._agenda
            chosen = agenda.due(now, stopping=self._stopping,
                                max_in_flight=self.ctx.config.daemon.max_in_flight,
                                admits=lambda entry_id, creates: self.gate.admits(
                                    entry_id, now, creates=creates))
            for slot, work in chosen:
                if work is Work.TRACK and self._wait(slot):
                    continue
                pool, run = self._work[work]
                self._start(slot, pool, run)
            wake = agenda.next_due()
            if agenda.refused:
                # (A file waiting for a place under max_in_flight is kicked by one finishing.)
                reopens = max(self.gate.reopens_at(now), now + MIN_WAIT_S)
                wake = reopens if wake is None else min(wake, reopens)
        if wake is not None and wake > now:
            self._waker.at(wake)
        elif wake is not None:
            self._kicked = True  # due while this turn ran: go round once more

    def _start(self, slot: Slot, pool: ThreadPoolExecutor, work: Callable[[Slot], None]) -> None:
        try:
            pool.submit(self._guarded, slot, work)
        except RuntimeError:  # pool shut down during a stop
            self._agenda.returned(slot)

    # -- stage work (pool threads) --------------------------------------------------------------

    def _submit(self, slot: Slot) -> None:
        creates = creates_job(slot.entry)
        with self.gate.submitting(creates=creates):  # (a create that sends none is uncounted)
            # The pool may have queued this before a 429 or an account pause arrived: look again.
            held = self.gate.held_until(slot.entry.id, self._clock.monotonic(), creates=creates)
            if held is not None:
                slot.due = held
                return
            entry = submit.advance(self.ctx, slot.entry)
        self._progress(slot, entry)
        self.gate.succeeded()
        # A webhook may have arrived while the upload was finishing: then track at once.
        slot.due = self._clock.monotonic() + self._first_poll_s()

    def _first_poll_s(self) -> float:
        hook = self.ctx.config.webhook
        if hook:
            return hook.safety_poll_s
        return 0.0 if self._waiter else self.ctx.config.daemon.poll_interval_s

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
            elif self._waiter and not slot.poll_only:
                slot.due = now  # read at a wait's deadline: wait again
            else:
                slot.due = now + backoff.poll_delay(slot.polls - 1, daemon.poll_interval_s,
                                                  daemon.poll_max_s, rng=self._rng)
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
        self._agenda.remove(slot)
        self._progressed.set()
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
            with self._lock:
                self._agenda.returned(slot)
            if self.gate.pause is not None:
                self._progressed.set()
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

    # -- queries, shutdown ------------------------------------------------------------------

    def idle(self) -> bool:
        """Nothing in flight, nothing settling (empty files that wait forever do not count)."""
        with self._admitting, self._lock:
            return not self._agenda and self.intake.idle()

    def wait_progress(self, timeout: float) -> None:
        """Block until a file finishes or the account pauses (or ``timeout``): ``run --once``."""
        self._progressed.wait(timeout)
        self._progressed.clear()

    def seconds_since_step(self) -> float:
        return self._clock.monotonic() - self._last_step

    def active_count(self) -> int:
        with self._lock:
            return len(self._agenda)

    def busy_count(self) -> int:
        with self._lock:
            return sum(1 for s in self._agenda.slots.values() if s.busy)

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
        if self._waiter:
            self._waiter.release()  # waits hold no transfer: the drain need not wait for them
        self._waker.soon()

    def close(self, *, wait: bool) -> None:
        self._waker.stop()
        if self._waiter:
            self._waiter.close()
        for pool in (self._uploads, self._trackers, self._downloads):
            pool.shutdown(wait=wait, cancel_futures=True)

