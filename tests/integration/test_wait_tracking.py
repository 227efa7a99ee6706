"""Wait-based tracking (the default without webhooks) against the real emulator: each job is waited
on through the sync host and seen finished when it ends; a sync host that fails or answers early
hands its jobs to the poll schedule, and they still finish."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

from daemon_harness import Dirs, MakeConfig, files_under, once

from ccwatch.client.api import CloudConvertClient
from ccwatch.client.syncwait import JobWaiter
from ccwatch.clock import SystemClock
from ccwatch.errors import ExitCode
from ccwatch.testing import make_image, wait_for

LATENCY_S = 1.5
# Far above the latency: a job seen finished by a poll would take at least this long.
SLOW_POLLS = (6.0, 6.0)


def logged(emulator: Any, method: str, pattern: str) -> list[Any]:
    return [r for r in emulator.requests if r.method == method and fnmatch.fnmatchcase(r.path, pattern)]


def test_jobs_are_seen_finished_when_they_end_not_at_a_poll(dirs: Dirs, make_config: MakeConfig,
                                                            emulator: Any) -> None:
    """Four jobs of 1.5 s side by side: from the first upload to the last download takes about
    their latency (polls every 6 s could not do it under 6 s), with one wait and no poll per job."""
    for i in range(4):
        make_image(dirs.input / f"w{i}.png")
    emulator.faults.latency(LATENCY_S)

    code, delivered, failed = once(make_config(polls=SLOW_POLLS))

    assert (code, delivered, failed) == (ExitCode.OK, 4, 0)
    assert files_under(dirs.output) == [f"w{i}.jpg" for i in range(4)]
    waits = logged(emulator, "GET", "/sync/v2/jobs/*")
    assert len(waits) == 4 and all(r.status == 200 for r in waits)
    assert logged(emulator, "GET", "/v2/jobs/*") == []  # not one poll
    first_upload = min(r.at for r in logged(emulator, "POST", "/tasks"))
    last_download = max(r.at for r in logged(emulator, "GET", "/tasks/*"))
    assert last_download - first_upload < LATENCY_S + 2.0


def test_a_failing_sync_host_hands_the_jobs_to_the_poll_schedule(dirs: Dirs, make_config: MakeConfig,
                                                                 emulator: Any) -> None:
    """Every wait answered 502: each job is polled instead, and all are delivered once."""
    for i in range(3):
        make_image(dirs.input / f"p{i}.png")
    emulator.faults.latency(0.5)
    emulator.faults.http_error("GET", "/sync/v2/jobs/*", status=502, times=None)

    code, delivered, failed = once(make_config(polls=(0.3, 1.0)))

    assert (code, delivered, failed) == (ExitCode.OK, 3, 0)
    assert files_under(dirs.output) == [f"p{i}.jpg" for i in range(3)]
    waits = logged(emulator, "GET", "/sync/v2/jobs/*")
    assert len(waits) == 3 and all(r.status == 502 for r in waits)  # one try per job, no loop
    assert len(logged(emulator, "GET", "/v2/jobs/*")) >= 3  # each job polled to its end
    assert files_under(dirs.quarantine) == []


def test_a_sync_host_that_answers_early_falls_back_to_polling(dirs: Dirs, make_config: MakeConfig,
                                                              emulator: Any) -> None:
    """A sync host that returns before the job ends (its own cap) is not asked in a loop."""
    emulator.sync_wait_cap_s = 0.1
    for i in range(2):
        make_image(dirs.input / f"e{i}.png")
    emulator.faults.latency(1.0)

    code, delivered, failed = once(make_config(polls=(0.3, 1.0)))

    assert (code, delivered, failed) == (ExitCode.OK, 2, 0)
    waits = logged(emulator, "GET", "/sync/v2/jobs/*")
    assert len(waits) == 2 and all(r.status == 200 for r in waits)
    assert len(logged(emulator, "GET", "/v2/jobs/*")) >= 2


def test_tracking_poll_never_waits(dirs: Dirs, make_config: MakeConfig, emulator: Any) -> None:
    make_image(dirs.input / "a.png")
    code, delivered, _ = once(make_config(
        daemon_extra='tracking = "poll"'))
    assert (code, delivered) == (ExitCode.OK, 1)
    assert logged(emulator, "GET", "/sync/v2/jobs/*") == []
    assert len(logged(emulator, "GET", "/v2/jobs/*")) >= 1


def test_a_wait_past_its_deadline_hands_the_job_back_as_running(emulator: Any,
                                                                 tmp_path: Path) -> None:
    """The client deadline passes before the job ends: "running" (the pipeline reads the job once
    and waits again); a later wait gets the ended job with its tasks."""
    api = CloudConvertClient(emulator.base_url, emulator.base_url + "/sync", emulator.api_key,
                             timeout_s=10, clock=SystemClock())
    results: list[Any] = []
    waiter = JobWaiter(emulator.base_url + "/sync", emulator.api_key,
                       lambda key, job: results.append((key, job)), deadline_s=0.3)
    try:
        emulator.faults.latency(1.5)
        job = api.create_job({"tasks": {"in": {"operation": "import/upload"},
                                        "out": {"operation": "export/url", "input": "in"}}},
                             path="x")
        upload = next(t for t in job["tasks"] if t["name"] == "in")
        make_image(tmp_path / "x.png")
        with (tmp_path / "x.png").open("rb") as source:
            api.upload(upload["result"]["form"], source, "x.png", job_id=job["id"], task="in")
        assert waiter.wait(1, job["id"])
        wait_for(lambda: len(results) == 1, timeout=5, message="the first wait's end")
        assert results[0] == (1, "running")

        def ended_or_wait_again() -> bool:
            if results[-1][1] != "running":
                return True
            if not waiter.waiting():
                assert waiter.wait(1, job["id"])  # as the pipeline does, after one read
            return False

        wait_for(ended_or_wait_again, timeout=10, message="the job's end")
        key, ended = results[-1]
        assert key == 1 and isinstance(ended, dict) and ended["status"] in ("finished", "error")
        assert isinstance(ended.get("tasks"), list)
        assert waiter.waiting() == 0
    finally:
        waiter.close()
        api.close()
