"""What is due now: which files the dispatcher starts on this turn, and with what work.

Pure logic, like ``settle``: the clock value, the slots and the gate's answer are passed in, so the
rules are tested with plain numbers. The dispatcher only carries out the answer.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ccwatch.ledger import Entry, State

# Everything before ``processing`` is one piece of work: create the job and upload the file.
SUBMIT_STATES = (State.SETTLED, State.SUBMITTING, State.UPLOADING)


class Work(enum.Enum):
    SUBMIT = "submit"  # on the upload pool: settled/submitting/uploading → processing
    TRACK = "track"  # on the tracking pool: read the job (or the pushed one) once
    DELIVER = "deliver"  # on the download pool: write the outputs, finish


@dataclass
class Slot:
    """Runtime bookkeeping for one active ledger entry (rebuilt from the ledger on start)."""

    entry: Entry
    due: float = 0.0  # monotonic time it may next be worked on
    polls: int = 0
    retries: int = 0
    busy: bool = False
    stale: bool = False  # the ledger may be ahead of ``entry`` (a write's answer was lost)
    pushed_job: dict[str, Any] | None = None  # a verified webhook delivery waiting to be read


def due(slots: Sequence[Slot], now: float, *, stopping: bool, max_in_flight: int,
        admits: Callable[[int, bool], bool]) -> list[tuple[Slot, Work]]:
    """The slots to start now, in the order given (the pipeline keeps them oldest first).

    - a busy slot is never started twice; others wait for their ``due`` time, except that a
      processing job with a webhook delivery waiting is tracked at once;
    - a new submission (``settled``) starts only while fewer than ``max_in_flight`` files are past
      ``settled`` or being submitted; resumed ones (``submitting``, ``uploading``) always may;
    - every submission must be admitted by the gate: ``admits(entry_id, fresh)`` (a 429 hold, an
      account pause with its one probe, a slowed job creation);
    - ``stopping`` (SIGTERM): no new submissions and no deliveries; running jobs are still read.
    """
    chosen: list[tuple[Slot, Work]] = []
    in_flight = -1  # counted when first needed: most turns start nothing new
    for slot in slots:
        state = slot.entry.state
        pushed = slot.pushed_job is not None and state is State.PROCESSING
        if slot.busy or (slot.due > now and not pushed):
            continue
        if state in SUBMIT_STATES:
            if in_flight < 0:
                # A settled slot already handed to the upload pool counts too.
                in_flight = sum(1 for s in slots if s.busy or s.entry.state is not State.SETTLED)
            fresh = state is State.SETTLED
            if stopping or (fresh and in_flight >= max_in_flight):
                continue
            if not admits(slot.entry.id, fresh):
                continue
            in_flight += fresh
            chosen.append((slot, Work.SUBMIT))
        elif state is State.PROCESSING:
            chosen.append((slot, Work.TRACK))
        elif state is State.DELIVERING and not stopping:
            chosen.append((slot, Work.DELIVER))
    return chosen
