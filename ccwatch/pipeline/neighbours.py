"""Other ccwatch installations watching the same input folder: found, and warned about loudly.

Each daemon leaves a small hidden marker in every input folder it watches (junk to every watcher,
so never converted), rewritten at each rescan, naming its installation (the ledger's id), its host
and when the marker goes stale. A fresh marker of *another* installation means two ledgers for one
folder: both convert every file. Hosts that share one PostgreSQL ledger share its installation id,
so they never warn about each other. An input that cannot be written is only looked at.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from loguru import logger

from ccwatch.clock import Clock
from ccwatch.config import Config, FolderConfig
from ccwatch.errors import FolderUnavailable, LedgerUnavailable
from ccwatch.fs import rooted
from ccwatch.fs.roots import Roots
from ccwatch.ledger import Ledger

PREFIX = ".ccwatch-host-"
STALE_RESCANS = 3  # a marker not rewritten for this many rescans belongs to a stopped daemon
META_KEY = "neighbours"  # the warnings, for ``ccwatch status``


class Neighbours:
    def __init__(self, config: Config, ledger: Ledger, clock: Clock, *, state_dir: Path,
                 roots: Roots) -> None:
        self._config = config
        self._roots = roots
        self._ledger = ledger
        self._clock = clock
        self._installation = ledger.installation_id
        self._host = config.ledger.host_id()
        who = f"{self._host}\0{state_dir}".encode()
        self._name = f"{PREFIX}{self._installation}-{hashlib.sha256(who).hexdigest()[:8]}.json"
        self._warned: dict[str, str] = {}

    def beat(self, folder: FolderConfig) -> None:
        """Rewrite our marker in ``folder``'s input, then warn about any other installation's."""
        now = self._clock.wall()
        marker = {"installation": self._installation, "host": self._host, "pid": os.getpid(),
                  "shared_ledger": self._ledger.shared, "folder": folder.name,
                  "fresh_until": now + STALE_RESCANS * folder.rescan_s}
        try:
            # Inside the root as every write (an unmounted share's mount point gets nothing).
            with rooted.staged(self._roots(folder.input), ()) as item:
                item.write(json.dumps(marker).encode())
                item.commit(self._name, overwrite=True)
        except FolderUnavailable:
            return
        except OSError:
            pass  # a read-only input: we still see the others' markers
        for other in _markers(folder.input):
            if other.get("installation") != self._installation and _fresh(other, now):
                self._warn(folder, other)

    def _warn(self, folder: FolderConfig, other: dict[str, object]) -> None:
        key = f"{folder.name}\0{other.get('installation')}"
        message = (f"folder '{folder.name}' ({folder.input}) is also watched by another ccwatch "
                   f"with its own ledger (host {other.get('host')}, pid {other.get('pid')}): both "
                   "convert every file. Fix: share one ledger, [ledger] url = \"postgresql://…\" "
                   "on every host (docs/operations.md, \"Several hosts\"), or stop one of them")
        if key in self._warned:
            return
        self._warned[key] = message
        logger.bind(folder=folder.name).error("{}", message)
        try:
            self._ledger.set_meta(META_KEY, sorted(self._warned.values()))
        except LedgerUnavailable:
            pass  # the log line has said it

    def leave(self) -> None:
        """A clean stop: our markers go (a killed daemon's go stale instead)."""
        for folder in self._config.folders:
            with contextlib.suppress(OSError, FolderUnavailable):
                rooted.remove(self._roots(folder.input), self._name)
        try:
            self._ledger.set_meta(META_KEY, None)
        except LedgerUnavailable:
            pass


def _markers(folder: Path) -> list[dict[str, object]]:
    found = []
    try:
        candidates = [p for p in folder.iterdir() if p.name.startswith(PREFIX) and p.suffix == ".json"]
    except OSError:
        return []
    for path in candidates:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # being rewritten, or not ours to read
        if isinstance(data, dict):
            found.append(data)
    return found


def _fresh(marker: dict[str, object], now: float) -> bool:
    until = marker.get("fresh_until")
    return isinstance(until, int | float) and until > now
