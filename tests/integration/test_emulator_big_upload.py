"""A 1 GB upload through ``ccwatch emulator`` (a subprocess): it succeeds and memory stays flat."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from emulator_helpers import SSL, create_job, task_named, wait_job

GIB = 1 << 30
KEY = "big-key"


@pytest.fixture
def emulator_process(tmp_path: Path) -> Iterator[tuple[str, psutil.Process]]:
    """``python -m ccwatch emulator --port 0``; the URL comes from its one stdout line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ccwatch", "emulator", "--port", "0", "--api-key", KEY,
         "--storage", str(tmp_path / "storage")],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the server is listening (or it died)
        assert line.startswith("ccwatch emulator listening on http://"), line
        yield line.rsplit(" ", 1)[1].strip(), psutil.Process(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        finally:
            if proc.stdout is not None:
                proc.stdout.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_one_gigabyte_upload_keeps_emulator_memory_flat(
        emulator_process: tuple[str, psutil.Process], tmp_path: Path) -> None:
    """Streamed from the file object by httpx, parsed to disk by the emulator: RSS grows < 100 MB."""
    base, process = emulator_process
    big = tmp_path / "big.bin"
    with big.open("wb") as fh:  # sparse: costs no disk until the emulator writes its copy
        fh.truncate(GIB)
    tasks = {"in": {"operation": "import/upload"},
             "copy": {"operation": "convert", "input": "in", "output_format": "bin"},
             "out": {"operation": "export/url", "input": "copy"}}
    with httpx.Client(base_url=base, verify=SSL, timeout=240,
                      headers={"Authorization": f"Bearer {KEY}"}) as api:
        job = create_job(api, tasks)
        rss_before = process.memory_info().rss
        form = task_named(job, "in")["result"]["form"]
        with big.open("rb") as fh, httpx.Client(verify=SSL, timeout=240) as web:
            response = web.post(form["url"], data=form["parameters"], files={"file": ("big.bin", fh)})
        assert response.status_code == 201, response.text
        rss_after = process.memory_info().rss
        done = wait_job(api, job["id"])
    growth_mb = (rss_after - rss_before) / 1e6
    print(f"emulator RSS {rss_before / 1e6:.0f} MB → {rss_after / 1e6:.0f} MB (+{growth_mb:.1f} MB)")
    assert growth_mb < 100
    assert done["status"] == "finished"
    assert task_named(done, "in")["result"]["files"][0]["filename"] == "big.bin"  # no size: recorded
    assert task_named(done, "out")["result"]["files"][0]["size"] == GIB
    assert os.path.getsize(big) == GIB
