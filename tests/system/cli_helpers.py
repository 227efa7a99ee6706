"""Helpers for the CLI system tests: ``python -m ccwatch`` as a subprocess, configs on disk."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccwatch.testing import TO_JPG, config_text

REPO = Path(__file__).resolve().parents[2]


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment for a ccwatch subprocess: no inherited keys, state and config dirs in tmp."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLOUDCONVERT_", "CCWATCH_", "NOTIFY_SOCKET", "WATCHDOG_",
                                "CREDENTIALS_DIRECTORY"))}
    env.update(XDG_STATE_HOME=str(tmp_path / "xdg-state"), XDG_CONFIG_HOME=str(tmp_path / "xdg-config"),
               PYTHONPATH=str(REPO), COLUMNS="200")
    env.update(extra)
    return env


def run_cli(*args: str, cwd: Path, env: dict[str, str], timeout: float = 60.0,
            stdin: str | None = "") -> subprocess.CompletedProcess[str]:
    """``python -m ccwatch ARGS`` to completion (stdin is not a TTY)."""
    return subprocess.run([sys.executable, "-m", "ccwatch", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, input=stdin)


def popen_cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "ccwatch", *args], cwd=cwd, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def status_json(cfg: Path, *, cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    done = run_cli("status", "-c", str(cfg), "--json", cwd=cwd, env=env)
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Setup:
    """A config file against an emulator, with its folders."""

    root: Path
    config: Path
    input: Path
    output: Path
    quarantine: Path
    state: Path


def write_setup(root: Path, *, endpoint: str, top_extra: str = "", daemon_extra: str = "",
                folder_extra: str = "", delete_jobs: bool = False) -> Setup:
    s = Setup(root, root / "ccwatch.toml", root / "in", root / "out", root / "failed",
              root / "state")
    for folder in (s.input, s.output, s.quarantine):
        folder.mkdir(parents=True, exist_ok=True)
    text = config_text(endpoint=endpoint, state_dir=s.state, input_dir=s.input, output=s.output,
                       quarantine=s.quarantine, rules=('match = ["*.png"]\ntemplate = "to-jpg"',),
                       templates=TO_JPG, top_extra=top_extra, daemon_extra=daemon_extra,
                       folder_extra=folder_extra, settle_s=0.2, delete_jobs=delete_jobs)
    s.config.write_text(text, encoding="utf-8")
    return s
