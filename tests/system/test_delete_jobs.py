"""delete_jobs: each job is deleted on CloudConvert once its file is delivered or quarantined; a
failed deletion is retried later, never holds up delivery, and status counts what is left."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cli_helpers import cli_env, run_cli, status_json, write_setup
from proc_harness import daemon, make_setup

from ccwatch.ledger import LEDGER_NAME, Ledger
from ccwatch.stages.cleanup import META_KEY
from ccwatch.testing import make_image, wait_for


def test_jobs_are_deleted_after_delivery_and_quarantine(tmp_path: Path, emulator: Any,
                                                        api_key: str) -> None:
    setup = make_setup(tmp_path, emulator, delete_jobs=True)
    emulator.faults.task_error(glob="bad*", message="the engine choked")
    make_image(setup.input / "good.png")
    make_image(setup.input / "bad.png")
    with daemon(setup, api_key) as d:
        wait_for(lambda: (setup.output / "good.jpg").exists() and
                 (setup.quarantine / "bad.png.error.json").exists(), timeout=30, message="outcomes")
        wait_for(lambda: emulator.jobs() == [], timeout=30, message="both jobs deleted")
        assert d.terminate() == 0
    assert emulator.count("DELETE", "/v2/jobs/*") == 2


def test_a_failed_delete_is_retried_and_never_blocks_delivery(tmp_path: Path, emulator: Any) -> None:
    s = write_setup(tmp_path, endpoint=emulator.base_url or "", delete_jobs=True)
    env = cli_env(tmp_path, CLOUDCONVERT_API_KEY=emulator.api_key)
    emulator.faults.http_error("DELETE", "/v2/jobs/*", status=503, times=None)
    make_image(s.input / "a.png")
    done = run_cli("run", "--once", "-c", str(s.config), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert (s.output / "a.jpg").is_file()  # delivered although the delete failed
    assert "could not delete the finished job" in done.stderr
    assert status_json(s.config, cwd=tmp_path, env=env)["jobs_to_delete"] == 1
    people = run_cli("status", "-c", str(s.config), cwd=tmp_path, env=env)
    assert "1 finished job(s) not yet deleted on CloudConvert" in people.stdout
    assert len(emulator.jobs()) == 1

    # The next run (nothing new to convert) deletes it once CloudConvert answers again.
    emulator.faults.clear()
    again = run_cli("run", "--once", "-c", str(s.config), cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert emulator.jobs() == []
    assert status_json(s.config, cwd=tmp_path, env=env)["jobs_to_delete"] == 0


def test_delete_jobs_false_keeps_them(tmp_path: Path, emulator: Any) -> None:
    s = write_setup(tmp_path, endpoint=emulator.base_url or "", delete_jobs=False)
    env = cli_env(tmp_path, CLOUDCONVERT_API_KEY=emulator.api_key)
    make_image(s.input / "a.png")
    assert run_cli("run", "--once", "-c", str(s.config), cwd=tmp_path, env=env).returncode == 0
    assert len(emulator.jobs()) == 1
    assert emulator.count("DELETE", "/v2/jobs/*") == 0


def test_the_list_an_older_version_kept_is_deleted_and_moved_to_rows(tmp_path: Path,
                                                                     emulator: Any) -> None:
    """Older versions kept the jobs to delete as one list (rewritten per file: O(n) each); it is
    still honoured, and moved to one row per job."""
    s = write_setup(tmp_path, endpoint=emulator.base_url or "", delete_jobs=False)
    env = cli_env(tmp_path, CLOUDCONVERT_API_KEY=emulator.api_key)
    make_image(s.input / "a.png")
    assert run_cli("run", "--once", "-c", str(s.config), cwd=tmp_path, env=env).returncode == 0
    [job] = emulator.jobs()
    ledger = Ledger(s.state / LEDGER_NAME)
    ledger.set_meta(META_KEY, [job["id"]])
    ledger.close()
    assert status_json(s.config, cwd=tmp_path, env=env)["jobs_to_delete"] == 1

    s = write_setup(tmp_path, endpoint=emulator.base_url or "", delete_jobs=True)
    again = run_cli("run", "--once", "-c", str(s.config), cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert emulator.jobs() == []
    assert status_json(s.config, cwd=tmp_path, env=env)["jobs_to_delete"] == 0
    ledger = Ledger(s.state / LEDGER_NAME, readonly=True)
    assert ledger.get_meta(META_KEY) is None
    assert ledger.meta_under(META_KEY) == {}


def test_each_finished_job_is_one_row_until_deleted(tmp_path: Path, emulator: Any) -> None:
    """Recording a job to delete writes one row (not the whole list again); deleting removes it."""
    s = write_setup(tmp_path, endpoint=emulator.base_url or "", delete_jobs=True)
    env = cli_env(tmp_path, CLOUDCONVERT_API_KEY=emulator.api_key)
    emulator.faults.http_error("DELETE", "/v2/jobs/*", status=503, times=None)
    for name in ("a", "b", "c"):
        make_image(s.input / f"{name}.png")
    assert run_cli("run", "--once", "-c", str(s.config), cwd=tmp_path, env=env).returncode == 0
    ledger = Ledger(s.state / LEDGER_NAME, readonly=True)
    rows = ledger.meta_under(META_KEY + "/")
    assert sorted(k.rpartition("/")[2] for k in rows) == sorted(j["id"] for j in emulator.jobs())
    assert len(rows) == 3 and ledger.get_meta(META_KEY) is None
    ledger.close()
