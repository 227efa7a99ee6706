"""When a submission may start: the account-wide holds, apart from any one file's own backoff.

- a 429 holds every submission until its ``Retry-After`` has passed;
- an account error (401, 402, 403) pauses all submissions; every ``probe_s`` one submission goes
  through as a probe, and the first call that succeeds lifts the pause;
- job creation is paced at the account's rate limit (:mod:`ccwatch.pipeline.pacing`);
- ``min_credits``: while the account has fewer credits, no new job is created (files already
  submitted go on); :mod:`ccwatch.pipeline.credits` reads them.

The pause is mirrored in the ledger's meta table so ``ccwatch status`` can say why nothing moves, and
the hosts sharing a ledger follow each other's pauses (:mod:`.claims`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass

from loguru import logger

from ccwatch.errors import AccountError, LedgerUnavailable
from ccwatch.ledger import Ledger
from ccwatch.pipeline.pacing import CreatePacer

# While credits are low, refused submissions are looked at again this often (no busy wake-ups).
CREDITS_RECHECK_S = 1.0


@dataclass
class Pause:
    reason: str
    since: float  # wall clock, for status
    next_probe: float  # monotonic
    http_status: int | None = None
    probe_id: int | None = None  # the one entry allowed through to test the account


class SubmissionGate:
    def __init__(self, ledger: Ledger, *, probe_s: float, pacer: CreatePacer,
                 on_pause: Callable[[], None] = lambda: None) -> None:
        self._ledger = ledger
        self._on_pause = on_pause
        self._probe_s = probe_s
        self._pacer = pacer
        self._lock = threading.Lock()
        self._hold_until = 0.0
        self.pause: Pause | None = None
        self.low_credits: tuple[str, float] | None = None  # (why, since): new jobs wait

    def why_paused(self) -> tuple[str, float] | None:
        """(reason, since) while submissions are paused, for status, the page and /metrics."""
        with self._lock:
            return (self.pause.reason, self.pause.since) if self.pause else self.low_credits

    def admits(self, entry_id: int, now: float, *, creates: bool) -> bool:
        """At dispatch: may this entry's submission start now? (A paused gate names one probe;
        ``creates``: the submission will create a job, which the pacer must allow.)"""
        with self._lock:
            if now < self._hold_until or (creates and self.low_credits is not None):
                return False
            pause = self.pause
            if pause is not None:
                if now < pause.next_probe or (creates and not self._pacer.admit(now)):
                    return False  # (a probe that creates a job keeps to the rate window too)
                pause.next_probe = now + self._probe_s
                pause.probe_id = entry_id
                return True
        return not creates or self._pacer.admit(now)

    def reopens_at(self, now: float) -> float:
        """When a submission refused now may next be admitted (so the pipeline wakes then)."""
        with self._lock:
            at = max(now, self._hold_until)
            if self.pause is not None:
                at = max(at, self.pause.next_probe)
            if self.low_credits is not None:
                at = max(at, now + CREDITS_RECHECK_S)  # the credits guard lifts it by itself
        return max(at, now + self._pacer.delay(now))

    def held_until(self, entry_id: int, now: float, *, creates: bool) -> float | None:
        """In the worker, just before submitting: the time to wait instead, if a hold, a pause or
        (``creates``) a 429 to another create arrived after this entry was queued (None: go)."""
        with self._lock:
            held = None
            if now < self._hold_until:
                held = self._hold_until
            elif self.pause is not None and entry_id != self.pause.probe_id:
                held = self.pause.next_probe
        return held if held is not None or not creates else self._pacer.held_until(now)

    def submitting(self, *, creates: bool) -> contextlib.AbstractContextManager[None]:
        """Around one admitted submission's work (``creates``: admitted as a create)."""
        return self._pacer.creating() if creates else contextlib.nullcontext()

    def hold(self, until: float) -> None:
        """A 429: nothing is submitted before ``until``."""
        with self._lock:
            self._hold_until = max(self._hold_until, until)

    def paused(self, exc: AccountError, *, now: float, wall: float) -> float:
        """An account error: pause (once) and return when the next probe is due."""
        with self._lock:
            if self.pause is None:
                logger.error("submissions paused for all folders: {} (no file is quarantined for "
                             "this; probing every {:.0f} s)", exc.message, self._probe_s)
                self.pause = Pause(exc.message, wall, now + self._probe_s, exc.http_status)
                self._mirror({"reason": exc.message, "since": wall})
                self._on_pause()
            return now + self._probe_s

    def follow(self, shared: object, *, now: float) -> None:
        """The pause as the shared ledger has it: another host paused, or its probe went through."""
        with self._lock:
            if isinstance(shared, dict) and shared.get("reason") and self.pause is None:
                since = shared.get("since")
                self.pause = Pause(str(shared["reason"]), float(since) if isinstance(
                    since, int | float) else 0.0, now + self._probe_s)
                logger.error("submissions paused for all folders by another host: {}",
                             self.pause.reason)
            elif shared is None and self.pause is not None:
                self.pause = None
                logger.info("submissions resumed: another host's call went through")

    def succeeded(self, *, only_auth: bool = False) -> None:
        """A call went through: the pause is over (after a status read, only a 401's: reading a
        job says nothing about credits or the scope to create one)."""
        with self._lock:
            if self.pause is None or (only_auth and self.pause.http_status != 401):
                return
            self.pause = None
        logger.info("submissions resumed: the account accepts jobs again")
        low = self.low_credits
        self._mirror({"reason": low[0], "since": low[1]} if low else None)

    def _mirror(self, value: dict[str, object] | None) -> None:
        try:
            self._ledger.set_meta("paused", value)
        except LedgerUnavailable:
            pass  # status shows it late; a shared ledger's hosts see it at their next renewal

    def credits(self, remaining: float, minimum: int, *, wall: float) -> None:
        """The account's credits were read: new jobs wait while fewer than ``minimum`` are left."""
        with self._lock:
            was = self.low_credits
            if remaining < minimum and was is None:
                why = (f"only {remaining:g} credits left, below min_credits = {minimum}: add "
                       "credits or lower min_credits; submissions resume by themselves")
                self.low_credits = (why, wall)
            elif remaining >= minimum and was is not None:
                self.low_credits = None
            else:
                return
            account_paused = self.pause is not None
        if was is None:
            logger.error("submissions paused for all folders: {}", why)
            self._on_pause()
        else:
            logger.info("submissions resumed: {:g} credits left (min_credits = {})", remaining,
                        minimum)
        if not account_paused:  # the account pause, when there is one, says more
            self._mirror({"reason": why, "since": wall} if was is None else None)
