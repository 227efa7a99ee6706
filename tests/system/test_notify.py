"""The daemon speaks systemd's notify protocol: READY=1, WATCHDOG=1 with STATUS=, clean SIGTERM exit."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import cli_env, popen_cli, write_setup

DEADLINE_S = 20.0


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, Path]]:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(0.5)
        yield sock, path


def _receive_until(sock: socket.socket, proc: subprocess.Popen[str], wanted: set[str]) -> list[str]:
    """Messages until every ``wanted`` variable was seen (or fail at the deadline)."""
    messages: list[str] = []
    seen: set[str] = set()
    deadline = time.monotonic() + DEADLINE_S
    while not wanted <= seen:
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"got {messages!r}, wanted {sorted(wanted)}; exit {proc.returncode}: {err}")
        try:
            data = sock.recv(4096).decode()
        except TimeoutError:
            continue
        messages.append(data)
        for line in data.splitlines():
            seen.add("STATUS" if line.startswith("STATUS=") else line)
    return messages


def test_ready_watchdog_status_then_sigterm_exits_0(
        tmp_path: Path, notify_socket: tuple[socket.socket, Path]) -> None:
    sock, path = notify_socket
    s = write_setup(tmp_path, endpoint="embedded")
    env = cli_env(tmp_path, NOTIFY_SOCKET=str(path), WATCHDOG_USEC="1000000")
    proc = popen_cli("run", "-c", str(s.config), cwd=tmp_path, env=env)
    try:
        messages = _receive_until(sock, proc, {"READY=1", "WATCHDOG=1", "STATUS"})
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 0, err
    assert messages[0].splitlines()[0] == "READY=1", "ready comes first, once watching"
    status = [line for m in messages for line in m.splitlines() if line.startswith("STATUS=")]
    assert any("0 in progress, 0 done, 0 failed" in line for line in status), status
    assert "received SIGTERM" in err
