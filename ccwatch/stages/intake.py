"""Intake stage: watcher events and folder scans in, settled file versions out.

Events arrive on watchdog's threads and only queue a path; ``settled()`` runs on the pipeline's
thread, filters junk, non-matching and out-of-scope paths, and feeds the per-folder settlers.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from loguru import logger

from ccwatch import fs, watch
from ccwatch.config import FolderConfig
from ccwatch.ledger import Entry, State
from ccwatch.stages.context import Context
from ccwatch.stages.settle import Settler


def relpath_in(folder: FolderConfig, path: Path) -> PurePosixPath | None:
    try:
        return PurePosixPath(path.relative_to(folder.input).as_posix())
    except ValueError:
        return None


class Intake:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._inbox: queue.SimpleQueue[tuple[str, Path]] = queue.SimpleQueue()
        self._settlers = {f.name: Settler(f.settle_s) for f in ctx.config.folders}

    def note(self, folder: str, path: Path) -> None:
        """A watcher saw ``path`` change (any thread; cheap)."""
        self._inbox.put((folder, path))

    def scan(self, folder: FolderConfig) -> int:
        """Note every file of a folder the ledger does not already know (startup and rescans)."""
        known = self.ctx.ledger.known_identities(folder.name)
        new = 0
        for relpath, path in watch.scan(folder.input, recursive=folder.recursive, ignore=folder.ignore):
            st = fs.stat_regular(path)
            if st is None or (str(relpath), st.size, st.mtime_ns) in known:
                continue
            if watch.match_rule(relpath, folder.rules) is None:
                continue
            self.note(folder.name, path)
            new += 1
        return new

    def _wanted(self, folder: FolderConfig, relpath: PurePosixPath | None) -> bool:
        if relpath is None or watch.is_junk(relpath, folder.ignore):
            return False
        if not folder.recursive and len(relpath.parts) > 1:
            return False
        return watch.match_rule(relpath, folder.rules) is not None

    def settled(self, now: float) -> Iterator[tuple[FolderConfig, PurePosixPath, fs.FileStat]]:
        """Move queued paths into the settlers, then yield the versions that stopped changing."""
        while True:
            try:
                name, path = self._inbox.get_nowait()
            except queue.Empty:
                break
            folder = self.ctx.folder(name)
            if self._wanted(folder, relpath_in(folder, path)):
                self._settlers[name].note(path, now)
        for folder in self.ctx.config.folders:
            try:
                ready = self._settlers[folder.name].poll(now, fs.stat_regular)
            except OSError as exc:
                logger.bind(folder=folder.name).error("cannot look at the folder: {}", exc)
                continue
            for path, st in ready:
                relpath = relpath_in(folder, path)
                if relpath is not None:
                    yield folder, relpath, st

    def admit(self, folder: FolderConfig, relpath: PurePosixPath, st: fs.FileStat,
              rule: int) -> Entry | None:
        """Record a settled version in the ledger; the entry to work on, or None.

        A version seen before is only worked on again when it was queued again (``settled``, by
        ``ccwatch retry``); converted, failed or in-flight ones are not.
        """
        ledger = self.ctx.ledger
        log = logger.bind(folder=folder.name, file=str(relpath))
        entry = ledger.add(folder.name, str(relpath), st.size, st.mtime_ns, rule=rule,
                           template=folder.rules[rule].template, now=self.ctx.clock.wall())
        if entry is not None:
            log.info("settled ({} bytes)", st.size)
            return entry
        known = ledger.lookup(folder.name, str(relpath), st.size, st.mtime_ns)
        if known is not None and known.state is State.FAILED:
            log.warning("this exact file failed before and is not converted again by itself; "
                        "`ccwatch retry` queues it")
        return known if known is not None and known.state is State.SETTLED else None

    def idle(self) -> bool:
        """Nothing queued and nothing settling (empty files, which wait forever, do not count)."""
        return self._inbox.empty() and all(
            s.pending() == s.waiting_empty() for s in self._settlers.values())
