"""Which paths matter (junk, ignore globs, rules), walking a folder, and watching it for changes.

``FolderWatcher`` only reports paths; the intake stage decides what to do with them (with
``is_junk`` and ``match_rule`` from here, then settling). Two modes: ``events`` (watchdog's native
observer, inotify on Linux) and ``poll`` (our own scandir snapshot of (size, mtime_ns) compared each
interval: about half the CPU of watchdog's PollingObserver on a 10,000-file tree, skips junk
folders, and keeps its memory when the share drops).
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Protocol

from loguru import logger
from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from ccwatch.fs import TEMP_PREFIX, TEMP_SUFFIX
from ccwatch.mounts import choose_mode

__all__ = [
    "BUILTIN_JUNK",
    "JUNK_DIRS",
    "FolderWatcher",
    "choose_mode",
    "is_junk",
    "match_rule",
    "scan",
]

BUILTIN_JUNK: tuple[str, ...] = (
    ".*",  # hidden files, which also covers .DS_Store, ._* and .syncthing.* on their own
    "~$*",  # Office lock files
    "*.tmp",
    "*.part",
    "*.crdownload",
    "*.swp",
    "Thumbs.db",
    "desktop.ini",
    ".DS_Store",
    "._*",
    ".syncthing.*",
    "~syncthing~*",
    f"{TEMP_PREFIX}*{TEMP_SUFFIX}",
)
JUNK_DIRS: tuple[str, ...] = ("@eaDir", ".Trashes", "__MACOSX", ".stfolder")

_JUNK_DIR_NAMES = frozenset(d.lower() for d in JUNK_DIRS)
_WATCHED_EVENTS = frozenset({"created", "modified", "closed", "moved"})
# What the handler acts on; inotify is asked for these alone, so a file that is only read (our own
# upload, a backup, a file manager's thumbnails) or deleted raises no event at all.
_EVENT_FILTER = [FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileMovedEvent,
                 DirCreatedEvent, DirMovedEvent]


class RuleLike(Protocol):
    """What ``match_rule`` needs of ``ccwatch.config.Rule``."""

    @property
    def match(self) -> Sequence[str]: ...


@functools.lru_cache(maxsize=256)
def _compile(globs: tuple[str, ...]) -> re.Pattern[str]:
    # One case-insensitive regex per glob list: a poll of 10,000 files checks every name.
    return re.compile("|".join(fnmatch.translate(g) for g in globs) or "(?!)", re.IGNORECASE)


_BUILTIN_RE = _compile(BUILTIN_JUNK)


def _matches(text: str, globs: Sequence[str]) -> bool:
    return bool(globs) and _compile(tuple(globs)).match(text) is not None


def _junk_dir(name: str, ignore: Sequence[str]) -> bool:
    return name.startswith(".") or name.lower() in _JUNK_DIR_NAMES or _matches(name, ignore)


def _junk_file(name: str, ignore: Sequence[str]) -> bool:
    # (ccwatch's own temp files are in BUILTIN_JUNK.)
    return _BUILTIN_RE.match(name) is not None or _matches(name, ignore)


def is_junk(relpath: PurePosixPath, ignore: Sequence[str] = ()) -> bool:
    """Never processed: a junk or hidden folder on the way, a junk file name, or a user ``ignore``
    glob matching any component's name or the whole relative path (case-insensitive)."""
    *folders, name = relpath.parts or ("",)
    return (
        any(_junk_dir(folder, ignore) for folder in folders)
        or _junk_file(name, ignore)
        or _matches(relpath.as_posix(), ignore)
    )


def match_rule(relpath: PurePosixPath, rules: Sequence[RuleLike]) -> int | None:
    """Index of the first rule with a glob matching the relative path or the file name."""
    path, name = relpath.as_posix(), relpath.name
    for index, rule in enumerate(rules):
        if _matches(path, rule.match) or _matches(name, rule.match):
            return index
    return None


def _walk(
    root: Path, recursive: bool, ignore: Sequence[str], warn: Callable[[str], None]
) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """(relative path with "/", entry) of regular non-junk files; the poll loop's hot path."""
    stack: list[tuple[str, str]] = [("", str(root))]
    ignored = _compile(tuple(ignore)) if ignore else None  # once, not per name: 100,000s of them
    while stack:
        rel_dir, abs_dir = stack.pop()
        try:
            with os.scandir(abs_dir) as entries:
                found = list(entries)
        except OSError as exc:  # vanished or unreadable folder: say so, walk the rest
            warn(f"cannot list {abs_dir}: {exc.strerror or exc}")
            continue
        for entry in found:
            name = entry.name
            try:
                if entry.is_symlink():
                    continue
                if entry.is_dir():
                    if recursive and not _junk_dir(name, ignore):
                        stack.append((f"{rel_dir}{name}/", entry.path))
                elif entry.is_file() and _BUILTIN_RE.match(name) is None and (
                        ignored is None or ignored.match(name) is None):
                    relpath = rel_dir + name
                    if ignored is None or ignored.match(relpath) is None:
                        yield relpath, entry
            except OSError as exc:
                warn(f"cannot examine {entry.path}: {exc.strerror or exc}")


def _log_warning(message: str) -> None:
    logger.warning(message)


