"""The emulator under load: concurrent clients, and latency that costs a timer, not threads."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from emulator_helpers import client, create_job, export_url, png_bytes, poll, upload, wait_job, web_get
from PIL import Image

from ccwatch.emulator import Emulator
from ccwatch.testing import wait_for


def test_fifty_concurrent_jobs_all_finish_with_valid_images(emulator: Emulator) -> None:
    """Create, upload, sync-wait and download from 16 threads at once."""

    def one(i: int) -> tuple[int, tuple[int, int]]:
        with client(emulator) as api:
            job = create_job(api, tag=f"c-{i}")
            assert upload(job, f"img-{i}.png", png_bytes((10 + i, 20))).status_code == 201
            done = wait_job(api, job["id"])
            assert done["status"] == "finished", done
            content = web_get(export_url(done)).content
            with Image.open(io.BytesIO(content)) as img:
                assert img.format == "JPEG"
                return i, img.size

    with ThreadPoolExecutor(max_workers=16) as pool:
        sizes = dict(pool.map(one, range(50)))
    assert sizes == {i: (10 + i, 20) for i in range(50)}
    assert len(emulator.uploads()) == 50 and emulator.count("POST", "/v2/jobs") == 50


def test_five_hundred_slow_jobs_wait_together(api_key: str) -> None:
    """500 jobs with 0.5 s latency each end in about 0.5 s, without a thread per job."""
    tasks = {"raw": {"operation": "import/raw", "file": "x", "filename": "a.txt"},
             "copy": {"operation": "convert", "input": "raw", "output_format": "txt"},
             "out": {"operation": "export/url", "input": "copy"}}
    with Emulator(api_key=api_key, latency_s=0.5) as emu:
        threads_before = threading.active_count()
        started = time.monotonic()
        for _ in range(500):
            emu.create_job({"tasks": tasks})
        created = time.monotonic() - started
        assert threading.active_count() - threads_before <= 8
        poll(lambda: emu.status_counts() == {"finished": 500}, timeout_s=20,
             what="500 jobs finished")
        elapsed = time.monotonic() - started
        # Serial sleeps would take 250 s; together they take one latency after the last create
        # (~1 s on an idle 2-core box). The margin absorbs a machine busy with other suites.
        assert 0.5 <= elapsed < created + 10.0, (created, elapsed)
        assert threading.active_count() - threads_before <= 8


def test_a_sync_wait_wakes_for_its_own_job_not_for_every_change() -> None:
    """Sync waits are keyed by the job or task they wait on: tasks ending elsewhere (16 jobs in
    flight each end three) do not wake every blocked server thread; its own end, or a close, does."""
    from ccwatch.emulator.store import Store

    store = Store()
    ended = threading.Event()
    checks: list[float] = []

    def done() -> bool:
        checks.append(time.monotonic())
        return ended.is_set()

    waiter = threading.Thread(target=store.wait_until, args=(done, 30.0), kwargs={"key": "job-a"})
    waiter.start()
    wait_for(lambda: store.waits == 1, timeout=10, message="the wait is blocked on its condition")
    with store.lock:
        for _ in range(50):
            store.wake("job-b", "task-b")
    waiter.join(0.3)  # a woken wait would have checked again within this
    assert len(checks) == 1 and waiter.is_alive()
    ended.set()
    with store.lock:
        store.wake("job-a")
    waiter.join(10)
    assert not waiter.is_alive() and len(checks) == 2

    closing = threading.Thread(target=store.wait_until, args=(lambda: False, 30.0),
                               kwargs={"key": "job-c"})
    closing.start()
    wait_for(lambda: store.waits == 1, timeout=10, message="the second wait is blocked")
    store.closing = True
    store.wake_all()
    closing.join(10)
    assert not closing.is_alive()
