"""Signals: Ctrl-C on ``run --once`` drains within ``shutdown_grace_s`` and exits 130 without a
traceback; SIGHUP (a reload) in the middle of a job neither ends the daemon nor loses or repeats
work."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from cli_helpers import cli_env, popen_cli, write_setup
from proc_harness import daemon, make_setup

from ccwatch.testing import make_image, wait_for

GRACE_S = 3


def test_ctrl_c_on_run_once_drains_and_exits_130(tmp_path: Path, emulator: Any) -> None:
    s = write_setup(tmp_path, endpoint=emulator.base_url or "")
    s.config.write_text(s.config.read_text().replace("shutdown_grace_s = 10",
                                                     f"shutdown_grace_s = {GRACE_S}"))
    for i in range(4):
        make_image(s.input / f"slow{i}.png")
    emulator.faults.latency(seconds=60.0, glob="slow*")  # far beyond the grace period
    proc = popen_cli("run", "--once", "-c", str(s.config), cwd=tmp_path,
                     env=cli_env(tmp_path, CLOUDCONVERT_API_KEY=emulator.api_key))
    try:
        wait_for(lambda: emulator.status_counts().get("processing", 0) == 4, timeout=60,
                 message="four jobs running")
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=GRACE_S + 30)
        elapsed = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert elapsed < GRACE_S + 5, f"took {elapsed:.1f} s to stop"
    assert "Traceback" not in stderr and "closed database" not in stderr, stderr
    assert "received SIGINT" in stderr


def test_sighup_is_logged_and_loses_or_repeats_nothing(tmp_path: Path, emulator: Any,
                                                       api_key: str) -> None:
    setup = make_setup(tmp_path, emulator)
    emulator.faults.latency(seconds=3.0, glob="a*")
    with daemon(setup, api_key) as d:
        make_image(setup.input / "a.png")
        wait_for(lambda: setup.states().get("a.png") == "processing", timeout=60,
                 message="the job running")
        d.proc.send_signal(signal.SIGHUP)  # a reload (tests/system/test_reload.py has the rest)
        d.wait_for_log("configuration reloaded")
        make_image(setup.input / "b.png")
        wait_for(lambda: (setup.output / "a.jpg").exists() and (setup.output / "b.jpg").exists(),
                 timeout=60, message="both outputs after the SIGHUP")
        assert d.proc.poll() is None, "SIGHUP ended the daemon"
        assert d.terminate() == 0
    assert len(emulator.jobs()) == 2
    assert sorted(p.name for p in setup.output.iterdir()) == ["a.jpg", "b.jpg"]
