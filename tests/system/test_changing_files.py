"""Files that change under ccwatch while their job runs: rewritten in place during the upload, or
renamed within the watched tree while converting."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from PIL import Image
from proc_harness import daemon, make_setup

from ccwatch.testing import make_image, wait_for


def _sizes(folder: Path) -> dict[str, tuple[int, int]]:
    sizes = {}
    for path in sorted(folder.rglob("*.jpg")):
        with Image.open(path) as image:
            sizes[path.relative_to(folder).as_posix()] = image.size
    return sizes


def _all_states(setup: Any) -> list[str]:
    """The state of every ledger row (``Setup.states`` keeps only each path's newest)."""
    db = setup.state / "ledger.sqlite3"
    if not db.exists():
        return []
    connection = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        return [r[0] for r in connection.execute("SELECT state FROM files ORDER BY id")]
    except sqlite3.OperationalError:
        return []
    finally:
        connection.close()


def _finished(setup: Any) -> bool:
    states = _all_states(setup)
    return bool(states) and set(states) <= {"done", "failed"}


def test_file_rewritten_during_a_slow_upload_is_converted_once_as_its_new_version(
        tmp_path: Path, emulator: Any, api_key: str) -> None:
    setup = make_setup(tmp_path, emulator)
    source = make_image(setup.input / "x.png", size=(32, 24))
    emulator.faults.delay("POST", "/tasks", seconds=6.0, times=1)
    with daemon(setup, api_key) as d:
        wait_for(lambda: setup.states().get("x.png") == "uploading", timeout=60,
                 message="the upload under way")
        d.wait_for_log("job created")
        make_image(source, size=(64, 48), color=(10, 200, 10))  # same inode, new bytes
        wait_for(lambda: (64, 48) in _sizes(setup.output).values(), timeout=90,
                 message="the new version's output")
        wait_for(lambda: _finished(setup), timeout=60, message="every version finished")
        assert d.terminate() == 0
        log = d.output()
    assert _sizes(setup.output) == {"x.jpg": (64, 48)}, "old or mixed bytes were delivered"
    assert _all_states(setup) == ["done"], "the first version is neither dropped nor only one"
    assert "its job was deleted" in log
    assert [j["status"] for j in emulator.jobs()] == ["finished"], "the first job was kept"


def test_file_renamed_within_the_tree_while_converting_is_the_same_file(
        tmp_path: Path, emulator: Any, api_key: str) -> None:
    setup = make_setup(tmp_path, emulator)
    make_image(setup.input / "a.png")
    emulator.faults.latency(seconds=6.0, glob="a.png")  # the job takes a while
    with daemon(setup, api_key) as d:
        wait_for(lambda: setup.states().get("a.png") == "processing", timeout=60,
                 message="the job running")
        os.renames(setup.input / "a.png", setup.input / "sub" / "b.png")
        d.wait_for_log("renamed while in flight", timeout=60)
        wait_for(lambda: (setup.output / "sub" / "b.jpg").exists(), timeout=90,
                 message="the output under the new name")
        wait_for(lambda: _finished(setup), timeout=60, message="every version finished")
        assert d.terminate() == 0
    assert sorted(_sizes(setup.output)) == ["sub/b.jpg"]
    assert len(emulator.jobs()) == 1
    assert setup.states() == {"sub/b.png": "done"} and _all_states(setup) == ["done"]
