"""FolderWatcher on real folders with real watchdog (events) and our poller (poll)."""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from loguru import logger

from ccwatch.testing import wait_for
from ccwatch.watch import FolderWatcher

DEADLINE_S = 10.0


class Recorder:
    """Collects the paths a watcher reports (from its thread) and waits for them with a deadline."""

    def __init__(self) -> None:
        self.paths: list[Path] = []
        self._changed = threading.Condition()

    def __call__(self, path: Path) -> None:
        with self._changed:
            self.paths.append(path)
            self._changed.notify_all()

    def wait_for(self, *expected: Path) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: set(expected) <= set(self.paths), DEADLINE_S):
                missing = sorted(set(expected) - set(self.paths))
                raise AssertionError(f"not reported within {DEADLINE_S} s: {missing}; got {self.paths}")


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    return folder


@pytest.fixture
def watching(inbox: Path) -> Iterator[Callable[..., tuple[FolderWatcher, Recorder]]]:
    """Start a watcher on ``inbox`` with the given mode; every watcher is stopped at teardown."""
    started: list[FolderWatcher] = []

    def start(mode: str, *, recursive: bool = True) -> tuple[FolderWatcher, Recorder]:
        recorder = Recorder()
        watcher = FolderWatcher(inbox, mode=mode, recursive=recursive, poll_s=0.05, on_path=recorder)
        watcher.start()
        started.append(watcher)
        return watcher, recorder

    yield start
    for watcher in started:
        watcher.stop()


def wait_until(condition: Callable[[], bool], what: str) -> None:
    wait_for(condition, timeout=DEADLINE_S, interval=0.01, message=what)


def write(path: Path, data: bytes = b"%PDF-1.7 test") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_events_mode_reports_a_created_file(
    watching: Callable[..., tuple[FolderWatcher, Recorder]], inbox: Path
) -> None:
    watcher, recorder = watching("events")
    assert watcher.alive()
    recorder.wait_for(write(inbox / "scan.pdf"), write(inbox / "sub" / "deeper" / "b.pdf"))


def test_events_mode_reports_a_file_moved_in_from_outside(
    watching: Callable[..., tuple[FolderWatcher, Recorder]], inbox: Path, tmp_path: Path
) -> None:
    outside = write(tmp_path / "elsewhere" / "a.pdf")
    _, recorder = watching("events")
    os.rename(outside, inbox / "a.pdf")
    recorder.wait_for(inbox / "a.pdf")


def test_events_mode_reports_files_inside_a_folder_moved_in(
    watching: Callable[..., tuple[FolderWatcher, Recorder]], inbox: Path, tmp_path: Path
) -> None:
    """inotify says nothing about the content of a moved-in folder; the watcher lists it."""
    batch = tmp_path / "batch"
    write(batch / "one.pdf")
    write(batch / "nested" / "two.pdf")
    _, recorder = watching("events")
    os.rename(batch, inbox / "batch")
    recorder.wait_for(inbox / "batch" / "one.pdf", inbox / "batch" / "nested" / "two.pdf")


def test_poll_mode_reports_new_and_changed_files_only(
    watching: Callable[..., tuple[FolderWatcher, Recorder]], inbox: Path
) -> None:
    old = write(inbox / "old.pdf")
    _, recorder = watching("poll")
    recorder.wait_for(write(inbox / "new.pdf"))
    os.utime(old, ns=(0, 1))
    recorder.wait_for(old)
    assert set(recorder.paths) == {inbox / "new.pdf", old}


def test_poll_mode_reports_files_inside_a_folder_moved_in(
    watching: Callable[..., tuple[FolderWatcher, Recorder]], inbox: Path, tmp_path: Path
) -> None:
    write(tmp_path / "batch" / "nested" / "two.pdf")
    _, recorder = watching("poll")
    os.rename(tmp_path / "batch", inbox / "batch")
    recorder.wait_for(inbox / "batch" / "nested" / "two.pdf")


