"""``failed`` is what is in quarantine now: retried-and-converted, replaced and hand-removed files
stop counting, and ``status`` and ``retry --all`` agree."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import cli_env, run_cli, status_json, write_setup

from ccwatch.emulator import Emulator
from ccwatch.testing import make_image


def test_failed_counts_only_what_is_in_quarantine(tmp_path: Path, emulator: Emulator) -> None:
    s = write_setup(tmp_path, endpoint=emulator.base_url or "")
    env = cli_env(tmp_path, CLOUDCONVERT_API_KEY=emulator.api_key)

    def failed() -> tuple[int, list[str]]:
        data = status_json(s.config, cwd=tmp_path, env=env)
        return data["folders"][0]["failed"], sorted(f["file"] for f in data["recent_failures"])

    def once() -> int:
        return run_cli("run", "--once", "-c", str(s.config), cwd=tmp_path, env=env).returncode

    for name in ("bad1.png", "bad2.png", "bad3.png"):
        make_image(s.input / name)
    emulator.faults.task_error(glob="bad*", message="the engine choked")
    assert once() == 1
    assert failed() == (3, ["bad1.png", "bad2.png", "bad3.png"])

    # Removed by hand (the error file may stay behind): no longer counted, nor retried.
    (s.quarantine / "bad1.png").unlink()
    assert failed() == (2, ["bad2.png", "bad3.png"])

    # A newer version converts: the failed older one leaves the quarantine and the count.
    emulator.faults.clear()
    make_image(s.input / "bad2.png", size=(40, 30), color=(10, 200, 10))
    assert once() == 0
    assert (s.output / "bad2.jpg").is_file()
    assert not (s.quarantine / "bad2.png").exists()
    assert not (s.quarantine / "bad2.png.error.json").exists()
    assert failed() == (1, ["bad3.png"])

    # retry --all takes exactly what status lists; once converted, nothing is left anywhere.
    retried = run_cli("retry", "--all", "-c", str(s.config), cwd=tmp_path, env=env)
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.count("retrying ") == 1 and "bad3.png" in retried.stdout
    assert once() == 0
    assert failed() == (0, [])
    again = run_cli("retry", "--all", "-c", str(s.config), cwd=tmp_path, env=env)
    assert again.returncode == 0 and "nothing in quarantine" in again.stdout
