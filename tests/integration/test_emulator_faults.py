"""Fault controls, through the Python API and the JSON control endpoint."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from emulator_helpers import (
    client,
    convert_png,
    create_job,
    export_url,
    png_bytes,
    poll,
    upload,
    wait_job,
    web_delete,
    web_get,
    web_post,
)

from ccwatch.emulator import Emulator


@pytest.fixture
def api(emulator: Emulator) -> Iterator[httpx.Client]:
    with client(emulator) as c:
        yield c


def test_http_error_before_work_creates_nothing(emulator: Emulator, api: httpx.Client) -> None:
    """500 with the API's body, N times, then normal service."""
    emulator.faults.http_error("POST", "/v2/jobs", status=500, times=1)
    refused = api.post("/v2/jobs", json={"tasks": {"a": {"operation": "import/upload"}}})
    assert refused.status_code == 500
    assert refused.json() == {"message": "Server Error", "code": "INTERNAL_ERROR"}
    assert emulator.jobs() == []
    create_job(api)
    assert len(emulator.jobs()) == 1


def test_http_error_after_work_leaves_the_job_in_the_list(emulator: Emulator,
                                                         api: httpx.Client) -> None:
    """The client hears 500 but the job exists: a client must look it up by tag."""
    emulator.faults.http_error("POST", "/v2/jobs", status=500, times=1, after_work=True)
    refused = api.post("/v2/jobs", json={"tag": "once", "tasks": {"a": {"operation": "import/upload"}}})
    assert refused.status_code == 500
    listed = api.get("/v2/jobs", params={"filter[tag]": "once"}).json()["data"]
    assert len(listed) == 1 and [j["tag"] for j in emulator.jobs()] == ["once"]


def test_gateway_errors_answer_html(emulator: Emulator, api: httpx.Client) -> None:
    """502/503/504 come from a proxy in real life: HTML, not JSON."""
    emulator.faults.http_error("GET", "/v2/jobs/*", status=503, times=2)
    job = create_job(api)
    for _ in range(2):
        response = api.get(f"/v2/jobs/{job['id']}")
        assert response.status_code == 503 and response.headers["content-type"].startswith("text/html")
    assert api.get(f"/v2/jobs/{job['id']}").status_code == 200


def test_rate_limit_burst_has_retry_after_and_body(emulator: Emulator, api: httpx.Client) -> None:
    """429 TOO_MANY_REQUESTS with Retry-After, only on the matching method and path."""
    emulator.faults.rate_limit(times=2, retry_after_s=3, method="GET", path="/v2/users/me")
    assert api.get("/v2/jobs").status_code == 200
    for _ in range(2):
        response = api.get("/v2/users/me")
        assert response.status_code == 429
        assert response.json() == {"message": "Too Many Requests", "code": "TOO_MANY_REQUESTS"}
        assert response.headers["retry-after"] == "3"
        assert response.headers["x-ratelimit-remaining"] == "0"
    assert api.get("/v2/users/me").status_code == 200


def test_the_window_runs_out_per_route_group(api_key: str) -> None:
    """The real limiter: remaining counts down per group (creations apart from reads), then 429
    until the window resets; users/me carries no headers and is not counted (recorded)."""
    from ccwatch.emulator import serve

    with Emulator(api_key=api_key, rate_limit_per_minute=3, rate_window_s=2) as emu, serve(emu), \
            client(emu) as api:
        assert "x-ratelimit-remaining" not in api.get("/v2/users/me").headers
        remaining = [api.get("/v2/jobs").headers["x-ratelimit-remaining"] for _ in range(3)]
        assert remaining == ["2", "1", "0"]
        created = api.post("/v2/jobs", json={"tasks": {"in": {"operation": "import/upload"}}})
        assert created.headers["x-ratelimit-remaining"] == "2"  # its own group
        over = api.get("/v2/jobs")
        assert over.status_code == 429 and 0 < int(over.headers["retry-after"]) <= 2
        poll(lambda: api.get("/v2/jobs").status_code == 200, what="the window's reset")


def test_credits_exceeded_until_cleared(emulator: Emulator, api: httpx.Client) -> None:
    """402 CREDITS_EXCEEDED on creation only, until ``clear()``."""
    emulator.faults.credits_exceeded()
    for _ in range(3):
        response = api.post("/v2/jobs", json={"tasks": {"a": {"operation": "import/upload"}}})
        assert response.status_code == 402
        assert response.json() == {"message": "Your account has run out of conversion minutes",
                                   "code": "CREDITS_EXCEEDED"}
    assert api.post("/v2/import/upload", json={}).status_code == 402
    assert api.get("/v2/users/me").status_code == 200
    emulator.faults.clear()
    create_job(api)


def test_unauthorized_until_cleared(emulator: Emulator, api: httpx.Client) -> None:
    """401 even with the right key, as for a revoked key."""
    emulator.faults.unauthorized()
    assert api.get("/v2/users/me").json() == {"message": "Unauthenticated.",
                                              "code": "UNAUTHENTICATED"}
    assert api.get("/v2/jobs").status_code == 401
    emulator.faults.clear()
    assert api.get("/v2/users/me").status_code == 200


