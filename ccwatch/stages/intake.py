"""Intake stage: watcher events and folder scans in, ledger entries to work on out.

Events arrive on watchdog's threads and only queue a path; ``admitted()`` runs on the pipeline's
thread, filters junk, out-of-scope and non-matching paths (each path's rule is matched once, when it
enters a settler, and carried along), feeds the per-folder settlers, and records the versions that
stopped changing in the ledger as ``settled``. Every file that is not taken says why in one INFO
line, once (not at every event or rescan).

In an ``in_place`` folder, ccwatch's own outputs are out of scope: everything under an output
folder inside the input (the config says so), and every path a delivery chose (the ledger says so,
recorded before the output's rename, so even the first event for it is recognised).
"""

from __future__ import annotations

import errno
import functools
import queue
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from loguru import logger

from ccwatch import fs, watch
from ccwatch.config import FolderConfig, templates
from ccwatch.errors import CcwatchError, FolderUnavailable
from ccwatch.fs import rooted
from ccwatch.ledger import Entry, State
from ccwatch.stages import quarantine
from ccwatch.stages.context import Context
from ccwatch.stages.settle import Settler

_TYPICAL_EXT = "xxx"  # pdf, jpg, png…: a longer one (webp, docx) may still not fit at delivery

# How many "ignored" verdicts are remembered so each is said once; beyond it, some may repeat.
_SAID_MAX = 100_000
_WAITING = {"empty": "empty file: waiting for content",
            "changing": "still being written: waiting until it stops changing"}


def rule_for(folder: FolderConfig, relpath: PurePosixPath) -> int | str:
    """The index of the rule that takes a file of ``folder``, or why none does."""
    if watch.is_junk(relpath):
        return "ignored: junk (hidden, temporary or system file; built-in list)"
    if watch.is_junk(relpath, folder.ignore):
        return "ignored: matches the folder's ignore list"
    if not folder.recursive and len(relpath.parts) > 1:
        return "ignored: in a subfolder and recursive = false"
    rule = watch.match_rule(relpath, folder.rules)
    return "ignored: no rule matches" if rule is None else rule


def relpath_in(folder: FolderConfig, path: Path) -> PurePosixPath | None:
    try:
        return PurePosixPath(path.relative_to(folder.input).as_posix())
    except ValueError:
        return None


def name_problem(folder: FolderConfig, relpath: PurePosixPath, rule: int) -> str | None:
    """Why this file cannot be converted and delivered under its name (checked before any job)."""
    problem = fs.name_problem(str(relpath))
    if problem is not None:
        return problem
    # The server names an output after the input's stem; a long stem may not fit the pattern.
    predicted = templates.format_output_name(
        folder.rules[rule].output_name, input_relpath=relpath,
        output_filename=f"{relpath.stem}.{_TYPICAL_EXT}", n=1, date="0000-00-00")
    if fs.name_bytes(predicted) > fs.NAME_MAX:
        return f"its output name would be longer than {fs.NAME_MAX} bytes: rename it shorter"
    return None


