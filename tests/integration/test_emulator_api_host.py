"""The API host as the real service answers: the queued status, 402 past the concurrent jobs,
error messages without the emulator's own paths, storage faults that speak S3."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from emulator_helpers import (
    client,
    convert_png,
    create_job,
    export_url,
    poll,
    task_named,
    upload,
    wait_job,
    web_get,
)

from ccwatch.emulator import Emulator, serve
from ccwatch.emulator.storage import S3_CODES


@pytest.fixture
def api(emulator: Emulator) -> Iterator[httpx.Client]:
    with client(emulator) as c:
        yield c


def test_a_task_is_queued_once_its_inputs_finish(emulator: Emulator, api: httpx.Client) -> None:
    """Created tasks wait; after the upload the convert task is queued until a worker runs it."""
    emulator.faults.latency(30, glob="slow*")
    job = create_job(api)
    assert task_named(job, "convert")["status"] == "waiting"
    assert upload(job, "slow.png", b"\x89PNG not really").status_code == 201
    def queued() -> dict[str, Any] | None:
        shown: dict[str, Any] = api.get(f"/v2/jobs/{job['id']}").json()["data"]
        return shown if task_named(shown, "convert")["status"] == "queued" else None

    shown = poll(queued, what="the queued convert task")
    assert shown["status"] == "processing" and task_named(shown, "convert")["started_at"] is None


def test_402_past_the_concurrent_jobs(api_key: str) -> None:
    """cloudconvert-php issue #98: "You have started too many jobs at once" (402)."""
    with Emulator(api_key=api_key, max_concurrent_jobs=1) as emu, serve(emu), client(emu) as api:
        first = create_job(api)
        refused = api.post("/v2/jobs", json={"tasks": {"in": {"operation": "import/upload"}}})
        assert refused.status_code == 402
        assert refused.json() == {"message": "You have started too many jobs at once"}
        assert api.delete(f"/v2/jobs/{first['id']}").status_code == 204
        assert api.post("/v2/jobs", json={"tasks": {"in": {"operation": "import/upload"}}}
                        ).status_code == 201


def test_task_errors_do_not_show_the_emulators_paths(emulator: Emulator,
                                                     api: httpx.Client) -> None:
    """A file the engine cannot read fails with the engine's message, its storage path cut to
    the file name (the real API shows no server paths)."""
    job = create_job(api)
    upload(job, "broken.png", b"not an image at all")
    done = wait_job(api, job["id"])
    message = task_named(done, "convert")["message"]
    assert task_named(done, "convert")["status"] == "error" and message
    assert str(emulator.storage) not in message and "/" not in message


def test_storage_faults_answer_like_s3(emulator: Emulator, api: httpx.Client) -> None:
    """503 SlowDown in XML with the given Retry-After; 302 back to the same object."""
    url = export_url(convert_png(api))
    emulator.faults.http_error("GET", "/tasks/*", status=503, retry_after="5")
    busy = web_get(url)
    assert busy.status_code == 503 and busy.headers["retry-after"] == "5"
    assert busy.headers["content-type"] == "application/xml"
    assert f"<Code>{S3_CODES[503][0]}</Code>" in busy.text
    emulator.faults.redirect("GET", "/tasks/*")
    with httpx.Client() as web:
        moved = web.get(url)
    assert moved.status_code == 302 and moved.headers["location"].startswith(url.split("?")[0])
    assert web_get(moved.headers["location"]).status_code == 200


@pytest.mark.parametrize("client_closes", [False, True])
def test_a_204_keeps_the_connection_unless_the_client_asks_to_close(
        emulator: Emulator, api: httpx.Client, client_closes: bool) -> None:
    """waitress on its own closes after every answer without a body; the real host keeps it."""
    job = create_job(api)
    assert emulator.base_url
    conn = http.client.HTTPConnection(urlsplit(emulator.base_url).netloc, timeout=10)
    auth = {"Authorization": f"Bearer {emulator.api_key}"}
    try:
        conn.request("DELETE", f"/v2/jobs/{job['id']}",
                     headers={**auth, **({"Connection": "close"} if client_closes else {})})
        answer = conn.getresponse()
        answer.read()
        assert answer.status == 204
        assert (answer.getheader("Connection") == "close") is client_closes
        assert answer.will_close is client_closes
        if not client_closes:
            sock = conn.sock
            conn.request("GET", "/v2/users/me", headers=auth)
            assert conn.getresponse().status == 200
            assert conn.sock is sock  # the same socket answered: no reconnect
    finally:
        conn.close()