def test_poll_mode_survives_the_folder_disappearing(
    watching: Callable[..., tuple[FolderWatcher, Recorder]], inbox: Path, tmp_path: Path
) -> None:
    """A share that drops and returns is not a folder full of new files (Tdarr#915)."""
    old = write(inbox / "old.pdf")
    warnings: list[str] = []
    sink = logger.add(warnings.append, level="WARNING", format="{message}")
    try:
        watcher, recorder = watching("poll")
        os.rename(inbox, tmp_path / "away")
        wait_until(lambda: any("not reachable" in w for w in warnings), "the poller noticed")
        os.rename(tmp_path / "away", inbox)
        recorder.wait_for(write(inbox / "new.pdf"))
    finally:
        logger.remove(sink)
    assert watcher.alive()
    assert old not in recorder.paths


def test_non_recursive_poll_ignores_subfolders(
    watching: Callable[..., tuple[FolderWatcher, Recorder]], inbox: Path
) -> None:
    _, recorder = watching("poll", recursive=False)
    write(inbox / "sub" / "deep.pdf")
    recorder.wait_for(write(inbox / "top.pdf"))
    assert set(recorder.paths) == {inbox / "top.pdf"}


@pytest.mark.parametrize("mode", ["events", "poll"])
def test_stop_is_clean(inbox: Path, mode: str) -> None:
    """stop() ends the watcher's threads, is idempotent, and nothing is reported after it."""
    before = set(threading.enumerate())
    recorder = Recorder()
    watcher = FolderWatcher(inbox, mode=mode, recursive=True, poll_s=0.05, on_path=recorder)
    watcher.start()
    recorder.wait_for(write(inbox / "a.pdf"))
    watcher.stop()
    watcher.stop()
    assert not watcher.alive()
    assert set(threading.enumerate()) <= before
    count = len(recorder.paths)
    write(inbox / "b.pdf")
    assert len(recorder.paths) == count  # no thread is left that could report it


def test_unknown_mode_is_refused(inbox: Path) -> None:
    with pytest.raises(ValueError, match="auto"):
        FolderWatcher(inbox, mode="auto", recursive=True, poll_s=1, on_path=Recorder())


def _inotify_masks(folder: Path) -> list[int]:
    """The event masks of this process's inotify watches on ``folder``, as the kernel holds them."""
    ino = format(os.stat(folder).st_ino, "x")
    masks = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:inotify":
                continue
            info = Path(f"/proc/self/fdinfo/{fd}").read_text()
        except OSError:
            continue  # closed meanwhile
        masks += [int(mask, 16) for mask in re.findall(rf"^inotify wd:\S+ ino:{ino} \S+ mask:([0-9a-f]+)",
                                                       info, re.MULTILINE)]
    return masks


IN_MODIFY, IN_CLOSE_WRITE, IN_CLOSE_NOWRITE, IN_OPEN = 0x2, 0x8, 0x10, 0x20
IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x80, 0x100, 0x200


@pytest.mark.skipif(sys.platform != "linux", reason="inotify and /proc/self/fdinfo are Linux's")
def test_events_mode_asks_the_kernel_for_writes_and_arrivals_only(
    watching: Callable[..., tuple[FolderWatcher, Recorder]], inbox: Path
) -> None:
    """A file that is only read (ccwatch's own upload, a backup, a file manager's thumbnails) or
    deleted raises no inotify event at all: every watch, the subfolders' too, leaves out opens,
    read-only closes and deletions, and keeps what a new or rewritten file raises."""
    sub = inbox / "sub"
    sub.mkdir()
    _, recorder = watching("events")
    for folder in (inbox, sub):
        wait_until(lambda folder=folder: bool(_inotify_masks(folder)), f"a watch on {folder}")
        for mask in _inotify_masks(folder):
            assert mask & (IN_OPEN | IN_CLOSE_NOWRITE | IN_DELETE) == 0, hex(mask)
            wanted = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE
            assert mask & wanted == wanted, hex(mask)
    recorder.wait_for(write(sub / "new.pdf"))  # and what it asks for still arrives
