"""Decide when a file has stopped changing: pure logic, the clock value and ``stat`` are passed in.

A file is ready when two observations at least ``settle_s`` apart show the same size and mtime_ns,
no event touched it in between, and it is not empty. There is no give-up: a file that keeps changing
(or stays empty) waits for as long as that lasts, and a vanished file is dropped.

Not thread-safe: the owner (the intake stage, on the pipeline's thread) serialises calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ccwatch.fs import FileStat


@dataclass(slots=True)
class _Track:
    last_event: float  # when note() last saw the path change
    due: float  # when poll() should look at it next
    seen: FileStat | None = None  # the last observation, valid only if taken after last_event
    seen_at: float = 0.0
    empty_waiting: bool = False  # settled but empty: waits for content with no end
    started: float = 0.0  # when it was first noted
    changing: bool = False  # still changing settle_s after it was first noted (said once)


class Settler:
    def __init__(self, settle_s: float) -> None:
        if settle_s < 0:
            raise ValueError("settle_s must be >= 0")
        self._settle_s = settle_s
        self._tracks: dict[Path, _Track] = {}
        self._notices: list[tuple[Path, str]] = []

    def note(self, path: Path, now: float) -> None:
        """An event or a scan saw ``path`` appear or change: restart its quiet period."""
        track = self._tracks.get(path)
        if track is None:
            self._tracks[path] = _Track(last_event=now, due=now, started=now)
        else:
            if track.seen is not None:
                self._changing(path, track, now)
            # The earlier observation predates this change; take a fresh one at the next poll.
            track.last_event = now
            track.due = now
            track.seen = None
            track.empty_waiting = False

    def poll(self, now: float, stat: Callable[[Path], FileStat | None]) -> list[tuple[Path, FileStat]]:
        """Stat the paths that are due; return those that are ready (each once, then untracked)."""
        ready: list[tuple[Path, FileStat]] = []
        for path, track in list(self._tracks.items()):
            if track.due > now:
                continue
            try:
                current = stat(path)
            except OSError:
                # e.g. a share briefly unreachable: keep the file and look again later
                track.due = now + self._settle_s
                continue
            if current is None:
                del self._tracks[path]
            elif track.seen is None or current != track.seen:
                if track.seen is not None:
                    self._changing(path, track, now)
                track.seen, track.seen_at = current, now
                track.due = now + self._settle_s
                track.empty_waiting = False
            elif now - track.seen_at < self._settle_s:
                track.due = track.seen_at + self._settle_s
            elif current.size == 0:
                track.due = now + self._settle_s  # empty placeholders wait until written
                if not track.empty_waiting:
                    self._notices.append((path, "empty"))
                track.empty_waiting = True
            else:
                del self._tracks[path]
                ready.append((path, current))
        return ready

    def _changing(self, path: Path, track: _Track, now: float) -> None:
        # A copy that takes a moment is normal; one still going after settle_s is worth a line.
        if not track.changing and now - track.started >= self._settle_s:
            track.changing = True
            self._notices.append((path, "changing"))

    def take_notices(self) -> list[tuple[Path, str]]:
        """Why files wait, each said once while it waits: "empty" (zero bytes), "changing"
        (still being written)."""
        notices, self._notices = self._notices, []
        return notices

    def pending(self) -> int:
        return len(self._tracks)

    def __contains__(self, path: Path) -> bool:
        return path in self._tracks

    def waiting_empty(self) -> int:
        """How many tracked files are settled but empty (they wait for content indefinitely)."""
        return sum(1 for t in self._tracks.values() if t.empty_waiting)
