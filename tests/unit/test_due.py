"""What is due now: plain clock values, slots and a scripted gate; no pools, no threads."""

from __future__ import annotations

import itertools
from typing import Any

from ccwatch.ledger import Entry, State
from ccwatch.pipeline.due import Agenda, Slot, Work

_ids = itertools.count(1)


def slot(state: State, *, due_at: float = 0.0, pushed: dict[str, Any] | None = None) -> Slot:
    entry = Entry(id=next(_ids), folder="f", relpath="a.png", size=1, mtime_ns=1, state=state,
                  rule=0, template="t", attempt=1, job_tag=None, job_id=None, upload_task_id=None,
                  outputs=(), error=None, first_seen=0.0, updated_at=0.0, transient_since=None)
    return Slot(entry, due=due_at, pushed_job=pushed)


class Gate:
    """Admits what it is told to, and records what it was asked."""

    def __init__(self, refuse: set[int] | None = None) -> None:
        self.refuse = refuse or set()
        self.asked: list[tuple[int, bool]] = []

    def __call__(self, entry_id: int, creates: bool) -> bool:
        self.asked.append((entry_id, creates))
        return entry_id not in self.refuse


def agenda_of(*slots: Slot) -> Agenda:
    agenda = Agenda()
    for s in slots:
        agenda.add(s)
    return agenda


def work(agenda: Agenda, now: float = 10.0, *, stopping: bool = False, max_in_flight: int = 100,
         gate: Gate | None = None) -> list[tuple[int, Work]]:
    chosen = agenda.due(now, stopping=stopping, max_in_flight=max_in_flight, admits=gate or Gate())
    return [(s.entry.id, w) for s, w in chosen]


def test_each_state_gets_its_work_resumed_submissions_before_new_ones() -> None:
    slots = [slot(s) for s in (State.DELIVERING, State.SETTLED, State.PROCESSING,
                                State.SUBMITTING, State.UPLOADING)]
    ids = [s.entry.id for s in slots]
    assert work(agenda_of(*slots)) == [(ids[0], Work.DELIVER), (ids[2], Work.TRACK),
                                       (ids[3], Work.SUBMIT), (ids[4], Work.SUBMIT),
                                       (ids[1], Work.SUBMIT)]
    assert all(s.busy for s in slots)


def test_waits_for_its_due_time_and_never_runs_twice() -> None:
    later = slot(State.PROCESSING, due_at=10.5)
    now_due = slot(State.PROCESSING, due_at=10.0)
    agenda = agenda_of(later, now_due)
    assert agenda.next_due() == 10.0
    assert work(agenda, now=10.0) == [(now_due.entry.id, Work.TRACK)]
    assert work(agenda, now=10.2) == []  # busy: not started again
    assert agenda.next_due() == 10.5
    assert work(agenda, now=10.5) == [(later.entry.id, Work.TRACK)]
    assert agenda.next_due() is None
    now_due.due = 12.0
    agenda.returned(now_due)
    assert not now_due.busy
    assert agenda.next_due() == 12.0
    assert work(agenda, now=11.9) == []
    assert work(agenda, now=12.0) == [(now_due.entry.id, Work.TRACK)]


def test_a_moved_due_time_leaves_no_stale_turn() -> None:
    """A webhook moves a due time forward; the old time neither starts it again nor wakes anyone."""
    s = slot(State.PROCESSING, due_at=50.0)
    agenda = agenda_of(s)
    s.pushed_job = {"id": "j", "status": "finished"}
    agenda.wake(s)
    assert agenda.next_due() == 0.0
    assert work(agenda) == [(s.entry.id, Work.TRACK)]
    s.pushed_job = None
    s.due = 80.0
    agenda.returned(s)
    assert agenda.next_due() == 80.0  # the stale 50.0 entry is gone
    assert work(agenda, now=60.0) == []


def test_a_pushed_job_is_tracked_at_once_but_only_when_processing() -> None:
    """A webhook must not wait for the safety poll; it does not hurry a submission or a delivery."""
    job = {"id": "j", "status": "finished"}
    processing = slot(State.PROCESSING, due_at=99.0, pushed=job)
    uploading = slot(State.UPLOADING, due_at=99.0, pushed=job)
    delivering = slot(State.DELIVERING, due_at=99.0, pushed=job)
    assert work(agenda_of(processing, uploading, delivering)) == [
        (processing.entry.id, Work.TRACK)]


def test_new_submissions_stop_at_max_in_flight_resumed_ones_do_not() -> None:
    """Files past ``settled`` and busy settled ones count; a resumed upload always continues."""
    running = slot(State.PROCESSING, due_at=50.0)
    busy = slot(State.SETTLED)
    fresh = [slot(State.SETTLED), slot(State.SETTLED)]
    resumed = slot(State.UPLOADING)
    agenda = agenda_of(running, busy)
    assert work(agenda) == [(busy.entry.id, Work.SUBMIT)]
    assert agenda.in_flight() == 2
    for s in (*fresh, resumed):
        agenda.add(s)
    assert work(agenda, max_in_flight=3) == [(resumed.entry.id, Work.SUBMIT)]
    assert work(agenda, max_in_flight=4) == [(fresh[0].entry.id, Work.SUBMIT)]
    assert work(agenda, max_in_flight=4) == []  # fresh[1] waits for a place
    assert not agenda.refused  # a finished file kicks the dispatcher; the gate is not the cause
    agenda.remove(running)  # a file finished
    assert work(agenda, max_in_flight=4) == [(fresh[1].entry.id, Work.SUBMIT)]


def test_the_gate_decides_every_submission_and_a_refusal_ends_the_turns_submissions() -> None:
    """Refusals are account-wide (hold, pause, pacing): nothing after one is asked this turn."""
    first, second, third = slot(State.SETTLED), slot(State.SETTLED), slot(State.SUBMITTING)
    agenda = agenda_of(first, second, third)
    gate = Gate(refuse={first.entry.id})
    assert work(agenda, gate=gate) == [(third.entry.id, Work.SUBMIT)]
    assert gate.asked == [(third.entry.id, True), (first.entry.id, True)]  # both create a job
    assert agenda.refused
    gate = Gate()
    assert work(agenda, gate=gate) == [(first.entry.id, Work.SUBMIT), (second.entry.id, Work.SUBMIT)]
    assert not agenda.refused


def test_stopping_starts_no_submission_and_no_delivery_but_still_tracks() -> None:
    slots = [slot(State.SETTLED), slot(State.UPLOADING), slot(State.PROCESSING),
             slot(State.DELIVERING)]
    gate = Gate()
    assert work(agenda_of(*slots), stopping=True, gate=gate) == [(slots[2].entry.id, Work.TRACK)]
    assert gate.asked == []  # not even a probe is used up


def test_a_removed_slot_is_never_started() -> None:
    gone = slot(State.PROCESSING)
    agenda = agenda_of(gone)
    agenda.remove(gone)
    assert work(agenda) == [] and agenda.next_due() is None and len(agenda) == 0


def test_a_turn_touches_only_what_is_due() -> None:
    """100,000 files waiting for later polls: a turn at an early time costs no walk over them."""
    agenda = agenda_of(*(slot(State.PROCESSING, due_at=100.0 + i) for i in range(100_000)))
    early = slot(State.PROCESSING, due_at=5.0)
    agenda.add(early)
    gate = Gate()
    assert work(agenda, now=5.0, gate=gate) == [(early.entry.id, Work.TRACK)]
    assert agenda.next_due() == 100.0 and len(agenda) == 100_001
