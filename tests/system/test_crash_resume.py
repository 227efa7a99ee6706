"""``kill -9`` at each ledger state, then a restart: every file delivered once, nothing lost or doubled.

The daemon is a real subprocess. Emulator faults hold the files in the state under test (answers that
fail *after* the server did the work), the test waits for the ledger to show that state, kills the
process with SIGKILL, clears the faults and starts it again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from proc_harness import daemon, make_setup, temp_leftovers

from ccwatch.testing import make_image, wait_for

NAMES = ("a.png", "b.png", "sub/c.png")
OUTPUTS = ["a.jpg", "b.jpg", "sub/c.jpg"]


def _hold_in(state: str, emulator: Any) -> None:
    """Faults that keep every file in ``state`` with the server-side work already done."""
    f = emulator.faults
    if state == "submitting":
        f.http_error("POST", "/v2/jobs", status=500, times=None, after_work=True)  # job exists
        f.http_error("GET", "/v2/jobs", status=503, times=None)  # the tag lookup fails too
    elif state == "uploading":
        f.http_error("POST", "/tasks", status=500, times=None, after_work=True)  # file received
        f.http_error("GET", "/v2/tasks/*", status=503, times=None)  # the re-read fails too
    elif state == "processing":
        f.latency(seconds=3.0)
    elif state == "delivering":
        f.truncate_downloads(times=None)


def _server_side_done(state: str, emulator: Any) -> bool:
    if state == "submitting":
        return len(emulator.jobs()) == len(NAMES)
    if state == "uploading":
        return len(emulator.uploads()) == len(NAMES)
    return True


def _outputs(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())


@pytest.mark.parametrize("state", ["submitting", "uploading", "processing", "delivering"])
def test_kill9_then_restart_delivers_each_file_once(tmp_path: Path, emulator: Any, api_key: str,
                                                    state: str) -> None:
    """Killed in ``state``: the restart finds the job by tag, skips uploads the job already has and
    writes outputs to their recorded paths."""
    setup = make_setup(tmp_path, emulator)
    for name in NAMES:
        make_image(setup.input / name)
    _hold_in(state, emulator)

    with daemon(setup, api_key) as first:
        wait_for(lambda: set(setup.states().values()) == {state} and len(setup.states()) == 3
                 and _server_side_done(state, emulator), timeout=30,
                 message=f"all files in {state}")
        first.kill9()
    emulator.faults.clear()

    with daemon(setup, api_key) as second:
        wait_for(lambda: _outputs(setup.output) == OUTPUTS and set(setup.states().values()) == {"done"},
                 timeout=40, message="all outputs after the restart")
        assert second.terminate() == 0

    assert _outputs(setup.output) == OUTPUTS  # no "a (1).jpg"
    assert len(emulator.jobs()) == len(NAMES), "a job was created twice"
    assert len(emulator.uploads()) == len(NAMES), "a file was uploaded twice"
    assert temp_leftovers(setup.output) == []
    assert _outputs(setup.quarantine) == []
    tags = sorted(j["tag"] for j in emulator.jobs())
    assert len(set(tags)) == len(NAMES)


def test_sigterm_during_uploads_finishes_them_and_exits_0(tmp_path: Path, emulator: Any,
                                                          api_key: str) -> None:
    """SIGTERM while uploads run: they finish within the grace period, exit 0, next start completes."""
    setup = make_setup(tmp_path, emulator, daemon_extra="upload_workers = 3")
    for name in NAMES:
        make_image(setup.input / name)
    emulator.faults.delay("POST", "/tasks", seconds=1.5, times=None)

    with daemon(setup, api_key) as first:
        wait_for(lambda: list(setup.states().values()).count("uploading") == 3, timeout=30,
                 message="three uploads running")
        assert first.terminate(timeout=20) == 0
        log = first.output()
    assert "received SIGTERM; stopping intake and draining" in log
    assert len(emulator.uploads()) == 3  # the running uploads were finished, not cut
    # Nothing new was started; what was uploaded is tracked (and may already be planned for delivery).
    assert set(setup.states().values()) <= {"processing", "delivering"}
    assert list(setup.output.rglob("*.jpg")) == []
    emulator.faults.clear()

    with daemon(setup, api_key) as second:
        wait_for(lambda: _outputs(setup.output) == OUTPUTS, timeout=30, message="outputs")
        assert second.terminate() == 0
    assert len(emulator.uploads()) == 3
    assert len(emulator.jobs()) == 3


def test_sigterm_past_the_grace_period_still_exits_0_and_resumes(tmp_path: Path, emulator: Any,
                                                                 api_key: str) -> None:
    """An upload slower than ``shutdown_grace_s`` is left to the next start; the exit is still prompt."""
    setup = make_setup(tmp_path, emulator)
    cfg = setup.config.read_text().replace("shutdown_grace_s = 10", "shutdown_grace_s = 0.5")
    setup.config.write_text(cfg)
    make_image(setup.input / "a.png")
    emulator.faults.delay("POST", "/tasks", seconds=6, times=1)

    with daemon(setup, api_key) as first:
        wait_for(lambda: setup.states().get("a.png") == "uploading", timeout=30, message="upload")
        assert first.terminate(timeout=5) == 0
    emulator.faults.clear()

    with daemon(setup, api_key) as second:
        wait_for(lambda: _outputs(setup.output) == ["a.jpg"], timeout=30, message="output")
        assert second.terminate() == 0
    assert len(emulator.jobs()) == 1
