"""Terminal and messages: the --once progress bar keeps log lines above it on a terminal, output
that is not a terminal is never wrapped, and the messages say what to do next."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cli_helpers import cli_env, run_cli, write_setup

from ccwatch.testing import make_image

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _run_in_pty(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60) -> tuple[int, str]:
    """Run with a pseudo-terminal as stdout and stderr (what a person at a terminal sees)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower,
                            env=env, cwd=cwd)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(leader)
    return proc.wait(timeout=30), b"".join(chunks).decode(errors="replace")


def test_progress_bar_keeps_log_lines_above_it(tmp_path: Path, emulator: Any) -> None:
    s = write_setup(tmp_path, endpoint=emulator.base_url or "")
    for name in ("a.png", "b.png", "c.png"):
        make_image(s.input / name)
    env = cli_env(tmp_path, CLOUDCONVERT_API_KEY=emulator.api_key, TERM="xterm")
    env.pop("COLUMNS", None)
    code, out = _run_in_pty([sys.executable, "-m", "ccwatch", "run", "--once", "-c", str(s.config)],
                            env, tmp_path)
    assert code == 0, out
    lines = [ANSI.sub("", part) for part in re.split(r"[\r\n]", out)]
    logged = [line for line in lines if " INFO " in line]
    assert sum("delivered" in line for line in logged) == 3
    # Every log line starts a line of its own: none is written onto the bar.
    for line in logged:
        assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} INFO ", line), repr(line)
    assert any(re.search(r"converting .*3/3", line) for line in lines), out
    assert "3 converted, 0 failed" in out


def test_output_that_is_not_a_terminal_is_never_wrapped(tmp_path: Path) -> None:
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "and-deeper-still"
    deep.mkdir(parents=True)
    s = write_setup(deep, endpoint="embedded")
    env = cli_env(tmp_path)
    env.pop("COLUMNS", None)
    checked = run_cli("check", "-c", str(s.config), cwd=tmp_path, env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert len(str(s.input)) > 120
    assert any(str(s.input) in line for line in checked.stdout.splitlines()), checked.stdout


def test_messages_say_what_to_do_next(tmp_path: Path, emulator: Any) -> None:
    env = cli_env(tmp_path)
    nothing = run_cli("status", cwd=tmp_path, env=env)
    assert nothing.returncode == 2
    assert "no configuration file found" in nothing.stderr
    assert nothing.stderr.rstrip().endswith("write one with `ccwatch init`")

    s = write_setup(tmp_path, endpoint=emulator.base_url or "")
    s.state.mkdir(exist_ok=True)
    (s.state / "ledger.sqlite3").write_bytes(b"not a database, " * 100)
    damaged = run_cli("status", "-c", str(s.config), cwd=tmp_path, env=env)
    assert damaged.returncode == 2
    assert "move ledger.sqlite3 (and its -wal and -shm files) aside" in damaged.stderr


def test_no_api_key_exits_3_in_check_run_and_once(tmp_path: Path) -> None:
    """The docs' exit code table: a missing key is an account problem (3), whichever command."""
    s = write_setup(tmp_path, endpoint="https://api.cloudconvert.com")
    env = cli_env(tmp_path)  # no CLOUDCONVERT_API_KEY
    for args in (("check",), ("run", "--once"), ("run",)):
        done = run_cli(*args, "-c", str(s.config), cwd=tmp_path, env=env, timeout=60)
        assert done.returncode == 3, (args, done.stdout, done.stderr)
        assert "no API key: set $CLOUDCONVERT_API_KEY" in done.stdout + done.stderr
