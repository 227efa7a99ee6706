"""What is due now: which files the dispatcher starts on this turn, and with what work.

Pure logic, like ``settle``: the clock value and the gate's answer are passed in, so the rules are
tested with plain numbers. The dispatcher only carries out the answer.

The :class:`Agenda` keeps the slots ordered so that a turn touches only what is due, whatever the
backlog: a heap of due times, and two queues (oldest first) of submissions that are due but wait
for a place under ``max_in_flight`` or for the gate. Every operation is O(log n) per file.
"""

from __future__ import annotations

import enum
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ccwatch.ledger import Entry, State

# Everything before ``processing`` is one piece of work: create the job and upload the file.
SUBMIT_STATES = (State.SETTLED, State.SUBMITTING, State.UPLOADING)


def creates_job(entry: Entry) -> bool:
    """Whether submitting this entry creates a job (an upload being resumed has one)."""
    return entry.state is not State.UPLOADING


class Work(enum.Enum):
    SUBMIT = "submit"  # on the upload pool: settled/submitting/uploading → processing
    TRACK = "track"  # read the job (or the pushed one) once, or wait on it
    DELIVER = "deliver"  # on the download pool: write the outputs, finish


@dataclass(eq=False)
class Slot:
    """Runtime bookkeeping for one active ledger entry (rebuilt from the ledger on start)."""

    entry: Entry
    due: float = 0.0  # monotonic time it may next be worked on
    polls: int = 0
    retries: int = 0
    busy: bool = False
    stale: bool = False  # the ledger may be ahead of ``entry`` (a write's answer was lost)
    pushed_job: dict[str, Any] | None = None  # a webhook delivery or an ended wait, to be read
    poll_only: bool = False  # waiting on the sync host failed for this job: poll it instead
    ticket: int = -1  # which of its entries in the agenda's time heap is current (-1: none)


class Agenda:
    """The active slots, ordered for dispatch. Not thread-safe: the pipeline holds its lock.

    Rules carried out by :meth:`due`:

    - a busy slot is never started twice; others wait for their ``due`` time, except that a
      processing job with a webhook delivery waiting is tracked at once;
    - a new submission (``settled``) starts only while fewer than ``max_in_flight`` files are past
      ``settled`` or busy; resumed ones (``submitting``, ``uploading``) always may;
    - every submission must be admitted by the gate, ``admits(entry_id, creates)``, oldest first
      (resumed ones before new ones; ``creates``: it will create a job, i.e. it is not past that);
      a refusal is account-wide (a 429 hold, an account pause after its one probe, a paced job
      creation), so it ends the turn's submissions;
    - ``stopping`` (SIGTERM): no new submissions and no deliveries; running jobs are still read.
    """

    def __init__(self) -> None:
        self.slots: dict[int, Slot] = {}
        self._timed: list[tuple[float, int, int]] = []  # (due, entry id, ticket)
        self._resumed: list[int] = []  # entry ids, a heap: due, waiting for the gate
        self._fresh: list[int] = []  # entry ids, a heap: due, waiting for a place or the gate
        self._queued: set[int] = set()  # ids in either queue
        self._in_flight: set[int] = set()  # busy, or past ``settled``
        self._tickets = itertools.count()
        self.refused = False  # the last turn's gate refused a submission (wake when it reopens)

    def __len__(self) -> int:
        return len(self.slots)

    def in_flight(self) -> int:
        return len(self._in_flight)

    def add(self, slot: Slot) -> None:
        self.slots[slot.entry.id] = slot
        self._place(slot)

    def remove(self, slot: Slot) -> None:
        if self.slots.get(slot.entry.id) is slot:
            del self.slots[slot.entry.id]
        self._in_flight.discard(slot.entry.id)
        slot.ticket = -1

    def returned(self, slot: Slot) -> None:
        """Its work ended (the slot's ``due`` says when it is next due), unless it was removed."""
        slot.busy = False
        if self.slots.get(slot.entry.id) is slot:
            self._place(slot)

    def wake(self, slot: Slot) -> None:
        """Its ``due`` or ``pushed_job`` changed while it was not busy: place it again."""
        if not slot.busy and self.slots.get(slot.entry.id) is slot:
            self._place(slot)

    def _place(self, slot: Slot) -> None:
        entry_id = slot.entry.id
        if slot.busy or slot.entry.state is not State.SETTLED:
            self._in_flight.add(entry_id)
        else:
            self._in_flight.discard(entry_id)
        if entry_id in self._queued:
            return  # already due, waiting in a queue
        slot.ticket = next(self._tickets)
        pushed = slot.pushed_job is not None and slot.entry.state is State.PROCESSING
        heapq.heappush(self._timed, (0.0 if pushed else slot.due, entry_id, slot.ticket))

    def next_due(self) -> float | None:
        """The earliest time a slot becomes due (None: nothing waits for a time)."""
        timed = self._timed
        while timed:
            _, entry_id, ticket = timed[0]
            slot = self.slots.get(entry_id)
            if slot is not None and slot.ticket == ticket and not slot.busy:
                return timed[0][0]
            heapq.heappop(timed)
        return None

    def due(self, now: float, *, stopping: bool, max_in_flight: int,
            admits: Callable[[int, bool], bool]) -> list[tuple[Slot, Work]]:
        """The slots to start now; each is marked busy."""
        self.refused = False
        chosen: list[tuple[Slot, Work]] = []
        timed = self._timed
        while timed and timed[0][0] <= now:
            _, entry_id, ticket = heapq.heappop(timed)
            slot = self.slots.get(entry_id)
            if slot is None or slot.ticket != ticket or slot.busy:
                continue  # stale: moved, started or removed since
            slot.ticket = -1
            state = slot.entry.state
            if state in SUBMIT_STATES:
                heapq.heappush(self._fresh if state is State.SETTLED else self._resumed, entry_id)
                self._queued.add(entry_id)
            elif state is State.PROCESSING:
                self._start(slot, Work.TRACK, chosen)
            elif state is State.DELIVERING and not stopping:
                self._start(slot, Work.DELIVER, chosen)
        if stopping:
            return chosen
        for queue, fresh in ((self._resumed, False), (self._fresh, True)):
            while queue and not (fresh and len(self._in_flight) >= max_in_flight):
                slot = self.slots.get(queue[0])
                if slot is None or slot.busy:
                    self._queued.discard(heapq.heappop(queue))
                    continue
                if not admits(slot.entry.id, creates_job(slot.entry)):
                    self.refused = True
                    return chosen
                self._queued.discard(heapq.heappop(queue))
                self._start(slot, Work.SUBMIT, chosen)
        return chosen

    def _start(self, slot: Slot, work: Work, chosen: list[tuple[Slot, Work]]) -> None:
        slot.busy = True
        self._in_flight.add(slot.entry.id)
        chosen.append((slot, work))
