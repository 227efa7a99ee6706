"""What is due now: plain clock values, slots and a scripted gate; no pools, no threads."""

from __future__ import annotations

import itertools
from typing import Any

from ccwatch.ledger import Entry, State
from ccwatch.pipeline.due import Slot, Work, due

_ids = itertools.count(1)


def slot(state: State, *, due_at: float = 0.0, busy: bool = False,
         pushed: dict[str, Any] | None = None) -> Slot:
    entry = Entry(id=next(_ids), folder="f", relpath="a.png", size=1, mtime_ns=1, state=state,
                  rule=0, template="t", attempt=1, job_tag=None, job_id=None, upload_task_id=None,
                  outputs=(), error=None, first_seen=0.0, updated_at=0.0, transient_since=None)
    return Slot(entry, due=due_at, busy=busy, pushed_job=pushed)


class Gate:
    """Admits what it is told to, and records what it was asked."""

    def __init__(self, refuse: set[int] | None = None) -> None:
        self.refuse = refuse or set()
        self.asked: list[tuple[int, bool]] = []

    def __call__(self, entry_id: int, fresh: bool) -> bool:
        self.asked.append((entry_id, fresh))
        return entry_id not in self.refuse


def work(slots: list[Slot], now: float = 10.0, *, stopping: bool = False, max_in_flight: int = 100,
         gate: Gate | None = None) -> list[tuple[int, Work]]:
    chosen = due(slots, now, stopping=stopping, max_in_flight=max_in_flight, admits=gate or Gate())
    return [(s.entry.id, w) for s, w in chosen]


def test_each_state_gets_its_work_in_order() -> None:
    slots = [slot(s) for s in (State.DELIVERING, State.SETTLED, State.PROCESSING,
                                State.SUBMITTING, State.UPLOADING)]
    assert work(slots) == [(slots[0].entry.id, Work.DELIVER), (slots[1].entry.id, Work.SUBMIT),
                           (slots[2].entry.id, Work.TRACK), (slots[3].entry.id, Work.SUBMIT),
                           (slots[4].entry.id, Work.SUBMIT)]


def test_waits_for_its_due_time_and_never_runs_twice() -> None:
    later = slot(State.PROCESSING, due_at=10.5)
    now_due = slot(State.PROCESSING, due_at=10.0)
    busy = slot(State.PROCESSING, busy=True)
    assert work([later, now_due, busy], now=10.0) == [(now_due.entry.id, Work.TRACK)]
    assert work([later], now=10.5) == [(later.entry.id, Work.TRACK)]


def test_a_pushed_job_is_tracked_at_once_but_only_when_processing() -> None:
    """A webhook must not wait for the safety poll; it does not hurry a submission or a delivery."""
    job = {"id": "j", "status": "finished"}
    processing = slot(State.PROCESSING, due_at=99.0, pushed=job)
    uploading = slot(State.UPLOADING, due_at=99.0, pushed=job)
    delivering = slot(State.DELIVERING, due_at=99.0, pushed=job)
    busy = slot(State.PROCESSING, due_at=99.0, pushed=job, busy=True)
    assert work([processing, uploading, delivering, busy]) == [(processing.entry.id, Work.TRACK)]


def test_new_submissions_stop_at_max_in_flight_resumed_ones_do_not() -> None:
    """Files past ``settled`` and busy settled ones count; a resumed upload always continues."""
    running = [slot(State.PROCESSING, due_at=50.0), slot(State.SETTLED, busy=True)]
    fresh = [slot(State.SETTLED), slot(State.SETTLED)]
    resumed = slot(State.UPLOADING)
    assert work([*running, *fresh, resumed], max_in_flight=4) == [
        (fresh[0].entry.id, Work.SUBMIT), (resumed.entry.id, Work.SUBMIT)]
    assert work([*running, *fresh, resumed], max_in_flight=3) == [(resumed.entry.id, Work.SUBMIT)]
    assert work([*running, *fresh], max_in_flight=2) == []
    assert work([*running, *fresh], max_in_flight=4) == [
        (fresh[0].entry.id, Work.SUBMIT), (fresh[1].entry.id, Work.SUBMIT)]


def test_the_gate_decides_every_submission_and_a_refused_one_does_not_count() -> None:
    first, second, third = slot(State.SETTLED), slot(State.SETTLED), slot(State.SUBMITTING)
    gate = Gate(refuse={first.entry.id})
    assert work([first, second, third], max_in_flight=2, gate=gate) == [
        (second.entry.id, Work.SUBMIT), (third.entry.id, Work.SUBMIT)]
    assert gate.asked == [(first.entry.id, True), (second.entry.id, True), (third.entry.id, False)]


def test_stopping_starts_no_submission_and_no_delivery_but_still_tracks() -> None:
    slots = [slot(State.SETTLED), slot(State.UPLOADING), slot(State.PROCESSING),
             slot(State.DELIVERING)]
    gate = Gate()
    assert work(slots, stopping=True, gate=gate) == [(slots[2].entry.id, Work.TRACK)]
    assert gate.asked == []  # not even a probe is used up
