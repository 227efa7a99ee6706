"""The config edited across a restart while files are in flight: a folder renamed (same input), a
rule inserted above, a folder removed. Nothing is converted again, nothing re-routed, no loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cli_helpers import cli_env, status_json
from proc_harness import Setup, daemon, make_setup

from ccwatch.testing import TO_JPG, TO_PNG, make_image, wait_for

OLD_RULE = 'match = ["*.png"]\ntemplate = "to-jpg"'
NEW_RULE = 'match = ["*.png"]\ntemplate = "to-png"\noutput_name = "{stem}-new.{ext}"'


def _first_run(tmp_path: Path, emulator: Any, api_key: str) -> Setup:
    """fast.png done, slow.png's job still running when the daemon stops."""
    setup = make_setup(tmp_path, emulator, templates=TO_JPG + TO_PNG, rules=(OLD_RULE,))
    make_image(setup.input / "fast.png")
    make_image(setup.input / "slow.png")
    emulator.faults.latency(seconds=8.0, glob="slow*")
    with daemon(setup, api_key) as d:
        wait_for(lambda: setup.states() == {"fast.png": "done", "slow.png": "processing"},
                 timeout=60, message="one done, one in flight")
        assert d.terminate() == 0
    return setup


def test_folder_renamed_and_rule_inserted_above_keep_files_in_flight_as_they_were(
        tmp_path: Path, emulator: Any, api_key: str) -> None:
    setup = _first_run(tmp_path, emulator, api_key)
    text = setup.config.read_text()
    text = text.replace('name = "inbox"', 'name = "office"')
    text = text.replace(f"[[folders.rules]]\n{OLD_RULE}",
                        f"[[folders.rules]]\n{NEW_RULE}\n\n[[folders.rules]]\n{OLD_RULE}")
    setup.config.write_text(text)
    with daemon(setup, api_key) as d:
        wait_for(lambda: (setup.output / "slow.jpg").exists(), timeout=60,
                 message="the in-flight file delivered by its own rule")
        wait_for(lambda: setup.states() == {"fast.png": "done", "slow.png": "done"}, timeout=30,
                 message="both done")
        assert d.terminate() == 0
        log = d.output()
    assert "Traceback" not in log and "KeyError" not in log, log
    assert sorted(p.name for p in setup.output.iterdir()) == ["fast.jpg", "slow.jpg"]
    assert len(emulator.jobs()) == 2, "a file was converted again"
    status = status_json(setup.config, cwd=tmp_path, env=cli_env(tmp_path))
    assert [(f["name"], f["done_24h"]) for f in status["folders"]] == [("office", 2)]


def test_folder_removed_with_files_in_flight_is_left_alone_without_a_loop(
        tmp_path: Path, emulator: Any, api_key: str) -> None:
    setup = _first_run(tmp_path, emulator, api_key)
    other = tmp_path / "other-in"
    other.mkdir()
    text = setup.config.read_text()
    text = text.replace('name = "inbox"', 'name = "other"').replace(f'"{setup.input}"',
                                                                  f'"{other}"')
    setup.config.write_text(text)
    with daemon(setup, api_key) as d:
        d.wait_for_log("is no longer in the config")
        make_image(other / "next.png")
        wait_for(lambda: (setup.output / "next.jpg").exists(), timeout=60,
                 message="the remaining folder still converts")
        assert d.terminate() == 0
        log = d.output()
    assert "Traceback" not in log and "KeyError" not in log, log
    assert log.count("is no longer in the config") == 1
    assert len(log.splitlines()) < 40, "the log grew like a loop"
    assert (setup.input / "slow.png").exists(), "the removed folder's file was touched"
