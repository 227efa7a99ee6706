"""Run ``ccwatch`` as a real subprocess against an emulator served by the test process."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccwatch.testing import TO_JPG, config_text, wait_for


@dataclass
class Setup:
    root: Path
    input: Path
    output: Path
    quarantine: Path
    state: Path
    config: Path

    def states(self) -> dict[str, str]:
        """relpath → ledger state of its newest version (read-only, like ``ccwatch status``)."""
        db = self.state / "ledger.sqlite3"
        if not db.exists():
            return {}
        connection = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=10)
        try:
            rows = connection.execute("SELECT relpath, state FROM files ORDER BY id").fetchall()
        except sqlite3.OperationalError:  # created but its tables not yet written
            return {}
        finally:
            connection.close()
        return {r[0]: r[1] for r in rows}


def make_setup(root: Path, emulator: Any, *, folder_extra: str = "", daemon_extra: str = "",
               templates: str = TO_JPG, rules: tuple[str, ...] = ('match = ["*.png"]\ntemplate = "to-jpg"',),
               input_dir: Path | None = None, settle_s: float = 0.3,
               delete_jobs: bool = False) -> Setup:
    s = Setup(root, input_dir or root / "in", root / "out", root / "failed", root / "state",
              root / "ccwatch.toml")
    for p in (s.input, s.output, s.quarantine, s.state):
        p.mkdir(parents=True, exist_ok=True)
    s.config.write_text(config_text(
        endpoint=emulator.base_url, state_dir=s.state, input_dir=s.input, output=s.output,
        quarantine=s.quarantine, rules=rules, templates=templates, folder_extra=folder_extra,
        daemon_extra=daemon_extra, settle_s=settle_s, delete_jobs=delete_jobs))
    return s


class Daemon:
    """``python -m ccwatch run`` with its stderr captured to a file."""

    def __init__(self, setup: Setup, api_key: str, *, once: bool = False,
                 env: dict[str, str] | None = None, wrap: list[str] | None = None) -> None:
        self.log = setup.root / f"daemon-{os.getpid()}-{id(self)}.log"
        args = [*(wrap or []), sys.executable, "-m", "ccwatch", "run", "-c", str(setup.config)]
        if once:
            args.append("--once")
        full_env = {**os.environ, "CLOUDCONVERT_API_KEY": api_key, **(env or {})}
        self._log_fh = self.log.open("wb")
        self.proc = subprocess.Popen(args, stdout=self._log_fh, stderr=subprocess.STDOUT,
                                     env=full_env, cwd=setup.root)

    def close_log(self) -> None:
        if not self._log_fh.closed:
            self._log_fh.close()

    def output(self) -> str:
        if not self._log_fh.closed:
            self._log_fh.flush()
        return self.log.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 30) -> None:
        wait_for(lambda: text in self.output() or self.proc.poll() is not None, timeout=timeout,
                 message=f"log line {text!r}")
        assert text in self.output(), self.output()

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._log_fh.close()

    def terminate(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._log_fh.close()
        return code


@contextmanager
def daemon(setup: Setup, api_key: str, **kw: Any) -> Iterator[Daemon]:
    d = Daemon(setup, api_key, **kw)
    try:
        yield d
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(30)
        d.close_log()


def temp_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".ccwatch-*"))
