"""What every stage needs, bundled once by the daemon: config, ledger, API client, clock, and the
configured folders as :class:`~ccwatch.fs.roots.Root` objects (every file operation goes through
them, so none leaves its folder)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from loguru import logger

from ccwatch.api import CloudConvertClient
from ccwatch.clock import Clock
from ccwatch.config import Config, FolderConfig, Rule
from ccwatch.config.templates import Template
from ccwatch.errors import FileError, LedgerUnavailable
from ccwatch.fs.rooted import Version
from ccwatch.fs.roots import Root, Roots
from ccwatch.ledger import Entry, Ledger

UNAVAILABLE_META = "unavailable"


@dataclass(frozen=True)
class Context:
    config: Config
    ledger: Ledger
    api: CloudConvertClient
    clock: Clock
    webhook_url: str | None = None
    roots: Roots = field(default_factory=Roots, repr=False)
    _folders: dict[str, FolderConfig] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._folders.update({f.name: f for f in self.config.folders})
        self.roots.on_change = lambda _path, _problem: self.record_availability()

    def record_availability(self) -> None:
        """Mirror the unavailable roots in the ledger, for `ccwatch status` (another process)."""
        try:
            self.ledger.set_meta(UNAVAILABLE_META, self.roots.unavailable() or None)
        except (sqlite3.Error, LedgerUnavailable) as exc:
            logger.warning("cannot record folder availability in the ledger: {}", exc)

    def folder_names(self) -> frozenset[str]:
        return frozenset(self._folders)

    def folder(self, name: str) -> FolderConfig:
        return self._folders[name]

    def root(self, path: Path) -> Root:
        return self.roots(path)

    def input_root(self, entry: Entry) -> Root:
        return self.roots(self.folder(entry.folder).input)

    def source(self, entry: Entry) -> Path:
        """The original file's absolute path (for messages: acting goes through ``input_root``)."""
        return self.folder(entry.folder).input / entry.relpath

    def output_path(self, entry: Entry, final_path: str) -> Path:
        """A recorded output path on this host: relative to the folder's output (hosts sharing a
        ledger may mount it at different places), or absolute as older ledgers wrote it."""
        return self.folder(entry.folder).output / PurePosixPath(final_path)

    def route(self, folder: FolderConfig, rule: int) -> dict[str, Any]:
        """What delivery needs of a file matched by ``rule``, kept in its ledger row so that a
        config edited while it is in flight (a rule inserted above, another ``output_name``)
        changes nothing for it."""
        chosen = folder.rules[rule]
        return {"output_name": chosen.output_name, "on_conflict": chosen.on_conflict,
                "exports": list(self.config.templates[chosen.template].export_url_tasks)}

    def rule(self, entry: Entry) -> Rule:
        if entry.route is None:  # a row from before routes were kept
            return self.folder(entry.folder).rules[entry.rule]
        return Rule(match=(), template=entry.template, output_name=entry.route["output_name"],
                    on_conflict=entry.route["on_conflict"])

    def exports(self, entry: Entry) -> tuple[str, ...]:
        """The template's export/url tasks, as they were when the file settled."""
        if entry.route is not None:
            return tuple(str(name) for name in entry.route["exports"])
        return self.template(entry).export_url_tasks

    def template(self, entry: Entry) -> Template:
        template = self.config.templates.get(entry.template)
        if template is None:
            raise FileError(f"template {entry.template!r} is no longer in the config",
                            code="TEMPLATE_GONE", job_id=entry.job_id, path=entry.relpath)
        return template


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