def scan(root: Path, *, recursive: bool, ignore: Sequence[str]) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """(relpath with "/", entry) of every regular, non-junk file under ``root``; symlinks are
    skipped. Plain strings and the directory entry (its lstat cached): a scan of 100,000 files
    builds no path objects for the files it only compares with the ledger."""
    return _walk(root, recursive, ignore, _log_warning)


Snapshot = dict[str, tuple[int, int]]


class _Poller:
    """Compares (size, mtime_ns) snapshots every ``poll_s``; reports new and changed files."""

    def __init__(self, root: Path, recursive: bool, poll_s: float, on_path: Callable[[Path], None]) -> None:
        self._root, self._recursive, self._poll_s, self._on_path = root, recursive, poll_s, on_path
        self._stop = threading.Event()
        self._warned: set[str] = set()
        self._root_missing = False
        self._snapshot = self._take() or {}
        self._thread = threading.Thread(target=self._run, name=f"ccwatch-poll {root}", daemon=True)

    def _warn_once(self, message: str) -> None:
        # Polling repeats every few seconds; an unreadable folder should not flood the log.
        if message not in self._warned:
            self._warned.add(message)
            logger.warning(message)

    def _take(self) -> Snapshot | None:
        if not self._root.is_dir():
            # A dropped share looks empty: keep the old snapshot so its return is not "all new".
            if not self._root_missing:
                logger.warning("{} is not reachable; polling goes on", self._root)
            self._root_missing = True
            return None
        if self._root_missing:
            logger.info("{} is reachable again", self._root)
            self._root_missing = False
        snapshot: Snapshot = {}
        for _, entry in _walk(self._root, self._recursive, (), self._warn_once):
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished between listing and stat
            snapshot[entry.path] = (st.st_size, st.st_mtime_ns)
        return snapshot

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                current = self._take()
                if current is None:
                    continue
                previous, self._snapshot = self._snapshot, current
                for path, state in current.items():
                    if previous.get(path) != state:
                        self._on_path(Path(path))
            except Exception:  # the poller must outlive any one bad round
                logger.exception("polling {} failed; trying again", self._root)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def alive(self) -> bool:
        return self._thread.is_alive()


class _Handler(FileSystemEventHandler):
    def __init__(self, root: Path, recursive: bool, on_path: Callable[[Path], None]) -> None:
        self._root, self._recursive, self._on_path = root, recursive, on_path

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in _WATCHED_EVENTS:
            return
        raw = event.dest_path if event.event_type == "moved" else event.src_path
        path = Path(os.fsdecode(raw))
        try:
            if not event.is_directory:
                self._on_path(path)
            elif event.event_type in ("created", "moved") and self._recursive:
                self._folder_arrived(path)
        except Exception:  # an exception here would kill watchdog's thread and end all watching
            logger.exception("handling {} for {} failed", event.event_type, path)

    def _folder_arrived(self, folder: Path) -> None:
        # inotify reports only the folder moved in, not the files already inside it: list them.
        try:
            rel = folder.relative_to(self._root)
        except ValueError:
            return
        if any(_junk_dir(part, ()) for part in rel.parts):
            return
        for _, entry in scan(folder, recursive=True, ignore=()):
            self._on_path(Path(entry.path))


def _quiet_watchdog_bookkeeping() -> None:
    # watchdog's recursive inotify code warns when a fast ``mkdir -p`` or tree copy makes it add (or
    # drop) a watch twice. Harmless, but under ``-W error`` (our tests) the warning is raised inside
    # its thread and silently ends all watching. Added at start so it sits ahead of earlier filters.
    warnings.filterwarnings(
        "ignore", message=r"Callback with id .* (already exists|does not exist)", category=RuntimeWarning
    )


class FolderWatcher:
    """Reports files created, changed or moved into ``root`` to ``on_path``, from a watcher thread.

    ``on_path`` must be cheap and thread-safe (the pipeline just records the path). Changes made
    after ``start()`` returns are reported; files already there are the startup scan's business.
    """

    def __init__(
        self,
        root: Path,
        *,
        mode: str,
        recursive: bool,
        poll_s: float,
        on_path: Callable[[Path], None],
    ) -> None:
        if mode not in ("events", "poll"):
            raise ValueError(f"mode must be 'events' or 'poll', not {mode!r}")
        self.root, self.mode, self.recursive, self.poll_s = root, mode, recursive, poll_s
        self._on_path = on_path
        self._observer: BaseObserver | None = None
        self._poller: _Poller | None = None

    def start(self) -> None:
        if self.mode == "events":
            _quiet_watchdog_bookkeeping()
            observer = Observer()
            observer.schedule(
                _Handler(self.root, self.recursive, self._on_path),
                str(self.root),
                recursive=self.recursive,
                event_filter=_EVENT_FILTER,
            )
            try:
                observer.start()
            except OSError as exc:
                # Typically the inotify watch limit (fs.inotify.max_user_watches): keep working.
                logger.warning("no change events for {} ({}); polling instead", self.root, exc)
                self.mode = "poll"
            else:
                self._observer = observer
                return
        self._poller = _Poller(self.root, self.recursive, self.poll_s, self._on_path)
        self._poller.start()

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join()
            self._observer = None
        if self._poller is not None:
            self._poller.stop()
            self._poller = None

    def alive(self) -> bool:
        if self._observer is not None:
            return bool(self._observer.is_alive())
        return self._poller is not None and self._poller.alive()
