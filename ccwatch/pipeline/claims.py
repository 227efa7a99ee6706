"""Claims on a shared ledger: renew this host's leases, take over the files of hosts that stopped
renewing theirs, and share the account-wide holds (a 429's wait, an account pause) between hosts.

With the default SQLite ledger there is one host and nothing to do: every method is a cheap no-op.
"""

from __future__ import annotations

from loguru import logger

from ccwatch.errors import LedgerUnavailable
from ccwatch.ledger import Entry, Ledger, State
from ccwatch.pipeline.gate import SubmissionGate

HOLD_KEY = "hold_until"  # wall-clock end of the last 429's wait, in the shared meta table


class ClaimKeeper:
    def __init__(self, ledger: Ledger, gate: SubmissionGate, *, lease_s: float, now: float) -> None:
        self._ledger = ledger
        self._gate = gate
        self._lease_s = lease_s
        self._every = lease_s / 3  # three renewals per lease: one lost renewal is no takeover
        self._next = now + self._every
        self._renewed = now
        self._down = False

    def tend(self, now: float, wall: float) -> list[Entry]:
        """Every third of a lease: renew ours, follow the shared holds; the entries to track (taken
        over, or settled and not yet started by anyone)."""
        if not self._ledger.shared or now < self._next:
            return []
        self._next = now + self._every
        try:
            taken = self._ledger.renew()
            self._follow(now, wall)
        except LedgerUnavailable as exc:
            if not self._down:
                logger.error("{}; no file moves until it is back (retrying every {:.1f} s)",
                             exc.message, self._every)
            self._down = True
            return []
        if self._down:
            logger.info("the ledger database is reachable again")
            self._down = False
        self._renewed = now
        started = [e for e in taken if e.state is not State.SETTLED]
        if started:
            logger.warning("took over {} file(s) from host(s) that stopped renewing their claims "
                           "for {:g} s", len(started), self._lease_s)
        return taken

    def next_due(self) -> float | None:
        """When ``tend`` next has work (None: a ledger of our own, never)."""
        return self._next if self._ledger.shared else None

    def fresh(self, now: float) -> bool:
        """Whether our claims are surely still ours: renewed within half a lease. A host whose
        renewals fail starts nothing, so it cannot race the host that will take its files over."""
        return not self._ledger.shared or now - self._renewed < self._lease_s / 2

    def share_hold(self, wall_until: float) -> None:
        """A 429 here holds the other hosts' submissions too."""
        if not self._ledger.shared:
            return
        try:
            current = self._ledger.get_meta(HOLD_KEY)
            if not isinstance(current, int | float) or current < wall_until:
                self._ledger.set_meta(HOLD_KEY, wall_until)
        except LedgerUnavailable:
            pass  # this host still holds; the others see their own 429s

    def _follow(self, now: float, wall: float) -> None:
        hold = self._ledger.get_meta(HOLD_KEY)
        if isinstance(hold, int | float) and hold > wall:
            self._gate.hold(now + (hold - wall))
        self._gate.follow(self._ledger.get_meta("paused"), now=now)