def test_latency_for_matching_input_names(emulator: Emulator, api: httpx.Client) -> None:
    """Only jobs whose input matches the glob are slow; the rest finish meanwhile."""
    emulator.faults.latency(seconds=1.0, glob="slow*")
    slow = create_job(api)
    started = time.monotonic()
    upload(slow, "slow-one.png", png_bytes())
    fast = convert_png(api, "quick.png")
    assert fast["status"] == "finished"
    assert api.get(f"/v2/jobs/{slow['id']}").json()["data"]["status"] == "processing"
    assert wait_job(api, slow["id"])["status"] == "finished"
    assert time.monotonic() - started >= 0.95


def test_task_error_for_matching_names(emulator: Emulator, api: httpx.Client) -> None:
    """The convert task fails with the given code and message; other files pass."""
    emulator.faults.task_error(glob="bad*", code="CONVERSION_FAILED", message="the engine choked")
    failed = convert_png(api, "bad-scan.png")
    convert = next(t for t in failed["tasks"] if t["name"] == "convert")
    assert (failed["status"], convert["code"], convert["message"]) == (
        "error", "CONVERSION_FAILED", "the engine choked")
    assert convert_png(api, "good.png")["status"] == "finished"


def test_dropped_connection_then_recovery(emulator: Emulator, api: httpx.Client) -> None:
    """The socket closes without a response; the log shows status 0; the retry works."""
    emulator.faults.drop_connection("POST", "/tasks", times=1)
    job = create_job(api)
    with pytest.raises(httpx.RemoteProtocolError):
        upload(job, "a.png", png_bytes())
    # The emulator logs a dropped request just after closing the socket: wait for the entry.
    poll(lambda: [r.status for r in emulator.requests if r.path == "/tasks"] == [0],
         what="the dropped upload in the request log")
    assert upload(job, "a.png", png_bytes()).status_code == 201
    assert wait_job(api, job["id"])["status"] == "finished"


def test_delay_before_and_after_work(emulator: Emulator, api: httpx.Client) -> None:
    """A delayed answer: before the work nothing exists yet; after it, the job is already there."""
    import threading

    from ccwatch.testing import wait_for

    emulator.faults.delay("POST", "/v2/jobs", seconds=1.0, times=1, after_work=True)
    creating = threading.Thread(target=create_job, args=(api,))
    creating.start()
    wait_for(lambda: len(emulator.jobs()) == 1, timeout=5, message="the job exists")
    assert creating.is_alive()  # created, yet the client has not had its answer
    creating.join(10)

    emulator.faults.delay("GET", "/v2/users/me", seconds=0.3, times=1)
    started = time.monotonic()
    assert api.get("/v2/users/me").status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert api.get("/v2/users/me").status_code == 200
    assert time.monotonic() - started < 0.3  # used up


def test_truncated_download_then_whole(emulator: Emulator, api: httpx.Client) -> None:
    """Content-Length promises more than arrives; the next download is whole."""
    url = export_url(convert_png(api))
    emulator.faults.truncate_downloads(times=1)
    with pytest.raises(httpx.RemoteProtocolError):
        web_get(url)
    whole = web_get(url)
    assert whole.status_code == 200 and len(whole.content) == int(whole.headers["content-length"])


def test_expire_urls_affects_urls_issued_so_far(emulator: Emulator, api: httpx.Client) -> None:
    """Old URLs answer 403; URLs issued afterwards work."""
    old = export_url(convert_png(api))
    emulator.faults.expire_urls()
    assert web_get(old).status_code == 403
    assert web_get(export_url(convert_png(api))).status_code == 200


def test_control_endpoint_adds_lists_and_clears(emulator: Emulator, api: httpx.Client) -> None:
    """``/__emulator__/faults`` (POST/GET/DELETE) and ``/__emulator__/requests`` need no key."""
    control = f"{emulator.base_url}/__emulator__"
    added = web_post(f"{control}/faults", json={"kind": "http_error", "method": "GET",
                                                  "path": "/v2/users/me", "status": 500,
                                                  "times": 1})
    assert added.status_code == 201 and added.json()["data"]["status"] == 500
    assert api.get("/v2/users/me").status_code == 500
    listed = web_get(f"{control}/faults").json()["data"]
    assert [(f["kind"], f["used"]) for f in listed] == [("http_error", 1)]
    web_post(f"{control}/faults", json={"kind": "unauthorized"})
    assert api.get("/v2/users/me").status_code == 401
    assert web_delete(f"{control}/faults").status_code == 204
    assert web_get(f"{control}/faults").json()["data"] == []
    assert api.get("/v2/users/me").status_code == 200
    bad = web_post(f"{control}/faults", json={"kind": "nonsense"})
    assert bad.status_code == 400
    assert web_post(f"{control}/faults", json={"kind": "latency", "bogus": 1}).status_code == 400
    log = web_get(f"{control}/requests").json()["data"]
    assert [(r["method"], r["path"], r["status"]) for r in log] == [
        ("GET", "/v2/users/me", 500), ("GET", "/v2/users/me", 401), ("GET", "/v2/users/me", 200)]
    assert {"query", "at"} <= set(log[0])
