"""The shipped systemd units pass ``systemd-analyze verify`` (with ExecStart pointed at our ccwatch)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import REPO

from ccwatch.config import DaemonConfig

UNITS = REPO / "systemd"
INSTALLED = "/usr/local/bin/ccwatch"


def _ccwatch_binary() -> str:
    # the console script installed beside this interpreter (the venv's bin)
    found = Path(sys.executable).with_name("ccwatch")
    assert found.is_file(), f"{found} missing: install the project (pip install -e .)"
    return str(found)


def _directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if match := re.match(r"^([A-Za-z]+)=(.*)$", line):
            out.setdefault(match[1], []).append(match[2])
    return out


@pytest.mark.parametrize(("unit", "name"), [("ccwatch.service", "ccwatch.service"),
                                            ("ccwatch@.service", "ccwatch@office.service")])
def test_unit_verifies_cleanly(unit: str, name: str, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze missing: apt-get install systemd (.ci/run does it)"
    text = (UNITS / unit).read_text()
    assert text.count(f"ExecStart={INSTALLED} ") == 1
    (tmp_path / unit).write_text(text.replace(INSTALLED, _ccwatch_binary()))
    done = subprocess.run([analyze, "verify", str(tmp_path / name)], capture_output=True,
                          text=True, timeout=60)
    # verify exits 0 on unknown keys and bad values: its warnings about our file count too
    ours = [line for line in done.stderr.splitlines()
            if any(mark in line for mark in (str(tmp_path), unit, name))]
    assert done.returncode == 0 and not ours, done.stderr


@pytest.mark.parametrize("unit", ["ccwatch.service", "ccwatch@.service"])
def test_unit_contract(unit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    d = _directives((UNITS / unit).read_text())
    assert d["Type"] == ["notify"] and d["NotifyAccess"] == ["main"]
    assert d["RestartPreventExitStatus"] == ["2"], "config errors must not restart in a loop"
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"], "systemctl reload re-reads the config"
    stop_s = int(d["TimeoutStopSec"][0])
    assert stop_s > DaemonConfig().shutdown_grace_s, "systemd would SIGKILL a draining daemon"
    assert any(c.startswith("cloudconvert-api-key:") for c in d["LoadCredential"])
    # With state_dir = "", the ledger must land in the StateDirectory systemd creates for us:
    # systemd passes it as $STATE_DIRECTORY (/var/lib/<StateDirectory=>).
    [state] = d["StateDirectory"]
    state_dir = Path("/var/lib", state.replace("%i", "office"))
    monkeypatch.setenv("STATE_DIRECTORY", str(state_dir))
    assert "Environment" not in d or not any("XDG_STATE_HOME" in e for e in d["Environment"])
    assert DaemonConfig().resolved_state_dir() == state_dir
