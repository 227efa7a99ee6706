"""Whole runs against a misbehaving service: expired upload forms, stuck jobs, trickling answers,
503s with Retry-After, outputs that are gone, and a job with thousands of outputs."""

from __future__ import annotations

import email.utils
import json
import threading
import time
from pathlib import Path
from typing import Any

from daemon_harness import Dirs, MakeConfig, files_under, once, running

from ccwatch.daemon import open_runtime
from ccwatch.errors import ExitCode
from ccwatch.ledger import PlannedOutput, State
from ccwatch.stages import deliver
from ccwatch.testing import make_image, wait_for


def _error_file(dirs: Dirs, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((dirs.quarantine / f"{name}.error.json").read_text())
    return data


def _expire_forms_once_a_job_exists(emulator: Any) -> threading.Thread:
    """The first job's answer is held 1 s; meanwhile its upload form is expired."""
    emulator.faults.delay("POST", "/v2/jobs", seconds=1.0, times=1, after_work=True)

    def expire() -> None:
        wait_for(lambda: emulator.jobs(), timeout=20, message="the first job")
        emulator.faults.expire_forms()

    expirer = threading.Thread(target=expire, daemon=True)
    expirer.start()
    return expirer


def test_an_expired_form_gets_a_new_job_not_an_account_pause(dirs: Dirs, make_config: MakeConfig,
                                                              emulator: Any) -> None:
    """The form expires between create and upload: the task's form is read again (the same,
    expired), so the job is deleted and a new one created; the file converts, nothing pauses."""
    make_image(dirs.input / "a.png")
    expirer = _expire_forms_once_a_job_exists(emulator)
    code, delivered, failed = once(make_config())
    expirer.join()

    assert (code, delivered, failed) == (ExitCode.OK, 1, 0)
    assert files_under(dirs.output) == ["a.jpg"]
    uploads = [r.status for r in emulator.requests if r.method == "POST" and r.path == "/tasks"]
    assert uploads == [403, 201]
    assert emulator.count("POST", "/v2/jobs") == 2
    assert emulator.count("DELETE", "/v2/jobs/*") >= 1
    tags = [j["tag"] for j in emulator.jobs()]
    assert len(tags) == 1 and tags[0].endswith("-2")  # the first job is gone; attempt 2 remains


def test_an_expired_form_renewed_on_the_task_is_used(dirs: Dirs, make_config: MakeConfig,
                                                    emulator: Any) -> None:
    """When reading the task again gives a new form, the same job gets the file: one job only."""
    make_image(dirs.input / "a.png")
    emulator.faults.renew_forms()
    expirer = _expire_forms_once_a_job_exists(emulator)
    code, delivered, failed = once(make_config())
    expirer.join()

    assert (code, delivered, failed) == (ExitCode.OK, 1, 0)
    uploads = [r.status for r in emulator.requests if r.method == "POST" and r.path == "/tasks"]
    assert uploads == [403, 201]
    assert emulator.count("POST", "/v2/jobs") == 1 and len(emulator.jobs()) == 1


def test_stuck_jobs_are_quarantined_after_job_timeout_s(dirs: Dirs, make_config: MakeConfig,
                                                        emulator: Any) -> None:
    """Two jobs that never finish fill max_in_flight = 2: after job_timeout_s they are deleted
    and quarantined (JOB_TIMEOUT), and the files after them are converted."""
    emulator.faults.latency(3600, glob="stuck*")
    cfg = make_config(daemon_extra="max_in_flight = 2\njob_timeout_s = 2")
    with running(cfg):
        for name in ("stuck1.png", "stuck2.png"):
            make_image(dirs.input / name)
        wait_for(lambda: emulator.status_counts().get("processing") == 2, timeout=20,
                 message="two stuck jobs")
        for i in range(3):
            make_image(dirs.input / f"ok{i}.png")
        wait_for(lambda: files_under(dirs.output) == ["ok0.jpg", "ok1.jpg", "ok2.jpg"],
                 timeout=30, message="the later files")
        wait_for(lambda: len(list(dirs.quarantine.glob("*.error.json"))) == 2, timeout=20,
                 message="the stuck files in quarantine")
    for name in ("stuck1.png", "stuck2.png"):
        error = _error_file(dirs, name)
        assert error["code"] == "JOB_TIMEOUT" and "job_timeout_s" in error["message"]
        assert (dirs.quarantine / name).exists()
    assert emulator.status_counts().get("processing", 0) == 0  # deleted on CloudConvert too


def test_trickling_polls_and_downloads_do_not_hold_workers(dirs: Dirs, make_config: MakeConfig,
                                                           emulator: Any) -> None:
    """Polls and downloads that trickle a byte every 0.2 s (minutes each) are cut at timeout_s
    and retried; meanwhile and afterwards every file is converted."""
    for i in range(6):
        make_image(dirs.input / f"f{i}.png")
    emulator.faults.trickle("GET", "/v2/jobs/*", seconds=0.2, times=2)
    emulator.faults.trickle("GET", "/tasks/*", seconds=0.2, times=4)
    started = time.monotonic()
    code, delivered, failed = once(make_config(cloudconvert_extra="timeout_s = 2",
                                               daemon_extra="download_workers = 4"))
    assert (code, delivered, failed) == (ExitCode.OK, 6, 0)
    assert files_under(dirs.output) == [f"f{i}.jpg" for i in range(6)]
    assert time.monotonic() - started < 60  # each trickle alone would take minutes


def test_503_with_retry_after_then_output_gone(dirs: Dirs, make_config: MakeConfig,
                                               emulator: Any) -> None:
    """A 503 with an HTTP-date Retry-After: the download is not tried again before that date; a
    410 that stays (after the URL refresh) quarantines the file as OUTPUT_GONE."""
    make_image(dirs.input / "a.png")
    make_image(dirs.input / "b.png")
    retry_at = float(int(time.time()) + 5)  # what the header says (it has whole seconds)
    emulator.faults.http_error("GET", "/tasks/*/a.jpg", status=503, times=1,
                               retry_after=email.utils.formatdate(retry_at, usegmt=True))
    emulator.faults.http_error("GET", "/tasks/*/b.jpg", status=410, times=None)
    code, delivered, failed = once(make_config())
    assert (code, delivered, failed) == (ExitCode.FILES_FAILED, 1, 1)
    assert files_under(dirs.output) == ["a.jpg"]
    gets = [r for r in emulator.requests if r.method == "GET" and r.path.endswith("/a.jpg")]
    assert [r.status for r in gets] == [503, 200]
    assert gets[0].at < retry_at - 1 and gets[1].at >= retry_at
    error = _error_file(dirs, "b.png")
    assert (error["code"], error["http_status"]) == ("OUTPUT_GONE", 410)


def test_thousands_of_outputs_are_planned_in_linear_time(dirs: Dirs, make_config: MakeConfig,
                                                         emulator: Any) -> None:
    """4,000 outputs all named page.png (the quadratic search took 29 s): page.png, page (1).png…
    chosen at once, skipping names already on disk."""
    cfg = make_config()
    (dirs.output / "page (2).png").write_bytes(b"not ours")
    with open_runtime(cfg) as runtime:
        ctx = runtime.ctx
        entry = ctx.ledger.add("inbox", "page.tif", 1, 1, rule=0, template="to-jpg",
                               now=ctx.clock.wall())
        assert entry is not None
        for state in (State.SUBMITTING, State.UPLOADING, State.PROCESSING):
            entry = ctx.ledger.update(entry.id, now=ctx.clock.wall(), state=state)
        outputs = tuple(PlannedOutput(filename="page.png", url=f"u{i}", size=1)
                        for i in range(4000))
        started = time.monotonic()
        planned = deliver.begin(ctx, entry, outputs, reserved=deliver.Reservations()).outputs
        elapsed = time.monotonic() - started
    names = [Path(p.final_path or "").name for p in planned]
    assert names[:4] == ["page.png", "page (1).png", "page (3).png", "page (4).png"]
    assert len(set(names)) == 4000 and "page (2).png" not in names
    assert elapsed < 5, f"planning 4,000 outputs took {elapsed:.1f} s"
