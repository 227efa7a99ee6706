"""min_credits: no new job while the account has fewer credits; status says why; submissions
resume by themselves once there are enough again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from cli_helpers import cli_env, free_port, run_cli, status_json, write_setup
from proc_harness import daemon, make_setup

from ccwatch.testing import make_image, wait_for

GUARD = "min_credits = 50\ncredits_check_s = 0.2"


def test_low_credits_pause_submissions_until_topped_up(tmp_path: Path, emulator: Any,
                                                       api_key: str) -> None:
    emulator.credits = 10
    setup = make_setup(tmp_path, emulator, daemon_extra=GUARD)
    port = free_port()
    setup.config.write_text(f'[http]\nlisten = "127.0.0.1:{port}"\n' + setup.config.read_text())
    env = cli_env(tmp_path)
    with daemon(setup, api_key) as d:
        d.wait_for_log("submissions paused for all folders: only 10 credits left")
        make_image(setup.input / "a.png")
        d.wait_for_log("settled")
        data = status_json(setup.config, cwd=tmp_path, env=env)
        assert data["paused"] is not None and "min_credits = 50" in data["paused"]["reason"]
        assert data["folders"][0]["queued"] == 1
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=10).text
        assert 'id="paused"' in page and "below min_credits = 50" in page
        assert "ccwatch_paused 1.0" in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        emulator.credits = 500
        wait_for(lambda: (setup.output / "a.jpg").exists(), timeout=30, message="a.jpg")
        log = d.output()
        assert d.terminate() == 0
    assert log.index("submissions resumed: 500 credits left") < log.index("job created")
    assert status_json(setup.config, cwd=tmp_path, env=env)["paused"] is None


def test_run_once_with_too_few_credits_exits_3(tmp_path: Path, emulator: Any) -> None:
    emulator.credits = 3
    s = write_setup(tmp_path, endpoint=emulator.base_url or "", daemon_extra=GUARD)
    make_image(s.input / "a.png")
    done = run_cli("run", "--once", "-c", str(s.config), cwd=tmp_path,
                   env=cli_env(tmp_path, CLOUDCONVERT_API_KEY=emulator.api_key))
    assert done.returncode == 3, done.stderr
    assert "only 3 credits left, below min_credits = 50: add credits or lower min_credits" in done.stderr
    assert emulator.count("POST", "/v2/jobs") == 0
