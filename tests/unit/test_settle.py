"""Settle rules, driven by plain float clock values and a scripted stat table: no sleeping."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccwatch.fs import FileStat
from ccwatch.stages.settle import Settler

A = Path("/in/a.pdf")
B = Path("/in/b.pdf")


class FakeDisk:
    """What ``stat`` answers, set by each test step."""

    def __init__(self) -> None:
        self.files: dict[Path, FileStat] = {}
        self.calls = 0

    def stat(self, path: Path) -> FileStat | None:
        self.calls += 1
        return self.files.get(path)


@pytest.fixture
def disk() -> FakeDisk:
    return FakeDisk()


def test_steady_file_is_ready_once_after_settle_s(disk: FakeDisk) -> None:
    """Ready exactly when settle_s has passed since the first look, then no longer tracked."""
    settler = Settler(2.0)
    disk.files[A] = FileStat(10, 1)
    settler.note(A, 0.0)
    assert settler.poll(0.0, disk.stat) == []
    assert settler.poll(1.99, disk.stat) == []
    assert settler.poll(2.0, disk.stat) == [(A, FileStat(10, 1))]
    assert settler.pending() == 0
    assert settler.poll(10.0, disk.stat) == []


def test_growing_file_is_never_ready_while_it_grows(disk: FakeDisk) -> None:
    """Each look at a growing file restarts the wait; it is ready settle_s after it stops."""
    settler = Settler(2.0)
    settler.note(A, 0.0)
    now = 0.0
    for size in range(1, 50):
        disk.files[A] = FileStat(size, size)
        assert settler.poll(now, disk.stat) == []
        now += 2.5  # longer than settle_s between looks: only the change holds it back
    assert settler.poll(now, disk.stat) == [(A, FileStat(49, 49))]


def test_events_during_the_wait_restart_it(disk: FakeDisk) -> None:
    """A note() after the first look means the look is stale: wait settle_s from a fresh one."""
    settler = Settler(2.0)
    disk.files[A] = FileStat(10, 1)
    settler.note(A, 0.0)
    settler.poll(0.0, disk.stat)
    settler.note(A, 1.5)
    assert settler.poll(2.0, disk.stat) == []
    assert settler.poll(3.9, disk.stat) == []
    assert settler.poll(4.0, disk.stat) == [(A, FileStat(10, 1))]


def test_zero_byte_file_waits_then_becomes_ready_once_written(disk: FakeDisk) -> None:
    """An empty placeholder never settles, however long; once written it settles normally."""
    settler = Settler(2.0)
    disk.files[A] = FileStat(0, 1)
    settler.note(A, 0.0)
    assert settler.poll(0.0, disk.stat) == []
    assert settler.waiting_empty() == 0  # not settled yet: it might still be on its way
    for now in (2.0, 4.0, 100.0, 1000.0):
        assert settler.poll(now, disk.stat) == []
    assert (settler.pending(), settler.waiting_empty()) == (1, 1)
    disk.files[A] = FileStat(500, 2)
    assert settler.poll(1002.0, disk.stat) == []
    assert settler.waiting_empty() == 0
    assert settler.poll(1004.0, disk.stat) == [(A, FileStat(500, 2))]


def test_vanished_file_is_dropped(disk: FakeDisk) -> None:
    settler = Settler(2.0)
    disk.files[A] = FileStat(10, 1)
    settler.note(A, 0.0)
    settler.poll(0.0, disk.stat)
    del disk.files[A]
    assert settler.poll(2.0, disk.stat) == []
    assert settler.pending() == 0


def test_mtime_change_with_same_size_restarts_the_wait(disk: FakeDisk) -> None:
    """A pre-sized file (Windows Explorer copy) is still being written while its mtime moves."""
    settler = Settler(2.0)
    disk.files[A] = FileStat(4096, 1)
    settler.note(A, 0.0)
    settler.poll(0.0, disk.stat)
    disk.files[A] = FileStat(4096, 2)
    assert settler.poll(2.0, disk.stat) == []
    assert settler.poll(4.0, disk.stat) == [(A, FileStat(4096, 2))]


def test_polls_stat_only_what_is_due(disk: FakeDisk) -> None:
    """A poll before a path's next look is due does no stat call for it."""
    settler = Settler(2.0)
    disk.files[A] = FileStat(1, 1)
    disk.files[B] = FileStat(1, 1)
    settler.note(A, 0.0)
    settler.note(B, 1.0)
    settler.poll(1.0, disk.stat)  # both looked at, at t=1: next look due at t=3
    calls = disk.calls
    assert settler.poll(2.5, disk.stat) == []
    assert disk.calls == calls
    assert sorted(p for p, _ in settler.poll(3.0, disk.stat)) == [A, B]
    assert disk.calls == calls + 2


def test_stat_error_keeps_the_file_for_a_later_look(disk: FakeDisk) -> None:
    """An unreachable share (OSError) is not a vanished file: it is looked at again settle_s later."""
    settler = Settler(1.0)

    def unreachable(path: Path) -> FileStat | None:
        raise OSError(5, "Input/output error")

    settler.note(A, 0.0)
    assert settler.poll(0.0, unreachable) == []
    assert settler.pending() == 1
    disk.files[A] = FileStat(10, 1)
    assert settler.poll(0.5, disk.stat) == [] and disk.calls == 0  # not due yet
    assert settler.poll(1.0, disk.stat) == [] and disk.calls == 1  # first good look
    assert settler.poll(2.0, disk.stat) == [(A, FileStat(10, 1))]


def test_negative_settle_time_is_refused() -> None:
    with pytest.raises(ValueError, match="settle_s"):
        Settler(-1.0)


def test_waiting_reasons_are_said_once(disk: FakeDisk) -> None:
    """An empty file and a file still changing after settle_s each give one notice, not one per poll."""
    settler = Settler(2.0)
    disk.files[A] = FileStat(0, 1)
    disk.files[B] = FileStat(10, 1)
    settler.note(A, 0.0)
    settler.note(B, 0.0)
    for t in range(0, 12):
        disk.files[B] = FileStat(10 + t, t)  # grows at every look
        settler.poll(float(t), disk.stat)
    assert sorted(settler.take_notices()) == [(A, "empty"), (B, "changing")]
    for t in range(12, 20):
        disk.files[B] = FileStat(10 + t, t)
        settler.poll(float(t), disk.stat)
    assert settler.take_notices() == []


def test_a_short_copy_is_not_called_still_being_written(disk: FakeDisk) -> None:
    settler = Settler(2.0)
    disk.files[A] = FileStat(5, 1)
    settler.note(A, 0.0)
    settler.poll(0.0, disk.stat)
    disk.files[A] = FileStat(10, 2)
    settler.note(A, 0.5)
    assert settler.poll(0.5, disk.stat) == []
    assert settler.poll(2.5, disk.stat) == [(A, FileStat(10, 2))]
    assert settler.take_notices() == []
