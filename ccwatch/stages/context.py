"""What every stage needs, bundled once by the daemon: config, ledger, API client, clock, metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from ccwatch.api import CloudConvertClient
from ccwatch.clock import Clock
from ccwatch.config import Config, FolderConfig, Rule
from ccwatch.http.metrics import Metrics
from ccwatch.ledger import Entry, Ledger
from ccwatch.stages.hooks import Hooks


@dataclass(frozen=True)
class Context:
    config: Config
    ledger: Ledger
    api: CloudConvertClient
    clock: Clock
    webhook_url: str | None = None
    metrics: Metrics = field(default_factory=Metrics)
    hooks: Hooks | None = None  # on_done / on_failed runner (the daemon's; tests may leave it out)
    _folders: dict[str, FolderConfig] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._folders.update({f.name: f for f in self.config.folders})

    def folder(self, name: str) -> FolderConfig:
        return self._folders[name]

    def source(self, entry: Entry) -> Path:
        """The original file's current absolute path."""
        return self.folder(entry.folder).input / PurePosixPath(entry.relpath)

    def output_path(self, entry: Entry, final_path: str) -> Path:
        """A recorded output path on this host: relative to the folder's output (hosts sharing a
        ledger may mount it at different places), or absolute as older ledgers wrote it."""
        return self.folder(entry.folder).output / PurePosixPath(final_path)

    def rule(self, entry: Entry) -> Rule:
        return self.folder(entry.folder).rules[entry.rule]

    def hook(self, entry: Entry, event: Literal["done", "failed"]) -> tuple[str, ...]:
        """The ``on_done`` / ``on_failed`` argv for ``entry``: its rule's, else its folder's."""
        rule, folder = self.rule(entry), self.folder(entry.folder)
        if event == "done":
            return rule.on_done or folder.on_done
        return rule.on_failed or folder.on_failed
