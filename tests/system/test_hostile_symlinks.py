"""Symlinks swapped in at any path component: nothing outside the configured folders is read,
written, moved or deleted (DESIGN.md §5, fs.rooted)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from cli_helpers import cli_env, run_cli, write_setup
from proc_harness import daemon, make_setup

from ccwatch.testing import make_image, wait_for


def test_input_folder_swapped_for_a_symlink_after_the_file_was_noticed(
        tmp_path: Path, emulator: Any, api_key: str) -> None:
    """``sub`` is replaced by a symlink to the same folder moved outside while the job is being
    created: the file behind the link is neither uploaded nor deleted (originals = "delete")."""
    setup = make_setup(tmp_path, emulator, folder_extra='originals = "delete"')
    outside = tmp_path / "private"
    make_image(setup.input / "sub" / "secret.png")
    # Hold the job creation so the swap lands between the settle check and the upload.
    emulator.faults.delay("POST", "/v2/jobs", seconds=8.0, times=1)
    with daemon(setup, api_key) as d:
        wait_for(lambda: setup.states().get("sub/secret.png") == "submitting", timeout=60,
                 message="the file being submitted")
        shutil.move(setup.input / "sub", outside)
        os.symlink(outside, setup.input / "sub")
        wait_for(lambda: "sub/secret.png" not in setup.states(), timeout=60,
                 message="the version dropped as vanished")
        assert d.terminate() == 0
        log = d.output()
    assert (outside / "secret.png").exists(), "the file outside the inbox was deleted"
    assert emulator.uploads() == [], "the file behind the symlink was uploaded"
    assert not list(setup.output.rglob("*.jpg"))
    assert "its job was deleted" in log
    assert emulator.jobs() == [], "the job created for it was left behind"


def test_symlinked_folders_in_output_quarantine_and_archive_receive_nothing(
        tmp_path: Path, emulator: Any, api_key: str) -> None:
    """Subfolders of output, quarantine and archive that are symlinks to elsewhere get no file:
    the output is refused, the original stays in the input, the others still work."""
    archive = tmp_path / "archive"
    archive.mkdir()
    setup = make_setup(tmp_path, emulator,
                       folder_extra=f'originals = "move"\narchive = "{archive}"')
    elsewhere = {name: tmp_path / f"elsewhere-{name}" for name in ("out", "failed", "archive")}
    for target in elsewhere.values():
        target.mkdir()
    os.symlink(elsewhere["out"], setup.output / "sub")
    os.symlink(elsewhere["failed"], setup.quarantine / "sub")
    os.symlink(elsewhere["archive"], archive / "arc")
    make_image(setup.input / "sub" / "b.png")
    make_image(setup.input / "arc" / "c.png")
    with daemon(setup, api_key) as d:
        wait_for(lambda: (setup.output / "arc" / "c.jpg").exists(), timeout=60,
                 message="the output of arc/c.png")
        d.wait_for_log("not archived, left in the input", timeout=60)
        d.wait_for_log("cannot quarantine", timeout=60)
        assert d.terminate() == 0
        log = d.output()
    for name, target in elsewhere.items():
        assert list(target.iterdir()) == [], f"a file went through the {name} symlink"
    assert (setup.input / "sub" / "b.png").exists()
    assert (setup.input / "arc" / "c.png").exists()
    assert "a folder on the way is a symlink" in log


def test_a_newer_version_removes_nothing_behind_a_symlinked_quarantine_folder(
        tmp_path: Path, emulator: Any) -> None:
    """A failed ``sub/bad.png`` waits in the quarantine; ``sub`` there is then swapped for a
    symlink to a folder outside holding the same names. When a newer version converts, the
    quarantined copy is dropped only through the quarantine itself: nothing outside goes."""
    s = write_setup(tmp_path, endpoint=emulator.base_url or "")
    env = cli_env(tmp_path, CLOUDCONVERT_API_KEY=emulator.api_key)

    def once() -> int:
        return run_cli("run", "--once", "-c", str(s.config), cwd=tmp_path, env=env).returncode

    make_image(s.input / "sub" / "bad.png")
    emulator.faults.task_error(glob="bad*", message="the engine choked")
    assert once() == 1
    record = s.quarantine / "sub" / "bad.png.error.json"
    assert record.is_file() and (s.quarantine / "sub" / "bad.png").is_file()

    outside = tmp_path / "private"
    shutil.move(s.quarantine / "sub", outside)
    os.symlink(outside, s.quarantine / "sub")
    emulator.faults.clear()
    make_image(s.input / "sub" / "bad.png", size=(40, 30), color=(10, 200, 10))
    assert once() == 0
    assert (s.output / "sub" / "bad.jpg").is_file()
    assert sorted(p.name for p in outside.iterdir()) == ["bad.png", "bad.png.error.json"]

    # The same names in a real folder again: the newer version's delivery clears them.
    (s.quarantine / "sub").unlink()
    shutil.move(outside, s.quarantine / "sub")
    make_image(s.input / "sub" / "bad.png", size=(30, 20), color=(200, 10, 10))
    assert once() == 0
    assert list((s.quarantine / "sub").iterdir()) == []
