"""What every stage needs, bundled once by the daemon: config, ledger, API client, clock, metrics.

``config`` is the configuration new files are admitted under; a reload replaces it. A file already
in the pipeline keeps the configuration it was admitted under (its folder, rule and template), so
the settings a job was submitted with are the settings it is delivered with.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from ccwatch.api import CloudConvertClient
from ccwatch.clock import Clock
from ccwatch.config import Config, FolderConfig, Rule
from ccwatch.config.templates import Template
from ccwatch.http.metrics import Metrics
from ccwatch.ledger import Entry, Ledger
from ccwatch.stages.cleanup import JobCleanup
from ccwatch.stages.hooks import Hooks


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
    # entry id → the configuration it was admitted under, for entries admitted before a reload
    _pinned: dict[int, Config] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reload(self, config: Config, *, in_flight: Iterable[int]) -> None:
        """New files follow ``config`` from now on; the entries ``in_flight`` keep theirs."""
        with self._lock:
            kept = {i: self._pinned.get(i, self.config) for i in in_flight}
            self._pinned = kept
            self.config = config

    def config_of(self, entry: Entry) -> Config:
        with self._lock:
            return self._pinned.get(entry.id, self.config)

    def folder(self, name: str) -> FolderConfig:
        """A folder of the current configuration (KeyError if it has none of that name)."""
        return _folder(self.config, name)

    def folder_of(self, entry: Entry) -> FolderConfig:
        """The folder settings ``entry`` was admitted under."""
        return _folder(self.config_of(entry), entry.folder)

    def template(self, entry: Entry) -> Template:
        return self.config_of(entry).templates[entry.template]

    def source(self, entry: Entry) -> Path:
        """The original file's current absolute path."""
        return self.folder_of(entry).input / PurePosixPath(entry.relpath)

    def output_path(self, entry: Entry, final_path: str) -> Path:
        """A recorded output path on this host: relative to the folder's output (hosts sharing a
        ledger may mount it at different places), or absolute as older ledgers wrote it."""
        return self.folder_of(entry).output / PurePosixPath(final_path)

    def rule(self, entry: Entry) -> Rule:
        return self.folder_of(entry).rules[entry.rule]

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
