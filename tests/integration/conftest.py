"""Fixtures for daemon tests (real folders and a config bound to the served emulator) and an
emulator in a child process (for tests that measure this process's memory)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from daemon_harness import Dirs, MakeConfig
from emulator_helpers import EMULATOR_PROCESS_KEY

from ccwatch import config as config_mod
from ccwatch.config import Config
from ccwatch.testing import TO_JPG, TO_PNG, config_text


@pytest.fixture
def dirs(tmp_path: Path) -> Dirs:
    d = Dirs(tmp_path, tmp_path / "in", tmp_path / "out", tmp_path / "failed", tmp_path / "state")
    for p in (d.input, d.output, d.quarantine, d.state):
        p.mkdir()
    return d




@pytest.fixture
def make_config(dirs: Dirs, emulator: Any) -> MakeConfig:
    """Build a Config for ``dirs`` against the served emulator; keyword args tweak the TOML."""

    def make(*, rules: tuple[str, ...] = ('match = ["*.png"]\ntemplate = "to-jpg"',),
             templates: str = TO_JPG + TO_PNG, folder_extra: str = "", daemon_extra: str = "",
             top_extra: str = "", settle_s: float = 0.3, cloudconvert_extra: str = "",
             polls: tuple[float, float] = (0.1, 0.5)) -> Config:
        text = config_text(endpoint=emulator.base_url, state_dir=dirs.state, input_dir=dirs.input,
                           output=dirs.output, quarantine=dirs.quarantine, rules=rules,
                           templates=templates, folder_extra=folder_extra,
                           daemon_extra=daemon_extra, top_extra=top_extra, settle_s=settle_s,
                           cloudconvert_extra=cloudconvert_extra, polls=polls)
        (dirs.root / "ccwatch.toml").write_text(text)
        return config_mod.loads(text, base_dir=dirs.root,
                                env={"CLOUDCONVERT_API_KEY": emulator.api_key})

    return make



@pytest.fixture
def emulator_process(tmp_path: Path) -> Iterator[tuple[str, psutil.Process]]:
    """``python -m ccwatch emulator --port 0``; the URL comes from its one stdout line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ccwatch", "emulator", "--port", "0", "--api-key",
         EMULATOR_PROCESS_KEY, "--storage", str(tmp_path / "storage")],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the server is listening (or it died)
        assert line.startswith("ccwatch emulator listening on http://"), line
        yield line.rsplit(" ", 1)[1].strip(), psutil.Process(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        finally:
            if proc.stdout is not None:
                proc.stdout.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
