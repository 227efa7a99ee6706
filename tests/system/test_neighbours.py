"""Two hosts on one share with separate SQLite ledgers: found, and warned about, naming the fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cli_helpers import cli_env, run_cli
from proc_harness import daemon, make_setup

from ccwatch.testing import make_image, wait_for

WARNING = "is also watched by another ccwatch with its own ledger"


def test_two_ledgers_on_one_folder_are_warned_about(tmp_path: Path, emulator: Any, api_key: str) -> None:
    first = make_setup(tmp_path / "first", emulator, folder_extra="rescan_s = 1")
    second = make_setup(tmp_path / "second", emulator, input_dir=first.input,
                        folder_extra="rescan_s = 1")
    make_image(first.input / "a.png")
    with daemon(first, api_key) as one:
        one.wait_for_log("startup scan")
        with daemon(second, api_key) as two:
            # The second sees the first's marker at start; the first the second's at its next rescan.
            two.wait_for_log(WARNING)
            one.wait_for_log(WARNING)
            assert '[ledger] url = "postgresql://' in two.output()
            shown = run_cli("status", "-c", str(second.config), "--json", cwd=tmp_path,
                            env=cli_env(tmp_path))
            assert shown.returncode == 0, shown.stderr
            [warning] = json.loads(shown.stdout)["other_installations"]
            assert "'inbox'" in warning and "Fix: share one ledger" in warning
            text = run_cli("status", "-c", str(second.config), cwd=tmp_path, env=cli_env(tmp_path))
            assert "WARNING" in text.stdout and WARNING in text.stdout.replace("\n", " ")
            assert two.terminate() == 0
        assert one.terminate() == 0
    markers = [p.name for p in first.input.iterdir() if p.name.startswith(".ccwatch-host-")]
    assert markers == [], "a cleanly stopped daemon leaves no marker"


def test_one_installation_alone_is_not_warned_about(tmp_path: Path, emulator: Any, api_key: str) -> None:
    """Its own marker, from a run killed without cleaning up, is not another installation's."""
    setup = make_setup(tmp_path, emulator)
    with daemon(setup, api_key) as first:
        first.wait_for_log("startup scan")
        first.kill9()
    assert any(p.name.startswith(".ccwatch-host-") for p in setup.input.iterdir())
    with daemon(setup, api_key) as again:
        again.wait_for_log("startup scan")
        make_image(setup.input / "a.png")
        wait_for(lambda: (setup.output / "a.jpg").exists(), timeout=30, message="a.jpg")
        assert again.terminate() == 0
        assert WARNING not in again.output()
