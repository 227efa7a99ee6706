"""The API client against the emulator's storage and API hosts misbehaving: redirects, 503 with
both Retry-After forms, 404/410, an expired form, a trickling server, a 1 GB answer."""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from emulator_helpers import EMULATOR_PROCESS_KEY

from ccwatch.client.api import MAX_BODY, MAX_REDIRECTS, CloudConvertClient, retry_after_s
from ccwatch.clock import FakeClock, SystemClock
from ccwatch.emulator import Emulator
from ccwatch.errors import FormRefused, OutputGone, RateLimited, TransientError
from ccwatch.testing import make_image, wait_for

TIMEOUT_S = 2.0
TO_JPG = {"tasks": {"in": {"operation": "import/upload"},
                    "convert": {"operation": "convert", "input": "in", "output_format": "jpg"},
                    "out": {"operation": "export/url", "input": "convert"}}}


@pytest.fixture
def api(emulator: Emulator) -> Iterator[CloudConvertClient]:
    client = CloudConvertClient(emulator.base_url or "", f"{emulator.base_url}/sync",
                                emulator.api_key, timeout_s=TIMEOUT_S, clock=SystemClock())
    yield client
    client.close()


def _task(job: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in job["tasks"] if t["name"] == name)


def _converted(api: CloudConvertClient, tmp_path: Path) -> tuple[str, str]:
    """(job id, export URL) of a finished PNG → JPG job."""
    job = api.create_job(TO_JPG, path="a.png")
    with make_image(tmp_path / "a.png").open("rb") as source:
        api.upload(_task(job, "in")["result"]["form"], source, "a.png", job_id=job["id"],
                   task="in")
    done = wait_for(lambda: (j := api.get_job(job["id"], path="a"))["status"] == "finished" and j,
                    timeout=20, message="the job to finish")
    return job["id"], _task(done, "out")["result"]["files"][0]["url"]


def _download(api: CloudConvertClient, url: str) -> bytes:
    with api.download(url, job_id="j", path="a.png") as chunks:
        return b"".join(chunks)


def test_downloads_follow_redirects_up_to_a_bound(api: CloudConvertClient, emulator: Emulator,
                                                  tmp_path: Path) -> None:
    """Two 302s are followed (never with the API key); a loop stops after MAX_REDIRECTS."""
    _, url = _converted(api, tmp_path)
    emulator.faults.redirect("GET", "/tasks/*", times=2)
    assert _download(api, url)[:2] == b"\xff\xd8"  # a JPEG
    assert [r.status for r in emulator.requests if r.path.startswith("/tasks/")] == [302, 302, 200]
    emulator.faults.redirect("GET", "/tasks/*", times=None)
    with pytest.raises(TransientError) as err:
        _download(api, url)
    assert err.value.code == "REDIRECTS"
    hops = [r for r in emulator.requests if r.path.startswith("/tasks/")][3:]
    assert len(hops) == MAX_REDIRECTS + 1


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_503_on_a_download_is_transient_with_retry_after(api: CloudConvertClient,
                                                         emulator: Emulator, tmp_path: Path,
                                                         form: str) -> None:
    """The streamed error answer is read and classified (no ResponseNotRead); both forms count."""
    _, url = _converted(api, tmp_path)
    header = "7" if form == "seconds" else email.utils.formatdate(time.time() + 7, usegmt=True)
    emulator.faults.http_error("GET", "/tasks/*", status=503, retry_after=header)
    with pytest.raises(TransientError) as err:
        _download(api, url)
    assert err.value.http_status == 503 and err.value.retry_after_s is not None
    assert 5.5 <= err.value.retry_after_s <= 7.0
    emulator.faults.http_error("GET", "/tasks/*", status=429, retry_after="3")
    with pytest.raises(RateLimited) as limited:
        _download(api, url)
    assert limited.value.retry_after_s == 3.0
    assert _download(api, url)[:2] == b"\xff\xd8"


