"""``ccwatch status`` and ``ccwatch retry`` around real ``run --once`` passes against the emulator."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import cli_env, run_cli, status_json, write_setup

from ccwatch.emulator import Emulator
from ccwatch.testing import make_image


def test_status_without_a_ledger_is_all_zero(tmp_path: Path) -> None:
    s = write_setup(tmp_path, endpoint="embedded")
    env = cli_env(tmp_path)
    data = status_json(s.config, cwd=tmp_path, env=env)
    assert data["ledger_exists"] is False
    assert data["folders"] == [{"name": "inbox", "queued": 0, "in_flight": 0, "done_24h": 0,
                                "failed": 0, "oldest_in_flight": None}]
    assert data["paused"] is None and data["recent_failures"] == []
    assert not s.state.exists(), "status must not create the state dir"
    people = run_cli("status", "-c", str(s.config), cwd=tmp_path, env=env)
    assert people.returncode == 0 and "No ledger yet" in people.stdout


def test_failure_shows_in_status_and_retry_converts_it(tmp_path: Path, emulator: Emulator) -> None:
    s = write_setup(tmp_path, endpoint=emulator.base_url or "")
    env = cli_env(tmp_path, CLOUDCONVERT_API_KEY=emulator.api_key)
    make_image(s.input / "good.png")
    make_image(s.input / "sub" / "bad.png")
    emulator.faults.task_error(glob="bad*", code="CONVERSION_FAILED", message="the engine choked")

    first = run_cli("run", "--once", "-c", str(s.config), cwd=tmp_path, env=env)
    assert first.returncode == 1, first.stderr
    quarantined = s.quarantine / "sub" / "bad.png"
    error_file = s.quarantine / "sub" / "bad.png.error.json"
    assert quarantined.is_file() and error_file.is_file()

    data = status_json(s.config, cwd=tmp_path, env=env)
    assert data["folders"][0] | {"oldest_in_flight": None} == {
        "name": "inbox", "queued": 0, "in_flight": 0, "done_24h": 1, "failed": 1,
        "oldest_in_flight": None}
    [failure] = data["recent_failures"]
    assert failure["file"] == "sub/bad.png" and failure["code"] == "CONVERSION_FAILED"
    assert "the engine choked" in failure["message"]
    people = run_cli("status", "-c", str(s.config), cwd=tmp_path, env=env)
    assert "inbox/sub/bad.png [CONVERSION_FAILED]" in people.stdout

    # given as the error file: the file goes back to its relpath, the error file goes away
    retried = run_cli("retry", "-c", str(s.config), str(error_file), cwd=tmp_path, env=env)
    assert retried.returncode == 0, retried.stderr
    assert (s.input / "sub" / "bad.png").is_file()
    assert not quarantined.exists() and not error_file.exists()
    data = status_json(s.config, cwd=tmp_path, env=env)
    assert (data["folders"][0]["queued"], data["folders"][0]["failed"]) == (1, 0)

    emulator.faults.clear()
    second = run_cli("run", "--once", "-c", str(s.config), cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr
    assert (s.output / "sub" / "bad.jpg").is_file()
    assert "1 converted, 0 failed" in second.stderr
    data = status_json(s.config, cwd=tmp_path, env=env)
    assert data["folders"][0]["done_24h"] == 2 and data["folders"][0]["failed"] == 0


def test_retry_all_and_unknown_paths(tmp_path: Path, emulator: Emulator) -> None:
    s = write_setup(tmp_path, endpoint=emulator.base_url or "")
    env = cli_env(tmp_path, CLOUDCONVERT_API_KEY=emulator.api_key)
    for name in ("bad1.png", "bad2.png"):
        make_image(s.input / name)
    emulator.faults.task_error(glob="bad*")
    assert run_cli("run", "--once", "-c", str(s.config), cwd=tmp_path, env=env).returncode == 1

    stray = tmp_path / "elsewhere.png"
    make_image(stray)
    unknown = run_cli("retry", "-c", str(s.config), str(stray), str(tmp_path / "nope.png"),
                      cwd=tmp_path, env=env)
    assert unknown.returncode == 2
    assert "not inside any folder's quarantine" in unknown.stderr
    assert "nope.png: no such quarantined file" in unknown.stderr
    assert stray.is_file(), "a path retry refuses stays where it is"

    # the input already has a file of that name: the quarantined one comes back beside it
    make_image(s.input / "bad1.png", color=(1, 2, 3))
    everything = run_cli("retry", "-c", str(s.config), "--all", cwd=tmp_path, env=env)
    assert everything.returncode == 0, everything.stderr
    assert sorted(p.name for p in s.input.iterdir()) == ["bad1 (1).png", "bad1.png", "bad2.png"]
    assert not any(s.quarantine.rglob("*")), "quarantine emptied"
    again = run_cli("retry", "-c", str(s.config), "--all", cwd=tmp_path, env=env)
    assert again.returncode == 0 and "nothing in quarantine" in again.stdout
    usage = run_cli("retry", "-c", str(s.config), cwd=tmp_path, env=env)
    assert usage.returncode == 2 and "PATH" in usage.stderr
    # bad2 is queued again; bad1 came back under a new name, so it is a new file, not a retry;
    # the quarantine is empty, so nothing counts as failed any more
    data = status_json(s.config, cwd=tmp_path, env=env)
    assert (data["folders"][0]["queued"], data["folders"][0]["failed"]) == (1, 0)


def test_status_shows_paused_submissions(tmp_path: Path, emulator: Emulator) -> None:
    s = write_setup(tmp_path, endpoint=emulator.base_url or "")
    env = cli_env(tmp_path, CLOUDCONVERT_API_KEY=emulator.api_key)
    make_image(s.input / "waiting.png")
    emulator.faults.credits_exceeded()
    ran = run_cli("run", "--once", "-c", str(s.config), cwd=tmp_path, env=env)
    assert ran.returncode == 3, ran.stderr
    data = status_json(s.config, cwd=tmp_path, env=env)
    assert data["paused"] is not None and "402" in data["paused"]["reason"]
    folder = data["folders"][0]
    assert (folder["queued"] + folder["in_flight"], folder["failed"]) == (1, 0), folder
    people = run_cli("status", "-c", str(s.config), cwd=tmp_path, env=env)
    assert "Submissions PAUSED" in people.stdout
