"""``ccwatch retry``: put quarantined files back into their input folder to be converted again.

Order matters, so that no file is lost and a running daemon notices: the ledger row is requeued
*before* the move (a daemon that sees the file arrive must find it queued, not failed), the move
never overwrites (``fs.rooted.move_version``), and the error file is removed only after the move.
A move that lands on another name (the input path was taken) is a new file version anyway, so
its row is put back as it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ccwatch import fs
from ccwatch.clock import Clock, SystemClock
from ccwatch.commands.status import ledger_path
from ccwatch.config import Config, FolderConfig
from ccwatch.errors import FolderUnavailable
from ccwatch.fs import rooted
from ccwatch.fs.roots import Roots
from ccwatch.ledger import Entry, Ledger
from ccwatch.stages.quarantine import ERROR_SUFFIX, error_file_for, in_quarantine, read_error_file


@dataclass(frozen=True, slots=True)
class Retried:
    source: Path  # where it was in the quarantine
    target: Path  # where it is now, in the input folder
    requeued: bool  # the ledger's failed row was queued again (False: it is simply a new file)


@dataclass(slots=True)
class Outcome:
    retried: list[Retried] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # one sentence per path not retried


def _split(path: Path) -> tuple[Path, Path]:
    """(the quarantined file, its error file) from either of the two."""
    if path.name.endswith(ERROR_SUFFIX):
        return path.with_name(path.name[: -len(ERROR_SUFFIX)]), path
    return path, error_file_for(path)


def _safe_relpath(value: Any) -> PurePosixPath | None:
    if not isinstance(value, str) or not value:
        return None
    rel = PurePosixPath(value)
    if rel.is_absolute() or ".." in rel.parts:
        return None  # the error file is plain JSON a person may edit: never trust it to escape
    return rel


def _home(config: Config, file: Path, record: dict[str, Any]) -> tuple[FolderConfig, PurePosixPath] | None:
    """The folder whose quarantine holds ``file`` and the relpath it came from in that input."""
    holders = [f for f in config.folders if fs.inside(f.quarantine, file)]
    if not holders:
        return None
    named = [f for f in holders if f.name == record.get("folder")]
    folder = (named or holders)[0]
    relpath = _safe_relpath(record.get("file"))
    if relpath is None:
        relpath = _within(folder.quarantine, file)
    return folder, relpath


def _within(root: Path, path: Path) -> PurePosixPath:
    return PurePosixPath(path.resolve().relative_to(root.resolve()).as_posix())


def quarantined(config: Config) -> Iterator[Path]:
    """Every file in the folders' quarantines with an error file beside it (what status counts)."""
    seen: set[Path] = set()
    for folder in config.folders:
        for original, error_file in in_quarantine(folder.quarantine):
            if error_file.resolve() not in seen:  # two folders may share one quarantine
                seen.add(error_file.resolve())
                yield original


class Retrier:
    """Moves files back and requeues their ledger rows; one ledger connection for a whole run."""

    def __init__(self, config: Config, *, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self._stack = ExitStack()
        self._ledger: Ledger | None = None
        self._roots = Roots()
        # No ledger (never ran): nothing to requeue, and none to create.
        if config.ledger.shared or ledger_path(config).is_file():
            self._ledger = config.ledger.open(config.daemon.resolved_state_dir())
            self._stack.callback(self._ledger.close)

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> Retrier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def retry_all(self, paths: Iterable[Path]) -> Outcome:
        outcome = Outcome()
        for path in paths:
            result = self.retry(path)
            if isinstance(result, Retried):
                outcome.retried.append(result)
            else:
                outcome.problems.append(result)
        return outcome

    def retry(self, path: Path) -> Retried | str:
        """Retry one file (given as itself or as its error file); a sentence when it cannot be."""
        file, error_file = _split(path.absolute())
        if fs.stat_regular(file) is None:
            return f"{file}: no such quarantined file"
        record = read_error_file(error_file)  # {} if damaged: its place says enough
        home = _home(self.config, file, record)
        if home is None:
            quarantines = ", ".join(str(f.quarantine) for f in self.config.folders)
            return f"{file}: not inside any folder's quarantine ({quarantines})"
        folder, relpath = home
        # Moved from root to root without following a symlink below either (fs.rooted).
        quarantine, source = self._roots(folder.quarantine), _within(folder.quarantine, file)
        into = self._roots(folder.input)
        version = rooted.stat_file(quarantine, source)
        if version is None:
            return f"{file}: no such quarantined file"
        entry: Entry | None = None
        try:
            taken = rooted.exists(into, relpath)
            entry = self._requeue(folder, relpath, version, taken=taken)
            final = rooted.move_version(quarantine, source, version, into, relpath)
        except FolderUnavailable as exc:
            # An absent input is usually an unmounted share: creating it would hide that.
            return f"{file}: the input folder {folder.input} of '{folder.name}' is unavailable: " \
                   f"{exc.problem}"
        except OSError as exc:
            self._restore(entry)
            return f"{file}: cannot move it back to {folder.input / relpath}: {exc.strerror or exc}"
        if final is None:
            self._restore(entry)
            return f"{file}: changed while being retried; try again"
        if entry is not None and final != relpath:
            self._restore(entry)
            entry = None
        rooted.remove(quarantine, _within(folder.quarantine, error_file))
        return Retried(source=file, target=folder.input / final, requeued=entry is not None)

    def _requeue(self, folder: FolderConfig, relpath: PurePosixPath, version: fs.FileStat, *,
                 taken: bool) -> Entry | None:
        """Queue the failed row of this exact version again; returns the row as it was."""
        if self._ledger is None or taken:
            return None  # the move will pick another name: a new version, converted as new
        if fs.name_problem(relpath.as_posix()) is not None:
            return None  # refused by its name before any ledger row: nothing to requeue
        failed = self._ledger.failed_for_path(folder.name, relpath.as_posix())
        if failed is None or fs.FileStat(failed.size, failed.mtime_ns) != version:
            return None  # edited in the quarantine (or unknown): a new version, converted as new
        self._ledger.requeue(failed.id, now=self.clock.wall())
        return failed

    def _restore(self, entry: Entry | None) -> None:
        if entry is None or self._ledger is None:
            return
        self._ledger.unrequeue(entry, now=self.clock.wall())
