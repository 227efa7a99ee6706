"""One daemon per ledger: a second ``run`` on the same state dir refuses to start, and converts nothing.

Both daemons are real processes; the emulator holds every job in ``processing`` long enough for the
second start, ``status``, ``check`` and ``retry`` to happen while the first one works.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_helpers import cli_env, run_cli
from proc_harness import daemon, make_setup

from ccwatch.testing import make_image, wait_for

NAMES = ("a.png", "b.png", "c.png")


@pytest.mark.parametrize("once", [False, True], ids=["run", "run-once"])
def test_second_daemon_on_one_state_dir_exits_2(tmp_path: Path, emulator: Any, api_key: str,
                                                once: bool) -> None:
    setup = make_setup(tmp_path, emulator)
    for name in NAMES:
        make_image(setup.input / name)
    emulator.faults.latency(seconds=2.0)
    env = cli_env(tmp_path, CLOUDCONVERT_API_KEY=api_key)
    cfg = str(setup.config)

    with daemon(setup, api_key) as first:
        wait_for(lambda: len(emulator.jobs()) == len(NAMES), timeout=30, message="the first daemon's jobs")
        args = ("run", "-c", cfg, "--once") if once else ("run", "-c", cfg)
        second = run_cli(*args, cwd=tmp_path, env=env, timeout=30)
        assert second.returncode == 2, second.stderr
        assert f"already running (pid {first.proc.pid})" in second.stderr

        # The read-only and side commands keep working beside the running daemon.
        assert run_cli("status", "-c", cfg, cwd=tmp_path, env=env).returncode == 0
        assert run_cli("check", "-c", cfg, cwd=tmp_path, env=env).returncode == 0
        assert run_cli("retry", "-c", cfg, "--all", cwd=tmp_path, env=env).returncode == 0

        wait_for(lambda: set(setup.states().values()) == {"done"} and len(setup.states()) == 3,
                 timeout=30, message="every file done")
        assert first.terminate() == 0

    outputs = sorted(p.name for p in setup.output.iterdir())
    assert outputs == ["a.jpg", "b.jpg", "c.jpg"]
    assert len(emulator.jobs()) == len(NAMES), "the second daemon created jobs"
    assert len(emulator.uploads()) == len(NAMES)


def test_lock_is_released_when_the_holder_is_killed(tmp_path: Path, emulator: Any, api_key: str) -> None:
    """``kill -9`` leaves the lock file behind but not the lock: the next start runs."""
    setup = make_setup(tmp_path, emulator)
    make_image(setup.input / "a.png")
    with daemon(setup, api_key) as first:
        first.wait_for_log("startup scan")
        first.kill9()
    assert (setup.state / "ccwatch.lock").exists()
    with daemon(setup, api_key) as second:
        wait_for(lambda: (setup.output / "a.jpg").exists(), timeout=30, message="a.jpg")
        assert second.terminate() == 0