def test_retry_after_forms() -> None:
    """Delta-seconds, an HTTP date (relative to now, never negative), garbage ignored."""
    now = 1_800_000_000.0
    assert retry_after_s("120", now) == 120.0
    assert retry_after_s(email.utils.formatdate(now + 30, usegmt=True), now) == 30.0
    assert retry_after_s(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0
    assert retry_after_s("soon", now) is None and retry_after_s(None, now) is None


@pytest.mark.parametrize("status", [404, 410])
def test_404_and_410_mean_the_output_is_gone(api: CloudConvertClient, emulator: Emulator,
                                             tmp_path: Path, status: int) -> None:
    _, url = _converted(api, tmp_path)
    emulator.faults.http_error("GET", "/tasks/*", status=status)
    with pytest.raises(OutputGone) as err:
        _download(api, url)
    assert err.value.http_status == status


def test_an_expired_form_is_refused_as_the_forms_problem(api: CloudConvertClient,
                                                         emulator: Emulator, tmp_path: Path) -> None:
    """S3's XML 403 on a late upload: FormRefused (transient, this job's), not an account error."""
    job = api.create_job(TO_JPG, path="a.png")
    form = _task(job, "in")["result"]["form"]
    emulator.faults.expire_forms()
    with pytest.raises(FormRefused) as err, make_image(tmp_path / "a.png").open("rb") as source:
        api.upload(form, source, "a.png", job_id=job["id"], task="in")
    assert err.value.http_status == 403 and err.value.form == form
    assert emulator.jobs()[0]["tasks"][0]["status"] == "waiting"


def test_forms_expire_after_their_lifetime(tmp_path: Path) -> None:
    """12 h live by default, 6 h in sandbox mode, settable; S3's 403 afterwards (emulator clock)."""
    from ccwatch.emulator import serve

    with Emulator(sandbox=True) as sandbox:
        assert sandbox.form_ttl_s == 6 * 3600 and sandbox.signer.bucket == "tasks-sandbox"
    clock = FakeClock(start=time.time())
    with Emulator(api_key="k", clock=clock) as emu, serve(emu) as url:
        assert emu.form_ttl_s == 12 * 3600
        client = CloudConvertClient(url, url + "/sync", "k", timeout_s=5, clock=SystemClock())
        try:
            job = client.create_job(TO_JPG, path="a.png")
            form = _task(job, "in")["result"]["form"]
            assert form["url"] == f"{emu.storage_url}/tasks"
            clock.advance(12 * 3600 + 1)
            with pytest.raises(FormRefused), make_image(tmp_path / "a.png").open("rb") as source:
                client.upload(form, source, "a.png", job_id=job["id"], task="in")
        finally:
            client.close()


def test_a_trickling_job_poll_ends_within_timeout_s(api: CloudConvertClient, emulator: Emulator
                                                    ) -> None:
    """One byte every 0.2 s would take minutes for a job's JSON: the exchange's total deadline
    cuts it at timeout_s (httpx alone restarts its read timeout at every byte)."""
    job = api.create_job(TO_JPG, path="a.png")
    emulator.faults.trickle("GET", f"/v2/jobs/{job['id']}", seconds=0.2)
    started = time.monotonic()
    with pytest.raises(TransientError) as err:
        api.get_job(job["id"], path="a.png")
    assert err.value.code == "TIMEOUT"
    assert time.monotonic() - started < TIMEOUT_S + 1.5
    assert api.get_job(job["id"], path="a.png")["id"] == job["id"]  # the next poll is whole


def test_a_trickling_download_ends_within_timeout_s(api: CloudConvertClient, emulator: Emulator,
                                                    tmp_path: Path) -> None:
    """A download may take timeout_s plus its size at the minimum rate: a trickle does not."""
    _, url = _converted(api, tmp_path)
    emulator.faults.trickle("GET", "/tasks/*", seconds=0.2)
    started = time.monotonic()
    with pytest.raises(TransientError) as err:
        _download(api, url)
    assert err.value.code == "TIMEOUT"
    assert time.monotonic() - started < TIMEOUT_S + 1.5


def test_a_1_gb_json_answer_is_refused_without_holding_it(
        emulator_process: tuple[str, psutil.Process]) -> None:
    """The emulator (a child process, so this process's memory is the client's alone) generates
    1 GB of JSON as it sends (chunked, no length announced); the client stops at MAX_BODY with a
    clear error and its memory stays low."""
    base, _ = emulator_process
    api = CloudConvertClient(base, f"{base}/sync", EMULATOR_PROCESS_KEY, timeout_s=TIMEOUT_S * 5,
                             clock=SystemClock())
    job = api.create_job(TO_JPG, path="a.png")
    with httpx.Client(base_url=base, timeout=10) as control:
        added = control.post("/__emulator__/faults", json={
            "kind": "oversize_body", "method": "GET", "path": f"/v2/jobs/{job['id']}",
            "size": 1 << 30})
        assert added.status_code == 201, added.text
    me = psutil.Process()
    before = me.memory_info().rss
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], me.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with pytest.raises(TransientError) as err:
            api.get_job(job["id"], path="a.png")
    finally:
        done.set()
        sampler.join()
        api.close()
    assert err.value.code == "RESPONSE_TOO_LARGE" and str(MAX_BODY) in err.value.message, err.value.message
    assert peak[0] - before < 2 * MAX_BODY  # what it may hold, never the gigabyte
