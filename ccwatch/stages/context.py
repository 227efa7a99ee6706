"""What every stage needs, bundled once by the daemon: config, ledger, API client, clock, metrics,
and the configured folders as :class:`~ccwatch.fs.roots.Root` objects (every file operation goes
through them, so none leaves its folder).

``config`` is the configuration new files are admitted under; a reload replaces it. A file already
in the pipeline keeps the configuration it was admitted under (its folder, rule and template), so
the settings a job was submitted with are the settings it is delivered with. Across a restart the
same holds through the route kept in its ledger row (output_name, on_conflict, hooks, exports).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from loguru import logger

from ccwatch.client.api import CloudConvertClient
from ccwatch.clock import Clock
from ccwatch.config import Config, FolderConfig, Rule
from ccwatch.config.templates import Template
from ccwatch.errors import FileError, FolderUnavailable, LedgerUnavailable
from ccwatch.fs import rooted
from ccwatch.fs.rooted import Version
from ccwatch.fs.roots import Root, Roots
from ccwatch.http.metrics import Metrics
from ccwatch.ledger import Entry, Ledger
from ccwatch.stages.cleanup import JobCleanup
from ccwatch.stages.hooks import Hooks

UNAVAILABLE_META = "unavailable"


@dataclass
class Context:
    """Not frozen only so :meth:`reload` can replace ``config``; nothing else changes."""

    config: Config
    ledger: Ledger
    api: CloudConvertClient
    clock: Clock
    webhook_url: str | None = None
    metrics: Metrics = field(default_factory=Metrics)
    hooks: Hooks | None = None  # on_done / on_failed runner (the daemon's; tests may leave it out)
    cleanup: JobCleanup | None = None  # deletes finished jobs (None: delete_jobs = false)
    roots: Roots = field(default_factory=Roots, repr=False)
    # entry id → the configuration it was admitted under, for entries admitted before a reload
    _pinned: dict[int, Config] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.roots.on_change = lambda _path, _problem: self.record_availability()

    def record_availability(self) -> None:
        """Mirror the unavailable roots in the ledger, for `ccwatch status` (another process)."""
        try:
            self.ledger.set_meta(UNAVAILABLE_META, self.roots.unavailable() or None)
        except (sqlite3.Error, LedgerUnavailable) as exc:
            logger.warning("cannot record folder availability in the ledger: {}", exc)

    def check_roots(self) -> None:
        """At start: remove unfinished temps left in outputs and quarantines, and record each
        root's device (a different one later means it was unmounted)."""
        for folder in self.config.folders:
            for place in (folder.output, folder.quarantine):
                with contextlib.suppress(FolderUnavailable):
                    removed = rooted.remove_temps(self.root(place))
                    if removed:
                        logger.bind(folder=folder.name).info(
                            "removed {} unfinished temp file(s) from {}", removed, place)
            # Each root's device is recorded now: a different one later means it was unmounted.
            for root in (folder.input, folder.output, folder.quarantine, folder.archive):
                if root is not None:
                    with contextlib.suppress(FolderUnavailable):
                        self.root(root).check()

    def reload(self, config: Config, *, in_flight: Iterable[int]) -> None:
        """New files follow ``config`` from now on; the entries ``in_flight`` keep theirs."""
        with self._lock:
            kept = {i: self._pinned.get(i, self.config) for i in in_flight}
            self._pinned = kept
            self.config = config

    def config_of(self, entry: Entry) -> Config:
        with self._lock:
            return self._pinned.get(entry.id, self.config)

    def folder_names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.config.folders)

    def folder(self, name: str) -> FolderConfig:
        """A folder of the current configuration (KeyError if it has none of that name)."""
        return _folder(self.config, name)

    def folder_of(self, entry: Entry) -> FolderConfig:
        """The folder settings ``entry`` was admitted under."""
        return _folder(self.config_of(entry), entry.folder)

    def root(self, path: Path) -> Root:
        return self.roots(path)

    def input_root(self, entry: Entry) -> Root:
        return self.roots(self.folder_of(entry).input)

    def template(self, entry: Entry) -> Template:
        template = self.config_of(entry).templates.get(entry.template)
        if template is None:
            raise FileError(f"template {entry.template!r} is no longer in the config",
                            code="TEMPLATE_GONE", job_id=entry.job_id, path=entry.relpath)
        return template

    def source(self, entry: Entry) -> Path:
        """The original file's absolute path (for messages: acting goes through ``input_root``)."""
        return self.folder_of(entry).input / PurePosixPath(entry.relpath)

    def output_path(self, entry: Entry, final_path: str) -> Path:
        """A recorded output path on this host: relative to the folder's output (hosts sharing a
        ledger may mount it at different places), or absolute as older ledgers wrote it."""
        return self.folder_of(entry).output / PurePosixPath(final_path)

    def route(self, folder: FolderConfig, rule: int) -> dict[str, Any]:
        """What delivery needs of a file matched by ``rule``, kept in its ledger row so that a
        config edited while it is in flight (a rule inserted above, another ``output_name``)
        changes nothing for it, across restarts too."""
        chosen = folder.rules[rule]
        return {"output_name": chosen.output_name, "on_conflict": chosen.on_conflict,
                "on_done": list(chosen.on_done), "on_failed": list(chosen.on_failed),
                "exports": list(self.config.templates[chosen.template].export_url_tasks)}

    def rule(self, entry: Entry) -> Rule:
        route = entry.route
        if route is None:  # a row from before routes were kept
            return self.folder_of(entry).rules[entry.rule]
        return Rule(match=(), template=entry.template, output_name=route["output_name"],
                    on_conflict=route["on_conflict"],
                    on_done=tuple(str(a) for a in route.get("on_done", ())),
                    on_failed=tuple(str(a) for a in route.get("on_failed", ())))

    def exports(self, entry: Entry) -> tuple[str, ...]:
        """The template's export/url tasks, as they were when the file settled."""
        if entry.route is not None:
            return tuple(str(name) for name in entry.route["exports"])
        return self.template(entry).export_url_tasks

    def hook(self, entry: Entry, event: Literal["done", "failed"]) -> tuple[str, ...]:
        """The ``on_done`` / ``on_failed`` argv for ``entry``: its rule's, else its folder's."""
        rule, folder = self.rule(entry), self.folder_of(entry)
        if event == "done":
            return rule.on_done or folder.on_done
        return rule.on_failed or folder.on_failed


def _folder(config: Config, name: str) -> FolderConfig:
    for folder in config.folders:
        if folder.name == name:
            return folder
    raise KeyError(name)


def version(entry: Entry) -> Version:
    return Version(entry.size, entry.mtime_ns)


FOLDER_INPUTS_META = "folder_inputs"


def follow_renamed_folders(config: Config, ledger: Ledger) -> None:
    """A folder is its input path: one renamed in the config keeps its ledger rows (so nothing is
    converted again and nothing in flight is orphaned)."""
    known: dict[str, str] = ledger.get_meta(FOLDER_INPUTS_META) or {}
    names = {f.name for f in config.folders}
    for folder in config.folders:
        for old, path in list(known.items()):
            if path == str(folder.input) and old != folder.name and old not in names:
                moved = ledger.rename_folder(old, folder.name)
                del known[old]
                logger.bind(folder=folder.name).info(
                    "folder {!r} was renamed {!r} in the config (same input); its {} ledger "
                    "row(s) follow", old, folder.name, moved)
    # Removed folders stay known: added back under any name, their rows are found again.
    ledger.set_meta(FOLDER_INPUTS_META, known | {f.name: str(f.input) for f in config.folders})
