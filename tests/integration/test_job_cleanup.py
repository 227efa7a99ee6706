"""JobCleanup on its own waker against the emulator: jobs that finish together are deleted by one
sweep (one ledger write for them all), each job once, and none is left recorded."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from loguru import logger

from ccwatch.client.api import CloudConvertClient
from ccwatch.clock import SystemClock
from ccwatch.emulator import Emulator
from ccwatch.ledger import Ledger
from ccwatch.pipeline.waker import Waker
from ccwatch.stages.cleanup import JobCleanup, pending_in
from ccwatch.testing import wait_for

JOB = {"tasks": {"in": {"operation": "import/url", "url": "https://example.com/a.png"}}}


@pytest.fixture
def api(emulator: Emulator) -> Iterator[CloudConvertClient]:
    client = CloudConvertClient(emulator.base_url or "", f"{emulator.base_url}/sync",
                                emulator.api_key, timeout_s=5, clock=SystemClock())
    yield client
    client.close()


def test_jobs_finishing_together_share_one_sweep(tmp_path: Path, emulator: Emulator,
                                                 api: CloudConvertClient) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    clock = SystemClock()
    jobs = [api.create_job(JOB, path=f"{i}.png")["id"] for i in range(8)]
    sweeps: list[str] = []
    sink = logger.add(lambda m: sweeps.append(m.record["message"]), level="DEBUG",
                      filter=lambda r: r["message"].endswith("deleted on CloudConvert"))
    cleanup = JobCleanup(ledger, api, clock, retry_s=1.0, timer=functools.partial(Waker, clock))
    try:
        for job_id in jobs:
            ledger.set_metas(cleanup.record(job_id))  # as a file's last state write does
            cleanup.add(job_id, recorded=True)
            time.sleep(0.015)  # files finishing one after another, as a busy run's do
        wait_for(lambda: cleanup.pending() == 0, timeout=10, message="the jobs deleted")
    finally:
        cleanup.stop()
        logger.remove(sink)
    assert emulator.count("DELETE", "/v2/jobs/*") == len(jobs)
    assert emulator.jobs() == []
    assert pending_in(ledger) == []
    # Added within ~0.12 s (one gathering window, or two if a boundary fell between), they went
    # in one or two sweeps, not a sweep each.
    assert len(sweeps) <= 2, sweeps
