"""Fixtures for daemon tests: real folders and a config bound to the served emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from daemon_harness import Dirs, MakeConfig

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
             top_extra: str = "", settle_s: float = 0.3, cloudconvert_extra: str = "") -> Config:
        text = config_text(endpoint=emulator.base_url, state_dir=dirs.state, input_dir=dirs.input,
                           output=dirs.output, quarantine=dirs.quarantine, rules=rules,
                           templates=templates, folder_extra=folder_extra,
                           daemon_extra=daemon_extra, top_extra=top_extra, settle_s=settle_s,
                           cloudconvert_extra=cloudconvert_extra)
        (dirs.root / "ccwatch.toml").write_text(text)
        return config_mod.loads(text, base_dir=dirs.root,
                                env={"CLOUDCONVERT_API_KEY": emulator.api_key})

    return make


