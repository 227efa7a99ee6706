"""A 1 GB upload through ``ccwatch emulator`` (a subprocess): it succeeds and memory stays flat."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import psutil
import pytest
from emulator_helpers import EMULATOR_PROCESS_KEY, SSL, create_job, task_named, wait_job

GIB = 1 << 30
KEY = EMULATOR_PROCESS_KEY


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
