"""What every stage needs, bundled once by the daemon: config, ledger, API client, clock, and the
configured folders as :class:`~ccwatch.fs.rooted.Root` objects (every file operation goes through
them, so none leaves its folder)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from loguru import logger

from ccwatch.api import CloudConvertClient
from ccwatch.clock import Clock
from ccwatch.config import Config, FolderConfig, Rule
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
        except sqlite3.Error as exc:
            logger.warning("cannot record folder availability in the ledger: {}", exc)

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

    def rule(self, entry: Entry) -> Rule:
        return self.folder(entry.folder).rules[entry.rule]


def version(entry: Entry) -> Version:
    return Version(entry.size, entry.mtime_ns)