class Intake:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # (folder, path, its rule when a scan already matched it)
        self._inbox: queue.SimpleQueue[tuple[str, Path, int | None]] = queue.SimpleQueue()
        self._settlers = {f.name: Settler(f.settle_s) for f in ctx.config.folders}
        # What each path in a settler was noted as: its relpath and the rule it matched.
        self._noted: dict[str, dict[Path, tuple[PurePosixPath, int]]] = {
            f.name: {} for f in ctx.config.folders}
        self._unrefused: set[tuple[str, PurePosixPath]] = set()  # refused, not yet quarantined
        self._said: set[tuple[str, PurePosixPath]] = set()

    def note(self, folder: str, path: Path) -> None:
        """A watcher saw ``path`` change (any thread; cheap)."""
        self._inbox.put((folder, path, None))

    def reset(self) -> None:
        """After a reload: drop what was queued or settling (matched under the old rules) and
        what was said; the scans that follow a reload note every file not yet converted again."""
        while not self._inbox.empty():
            self._inbox.get_nowait()
        self._settlers = {f.name: Settler(f.settle_s) for f in self.ctx.config.folders}
        self._noted = {f.name: {} for f in self.ctx.config.folders}
        self._said.clear()

    def scan(self, folder: FolderConfig) -> int:
        """Note every file of a folder the ledger does not already know (startup and rescans)."""
        try:
            self.ctx.root(folder.input).check()
        except FolderUnavailable:
            return 0  # said once by the root; an unmounted share's mount point is not its files
        known = self.ctx.ledger.known_identities(folder.name)
        unknown: list[tuple[str, str]] = []
        for rel, entry in watch.scan(folder.input, recursive=folder.recursive, ignore=folder.ignore):
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:  # gone since it was listed
                continue
            if stat.S_ISREG(st.st_mode) and (rel, st.st_size, st.st_mtime_ns) not in known:
                unknown.append((rel, entry.path))
        del known
        new = 0
        # In name order, so files found together settle (and get their ledger ids) in that order.
        unknown.sort(key=lambda found: found[0].split("/"))
        for rel, abspath in unknown:
            relpath, path = PurePosixPath(rel), Path(abspath)
            rule = watch.match_rule(relpath, folder.rules)
            if self._own_output(folder, path):
                continue
            if rule is None:
                self._explain(folder, relpath, "ignored: no rule matches")
                continue
            self._inbox.put((folder.name, path, rule))
            new += 1
        logger.bind(folder=folder.name).debug("scan: {} new file(s)", new)
        return new

    def _explain(self, folder: FolderConfig, relpath: PurePosixPath, why: str) -> None:
        """Say once why a file is left alone (our own files, temps and host markers, are not news)."""
        key = (folder.name, relpath)
        if key in self._said or relpath.name.startswith(fs.TEMP_PREFIX):
            return
        if len(self._said) >= _SAID_MAX:
            self._said.clear()
        self._said.add(key)
        logger.bind(folder=folder.name, file=str(relpath)).info(why)

    def _own_output(self, folder: FolderConfig, path: Path) -> bool:
        """An in-place folder's own result: never an input, whatever rule it matches."""
        if not folder.in_place:
            return False
        if folder.output != folder.input and path.is_relative_to(folder.output):
            return True
        # Recorded relative to the output (absolute by older versions).
        recorded = [path.relative_to(folder.output).as_posix()] if path.is_relative_to(
            folder.output) else []
        if self.ctx.ledger.is_output(folder.name, *recorded, str(path)):
            logger.bind(folder=folder.name, file=str(path.relative_to(folder.input))).debug(
                "our own output: not an input")
            return True
        return False

    def admitted(self, now: float) -> Iterator[Entry]:
        """Settle what was noted; record each version that stopped changing and yield the entries
        to work on (new ones, and ones ``ccwatch retry`` queued again)."""
        self._drain(now)
        for folder in self.ctx.config.folders:
            for relpath, rule, st in self._settled(folder, now):
                problem = name_problem(folder, relpath, rule)
                if problem is not None:
                    self._refuse(folder, relpath, st, rule, problem)
                    continue
                try:
                    entry = self._admit(folder, relpath, st, rule)
                except (OSError, sqlite3.Error, CcwatchError) as exc:
                    logger.bind(folder=folder.name, file=str(relpath)).error("cannot admit: {}", exc)
                    self._inbox.put((folder.name, folder.input / relpath, rule))  # settle it again
                    continue
                if entry is not None:
                    yield entry

    def _drain(self, now: float) -> None:
        """Move queued paths that are in scope and match a rule into their folder's settler."""
        while True:
            try:
                name, path, rule = self._inbox.get_nowait()
            except queue.Empty:
                return
            try:
                folder = self.ctx.folder(name)
            except KeyError:  # a folder a reload removed
                continue
            relpath = relpath_in(folder, path)
            if relpath is None:
                continue
            settler = self._settlers[name]
            if rule is not None and path in settler:
                continue  # a scan saw no change in a file that is settling: its quiet period goes on
            if rule is None:  # an event (a scan has matched the rule and checked the rest)
                if self._own_output(folder, path):
                    continue  # nothing to say about our own results
                verdict = rule_for(folder, relpath)
                if isinstance(verdict, str):
                    self._explain(folder, relpath, verdict)
                    continue
                rule = verdict
            settler.note(path, now)
            self._noted[name][path] = (relpath, rule)

    def _settled(self, folder: FolderConfig, now: float
                 ) -> list[tuple[PurePosixPath, int, fs.FileStat]]:
        """The versions in ``folder`` that stopped changing, with their relpath and rule."""
        settler, noted = self._settlers[folder.name], self._noted[folder.name]
        try:
            ready = settler.poll(now, functools.partial(self._stat, folder, noted))
        except OSError as exc:
            logger.bind(folder=folder.name).error("cannot look at the folder: {}", exc)
            return []
        for path, notice in settler.take_notices():
            relpath = noted[path][0] if path in noted else path
            logger.bind(folder=folder.name, file=str(relpath)).info(_WAITING[notice])
        settled = [(*noted.pop(path), st) for path, st in ready]
        if len(noted) > settler.pending():  # some vanished while settling
            for path in [p for p in noted if p not in settler]:
                del noted[path]
        return settled

    def _stat(self, folder: FolderConfig, noted: dict[Path, tuple[PurePosixPath, int]],
              path: Path) -> fs.FileStat | None:
        """The file as reached from its folder without following symlinks (see fs.rooted)."""
        try:
            return rooted.stat_file(self.ctx.root(folder.input), noted[path][0])
        except FolderUnavailable as exc:  # the settler looks again later
            raise OSError(errno.ENOENT, exc.message) from exc

    def _admit(self, folder: FolderConfig, relpath: PurePosixPath, st: fs.FileStat,
               rule: int) -> Entry | None:
        """Record a settled version in the ledger; the entry to work on, or None.

        A version seen before is only worked on again when it was queued again (``settled``, by
        ``ccwatch retry``); converted, failed or in-flight ones are not.
        """
        ledger = self.ctx.ledger
        log = logger.bind(folder=folder.name, file=str(relpath))
        moved = self._renamed(folder, relpath, st)
        if moved is not None:
            log.info("is {} renamed while in flight: same file, same job; its output follows "
                     "the new name", moved.relpath)
            return ledger.update(moved.id, now=self.ctx.clock.wall(), relpath=str(relpath))
        entry = ledger.add(folder.name, str(relpath), st.size, st.mtime_ns, rule=rule,
                           template=folder.rules[rule].template, now=self.ctx.clock.wall(),
                           route=self.ctx.route(folder, rule))
        if entry is not None:
            log.info("settled ({} bytes)", st.size)
            return entry
        known = ledger.lookup(folder.name, str(relpath), st.size, st.mtime_ns)
        if known is not None and known.state is State.FAILED:
            log.warning("this exact file failed before and is not converted again by itself; "
                        "`ccwatch retry` queues it")
        return known if known is not None and known.state is State.SETTLED else None

    def next_due(self) -> float | None:
        """When a settling file is next due for a look (None: none is settling)."""
        times = [t for s in self._settlers.values() if (t := s.next_due()) is not None]
        return min(times, default=None)

    def _renamed(self, folder: FolderConfig, relpath: PurePosixPath, st: fs.FileStat
                 ) -> Entry | None:
        """The in-flight entry this file is, renamed (or moved within the folder) while its job
        runs: same size and mtime, and nothing of that version left at the old name."""
        root = self.ctx.root(folder.input)
        for entry in self.ctx.ledger.in_flight_like(folder.name, st.size, st.mtime_ns):
            if entry.relpath != str(relpath) and rooted.stat_file(root, entry.relpath) != st:
                return entry
        return None

    def _refuse(self, folder: FolderConfig, relpath: PurePosixPath, st: fs.FileStat, rule: int,
                problem: str) -> None:
        try:
            quarantine.refuse(self.ctx, folder, relpath, st, rule, problem)
        except (OSError, FolderUnavailable) as exc:
            # Noted again at the next rescan: say it once, not at every rescan.
            if (folder.name, relpath) not in self._unrefused:
                self._unrefused.add((folder.name, relpath))
                logger.bind(folder=folder.name, file=str(relpath)).error(
                    "not converted ({}), and cannot be quarantined: {}", problem, exc)
        else:
            self._unrefused.discard((folder.name, relpath))

    def idle(self) -> bool:
        """Nothing queued and nothing settling (empty files, which wait forever, do not count)."""
        return self._inbox.empty() and all(
            s.pending() == s.waiting_empty() for s in self._settlers.values())
